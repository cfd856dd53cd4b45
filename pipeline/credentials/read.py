"""Reading Content Credentials back (`campaign credentials FILE...`): what a file's manifest says and whether it
is intact, with c2pa's Reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.credentials.claims import ASSERTION, MIME, mime_of
from pipeline.credentials.keys import DEV_ORG

UNTRUSTED = "signingCredential.untrusted"  # c2pa: the chain is not in the trust list (the development chain)


@dataclass(frozen=True)
class Credentials:
    """One file's credentials as read: `state` is intact, missing, tampered or unreadable."""

    file: str
    state: str
    problems: tuple[str, ...] = ()  # failure codes and explanations (tampered), or why it could not be read
    generator: str | None = None
    actions: tuple[str, ...] = ()
    source_type: str | None = None
    models: tuple[str, ...] = ()
    signer: str | None = None
    issuer: str | None = None
    time: str | None = None
    development: bool = False  # signed with the development chain: not trusted for publication
    untrusted: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def intact(self) -> bool:
        return self.state == "intact"

    def lines(self) -> list[str]:
        if not self.intact:
            return [f"{self.file}: {self.state}: {'; '.join(self.problems)}"]
        trust = ("signed with the development certificate: NOT trusted for publication" if self.development else
                 "signer not in the trust list" if self.untrusted else "signer trusted")
        return [f"{self.file}: intact ({trust})",
                f"  generator: {self.generator}",
                f"  actions: {', '.join(self.actions)}",
                f"  source type: {self.source_type or 'not stated'}",
                f"  models: {', '.join(self.models) or 'none'}",
                f"  signer: {self.signer} (issued by {self.issuer})",
                f"  time: {self.time or 'not stated'}"]


def read_credentials(path: Path) -> Credentials:
    """Read and validate one file's manifest. Never raises for a bad file: the state says what is wrong."""
    import c2pa

    name = str(path)
    mime = mime_of(name)
    if mime is None:
        return Credentials(name, "unreadable", (f"not a format campaign signs ({', '.join(sorted(MIME))})",))
    try:
        with open(path, "rb") as fh, c2pa.Reader(mime, fh) as reader:
            store = _json(reader.json())
    except OSError as exc:
        return Credentials(name, "unreadable", (f"cannot read the file: {exc.strerror or exc}",))
    except Exception as exc:  # c2pa raises its own error types; a missing manifest is one of them
        text = f"{type(exc).__name__}: {exc}"
        if "ManifestNotFound" in text or "JumbfNotFound" in text or "no JUMBF" in text.lower():
            return Credentials(name, "missing", ("no Content Credentials (no C2PA manifest in the file)",))
        return Credentials(name, "tampered", (f"the manifest cannot be read: {text}",))
    return _interpret(name, store)


def _json(text: str) -> dict[str, Any]:
    import json

    doc: dict[str, Any] = json.loads(text)
    return doc


def _interpret(name: str, store: dict[str, Any]) -> Credentials:
    active = (store.get("manifests") or {}).get(store.get("active_manifest") or "")
    if not active:
        return Credentials(name, "missing", ("the file has a manifest store but no active manifest",), raw=store)
    codes = _failures(store)
    untrusted = UNTRUSTED in {c for c, _ in codes}
    failures = [f"{c}: {e}" if e else c for c, e in codes if c != UNTRUSTED]
    sig = active.get("signature_info") or {}
    ours = _assertion(active, ASSERTION) or {}
    actions = (_assertion(active, "c2pa.actions.v2") or _assertion(active, "c2pa.actions") or {}).get("actions", [])
    generator = ", ".join(f"{g.get('name')} {g.get('version') or ''}".strip()
                          for g in active.get("claim_generator_info") or []) or active.get("claim_generator")
    issuer = sig.get("issuer")
    found = Credentials(
        file=name, state="tampered" if failures or store.get("validation_state") == "Invalid" else "intact",
        problems=tuple(failures) or (("validation state Invalid",) if store.get("validation_state") == "Invalid" else ()),
        generator=generator, actions=tuple(str(a.get("action")) for a in actions),
        source_type=ours.get("digital_source_type") or next(
            (a.get("digitalSourceType") for a in actions if a.get("digitalSourceType")), None),
        models=tuple(f"{m.get('id')} ({m.get('backend')}{'' if m.get('generative_model_ran') else ', no model ran'})"
                     for m in ours.get("models", [])),
        signer=sig.get("common_name") or sig.get("cert_serial_number"), issuer=issuer,
        time=sig.get("time") or ours.get("signed_at"),  # no timestamp authority: the claim's own time
        development=DEV_ORG in str(issuer or ""), untrusted=untrusted, raw=store)
    return found


def _failures(store: dict[str, Any]) -> list[tuple[str, str]]:
    """Every failure code with its explanation: from validation_results (active manifest and ingredient deltas),
    else the older flat validation_status list."""
    out: list[tuple[str, str]] = []
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    for entry in active.get("failure", []):
        out.append((str(entry.get("code")), str(entry.get("explanation") or "")))
    if not results:
        for entry in store.get("validation_status") or []:
            out.append((str(entry.get("code")), str(entry.get("explanation") or "")))
    return out


def _assertion(manifest: dict[str, Any], label: str) -> dict[str, Any] | None:
    for a in manifest.get("assertions") or []:
        if a.get("label") == label:
            data: dict[str, Any] = a.get("data") or {}
            return data
    return None
