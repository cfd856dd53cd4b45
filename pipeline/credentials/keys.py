"""Signing keys for Content Credentials: a development chain made on first use, a given certificate and key, or
an AWS KMS key (ECC P-256) that signs through c2pa's callback signer."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import CredentialsUnavailable

# Environment variables (the CLI's --sign-cert / --sign-key win over them)
ENV_CERT, ENV_KEY = "CAMPAIGN_SIGN_CERT", "CAMPAIGN_SIGN_KEY"
ENV_KMS_KEY = "CAMPAIGN_SIGNING_KMS_KEY"  # a KMS key id or ARN (the stack sets it on the functions that publish)
ENV_CHAIN_PARAMETER = "CAMPAIGN_SIGNING_CHAIN_PARAMETER"  # SSM parameter holding the KMS key's chain (PEM)
DEV_SUBJECT = "campaign development signer (not trusted for publication)"
DEV_CA_SUBJECT = "campaign development CA (not trusted for publication)"
DEV_ORG = "campaign (development)"
DEV_DAYS = 3650  # a development chain is for trying things out; it is never trusted, so it need not expire soon
DEV_CHAIN_VALUE = "development"  # the chain parameter's value until a real chain is put there
MAX_PEM_BYTES = 256 * 1024
KMS_RAW_LIMIT = 4096  # bytes of a RAW message to kms:Sign


@dataclass(frozen=True)
class SigningKey:
    """What signs: `kind` is development, certificate or kms. `chain_pem` is the leaf first, then its issuers.
    `key_pem` is None for a KMS key, whose `sign` callback signs instead (the private key never leaves KMS)."""

    kind: str
    chain_pem: bytes
    key_pem: bytes | None = None
    sign: Callable[[bytes], bytes] | None = None
    origin: str = ""  # where it came from, for the report: a folder, a file, a key ARN

    @property
    def trusted_for_publication(self) -> bool:
        return self.kind != "development"

    def describe(self) -> dict[str, Any]:
        note = ("a development certificate made on this machine: not trusted for publication; pass --sign-cert and "
                "--sign-key (or set CAMPAIGN_SIGN_CERT / CAMPAIGN_SIGN_KEY) to sign with a real one"
                if self.kind == "development" else "")
        return {"kind": self.kind, "subject": certificate_subject(self.chain_pem), "origin": self.origin,
                "trusted_for_publication": self.trusted_for_publication, "note": note}


def signing_key(*, cert: Path | None = None, key: Path | None = None, env: Mapping[str, str] | None = None,
                kms: Any = None, ssm: Any = None) -> SigningKey:
    """The key to sign with: --sign-cert/--sign-key, else CAMPAIGN_SIGN_CERT/KEY, else the KMS key the stack
    names (CAMPAIGN_SIGNING_KMS_KEY), else the development chain under the user's configuration folder."""
    env = os.environ if env is None else env
    cert = cert or (Path(env[ENV_CERT]) if env.get(ENV_CERT) else None)
    key = key or (Path(env[ENV_KEY]) if env.get(ENV_KEY) else None)
    if cert or key:
        if not (cert and key):
            raise CredentialsUnavailable("--sign-cert and --sign-key go together (or CAMPAIGN_SIGN_CERT and "
                                         "CAMPAIGN_SIGN_KEY): give both")
        return certificate_key(cert, key)
    if env.get(ENV_KMS_KEY):
        return kms_key(env[ENV_KMS_KEY], chain_parameter=env.get(ENV_CHAIN_PARAMETER), kms=kms, ssm=ssm)
    return development_key(config_dir(env))


# --- a certificate and key from files ---------------------------------------------------------------


def certificate_key(cert: Path, key: Path) -> SigningKey:
    """A PEM chain (leaf first) and its PEM private key (EC P-256: c2pa's ES256), checked to belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    chain_pem, key_pem = _read_pem(cert, "certificate"), _read_pem(key, "private key")
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except ValueError as exc:
        raise CredentialsUnavailable(f"{cert}: not a PEM certificate chain ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsUnavailable(f"{key}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise CredentialsUnavailable(f"{key}: an EC P-256 key is needed (ES256); this is {type(private).__name__}")
    if _spki(private.public_key()) != _spki(leaf.public_key()):
        raise CredentialsUnavailable(f"{key}: this key does not belong to the first certificate in {cert}")
    return SigningKey("certificate", chain_pem, key_pem, origin=str(cert))


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsUnavailable(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise CredentialsUnavailable(f"{path}: not a PEM {what}")
    return data


def _spki(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def certificate_subject(chain_pem: bytes) -> str:
    from cryptography import x509

    try:
        return str(x509.load_pem_x509_certificates(chain_pem)[0].subject.rfc4514_string())
    except ValueError:
        return "unknown"


# --- the development chain ---------------------------------------------------------------------------


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's configuration folder for campaign: $XDG_CONFIG_HOME/campaign, else ~/.config/campaign
    (%APPDATA%\\campaign on Windows)."""
    env = os.environ if env is None else env
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "campaign"
    if os.name == "nt" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "campaign"
    return Path.home() / ".config" / "campaign"


