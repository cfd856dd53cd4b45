"""The cloud signer: an AWS KMS ECC P-256 key (moto) signs through c2pa's callback signer, its chain from the
stack's SSM parameter (a real PEM chain, or `development` for a chain issued in memory), every request checked
against botocore's model; the signatures read back valid with c2pa's Reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fake_aws.validate import model_checked
from moto import mock_aws
from PIL import Image

from pipeline.credentials.keys import DEV_CHAIN_VALUE, ENV_CHAIN_PARAMETER, ENV_KMS_KEY, make_development_chain, signing_key
from pipeline.credentials.read import read_credentials
from pipeline.credentials.sign import sign_file

REGION = "us-east-1"
DEFINITION = {"claim_generator_info": [{"name": "campaign", "version": "test"}], "title": "a.png",
              "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                  {"action": "c2pa.created",
                   "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"}]}}]}


@pytest.fixture
def aws(offline_aws: None) -> Any:
    """moto's KMS and SSM; every request the clients make is checked against botocore's model."""
    with mock_aws(), model_checked() as check:
        yield boto3.client("kms", region_name=REGION), boto3.client("ssm", region_name=REGION), check


def _png(path: Path) -> Path:
    Image.new("RGB", (32, 24), (200, 40, 90)).save(path)
    return path


def _sign_and_read(key: Any, tmp_path: Path, definition: dict[str, Any] = DEFINITION) -> dict[str, Any]:
    signed = tmp_path / "signed.png"
    sign_file(_png(tmp_path / "a.png"), signed, definition, key, mime="image/png")
    with open(signed, "rb") as fh, c2pa.Reader("image/png", fh) as reader:
        doc: dict[str, Any] = json.loads(reader.json())
    return doc


def _failures(doc: dict[str, Any]) -> set[str]:
    return {f["code"] for f in doc.get("validation_results", {}).get("activeManifest", {}).get("failure", [])}


def test_a_kms_key_with_a_development_chain_signs_claims_that_read_back_valid(aws: Any, tmp_path: Path) -> None:
    kms, ssm, check = aws
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    ssm.put_parameter(Name="/campaign/signing-chain", Value=DEV_CHAIN_VALUE, Type="String")
    key = signing_key(env={ENV_KMS_KEY: key_id, ENV_CHAIN_PARAMETER: "/campaign/signing-chain"}, kms=kms, ssm=ssm)
    assert key.key_pem is None and key.sign is not None  # no private key here: KMS signs
    doc = _sign_and_read(key, tmp_path)
    assert doc["validation_state"] != "Invalid"
    assert _failures(doc) == {"signingCredential.untrusted"}
    assert {"kms.Sign", "kms.GetPublicKey", "ssm.GetParameter"} <= set(check.checked) and not check.violations
    # the leaf certifies the KMS key's own public key
    leaf = x509.load_pem_x509_certificates(key.chain_pem)[0]
    spki = kms.get_public_key(KeyId=key_id)["PublicKey"]
    assert leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == spki
    assert read_credentials(tmp_path / "signed.png").intact


def test_a_kms_key_with_its_chain_in_the_parameter_uses_that_chain(aws: Any, tmp_path: Path) -> None:
    kms, ssm, check = aws
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    chain, _ = make_development_chain(public)  # stands in for a chain a CA issued for the KMS key
    ssm.put_parameter(Name="chain", Value=chain.decode(), Type="String")
    key = signing_key(env={ENV_KMS_KEY: key_id, ENV_CHAIN_PARAMETER: "chain"}, kms=kms, ssm=ssm)
    doc = _sign_and_read(key, tmp_path)
    assert {"kms.Sign", "ssm.GetParameter"} <= set(check.checked) and not check.violations
    assert key.kind == "kms" and key.chain_pem == chain
    assert _failures(doc) == {"signingCredential.untrusted"}


def test_the_kms_callback_returns_a_der_signature_over_a_short_claim_sent_raw(aws: Any) -> None:
    kms, _, _ = aws
    key_id = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    key = signing_key(env={ENV_KMS_KEY: key_id}, kms=kms)
    data = b"claim bytes " * 200  # about the size c2pa hands the callback
    signature = key.sign(data) if key.sign else b""
    leaf = x509.load_pem_x509_certificates(key.chain_pem)[0]
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, data, ec.ECDSA(hashes.SHA256()))  # raises if the signature does not verify


def test_a_claim_over_4096_bytes_is_signed_as_its_digest_and_reads_back_valid(tmp_path: Path) -> None:
    """moto does not implement MessageType DIGEST: a Stubber on a real KMS client answers with a signature a local
    P-256 key makes over the digest it is sent (what KMS does with the key it holds), and checks every request
    against botocore's model."""
    from botocore.stub import ANY, Stubber
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    local = ec.generate_private_key(ec.SECP256R1())
    with model_checked() as check:
        kms = boto3.client("kms", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    key_id = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    spki = local.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    sent: list[dict[str, Any]] = []
    with Stubber(kms) as stub:
        stub.add_response("get_public_key", {"KeyId": key_id, "PublicKey": spki, "KeySpec": "ECC_NIST_P256",
                                             "KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": ["ECDSA_SHA_256"]},
                          {"KeyId": key_id})
        key = signing_key(env={ENV_KMS_KEY: key_id}, kms=kms)
        # a claim this long is what a video of many clips gives (one ingredient and one action per clip)
        definition = json.loads(json.dumps(DEFINITION))
        definition["assertions"].append({"label": "org.campaign-pipeline.generation",
                                         "data": {"models": [{"id": f"clip-{i}"} for i in range(10)]}})
        definition["ingredients"] = [{"title": f"clip-{i}.mp4", "relationship": "componentOf", "format": "video/mp4",
                                      "instance_id": f"sha256:{i:064x}"} for i in range(60)]
        definition["assertions"][0]["data"]["actions"] += [
            {"action": "c2pa.placed", "parameters": {"ingredientIds": [f"sha256:{i:064x}"]}} for i in range(60)]

        real_sign = kms.sign

        def sign_with_local_key(**params: Any) -> dict[str, Any]:  # the stubbed reply carries the local signature
            sent.append(params)
            signature = local.sign(params["Message"], ec.ECDSA(Prehashed(hashes.SHA256())))
            stub.add_response("sign", {"KeyId": key_id, "Signature": signature, "SigningAlgorithm": "ECDSA_SHA_256"},
                              {"KeyId": key_id, "Message": ANY, "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256"})
            return dict(real_sign(**params))

        kms.sign = sign_with_local_key  # type: ignore[method-assign]
        doc = _sign_and_read(key, tmp_path, definition)
        stub.assert_no_pending_responses()
    assert [p["MessageType"] for p in sent] == ["DIGEST"] and len(sent[0]["Message"]) == 32
    assert check.checked == ["kms.GetPublicKey", "kms.Sign"] and not check.violations
    assert _failures(doc) == {"signingCredential.untrusted"}