def development_key(folder: Path) -> SigningKey:
    """The development chain under `folder`/credentials/dev (made on first use). Two processes that make it at
    once each build a complete folder under a private name and rename it into place; the loser's rename fails and
    it uses the winner's, so nobody ever reads half a chain."""
    final = folder / "credentials" / "dev"
    chain, key = final / "chain.pem", final / "key.pem"
    if not chain.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".dev-{secrets.token_hex(6)}"
        tmp.mkdir(mode=0o700)
        try:
            chain_pem, key_pem = make_development_chain()
            fd = os.open(tmp / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key_pem)
            (tmp / "chain.pem").write_bytes(chain_pem)
            (tmp / "README.txt").write_text("A development certificate chain made by `campaign` on first use. It is "
                                            "NOT trusted for publication: sign deliverables with --sign-cert/--sign-key.\n")
            with contextlib.suppress(OSError):  # another process won the race: use its chain
                os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        return SigningKey("development", chain.read_bytes(), key.read_bytes(), origin=str(final))
    except OSError as exc:
        raise CredentialsUnavailable(f"{final}: the development chain cannot be read ({exc.strerror or exc}); "
                                     "remove the folder to have a new one made") from None


def make_development_chain(public_key: Any = None, *, org: str = DEV_ORG, signer: str = DEV_SUBJECT,
                           ca_name: str = DEV_CA_SUBJECT) -> tuple[bytes, bytes]:
    """(chain PEM: leaf then CA, leaf private key PEM; empty when `public_key` is given). A leaf signed by a
    separate CA, KeyUsage digitalSignature (critical), AuthorityKeyIdentifier and EKU emailProtection: what
    c2pa's default settings accept (reference/toolchain.md: a self-signed leaf is refused)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # a little slack for clocks that disagree
    until = now + dt.timedelta(days=DEV_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())  # lives only here: the CA signs one leaf and is forgotten
    leaf_private = None
    if public_key is None:
        leaf_private = ec.generate_private_key(ec.SECP256R1())
        public_key = leaf_private.public_key()

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])

    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(name(ca_name)).issuer_name(name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(signer)).issuer_name(ca.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    key_pem = b"" if leaf_private is None else leaf_private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return chain, key_pem


# --- AWS KMS -------------------------------------------------------------------------------------------


def kms_key(key_id: str, *, chain_parameter: str | None, kms: Any = None, ssm: Any = None) -> SigningKey:
    """A KMS ECC_NIST_P256 key that signs each claim (kms:Sign, ECDSA_SHA_256). Its chain
    is the SSM parameter's PEM; while that parameter still says `development`, a development chain is issued for
    the key's public key (kms:GetPublicKey) by a CA key that exists only in this process's memory."""
    import boto3

    kms = kms or boto3.client("kms")
    chain_pem: bytes | None = None
    if chain_parameter:
        ssm = ssm or boto3.client("ssm")
        value = str(ssm.get_parameter(Name=chain_parameter)["Parameter"]["Value"])
        chain_pem = value.encode() if "-----BEGIN CERTIFICATE" in value else None
    kind = "kms"
    if chain_pem is None:
        from cryptography.hazmat.primitives import serialization

        # AWS KMS API Reference, GetPublicKey: PublicKey is a DER-encoded X.509 SubjectPublicKeyInfo
        public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
        chain_pem, _ = make_development_chain(public)
        kind = "development"  # an untrusted chain, whoever holds the key

    def sign(data: bytes) -> bytes:
        # AWS KMS API Reference, Sign: a RAW Message is at most 4096 bytes (KMS hashes it with the algorithm's
        # SHA-256); a longer claim (a video of many clips) is sent as its SHA-256 with MessageType DIGEST. For ECC
        # keys the signature is DER-encoded (ANS X9.62), which c2pa's callback signer accepts.
        if len(data) <= KMS_RAW_LIMIT:
            out = kms.sign(KeyId=key_id, Message=data, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
        else:
            out = kms.sign(KeyId=key_id, Message=hashlib.sha256(data).digest(), MessageType="DIGEST",
                           SigningAlgorithm="ECDSA_SHA_256")
        return bytes(out["Signature"])

    return SigningKey(kind, chain_pem, None, sign=sign, origin=key_id)
