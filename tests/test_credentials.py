"""Content Credentials end to end: a real run's every delivered file read back with c2pa's Reader (actions, source
type, models, prompts, ingredients by hash), tampering and missing manifests caught by `campaign credentials`, a
new key re-signing without re-making anything, `credentials: off`, a file that cannot be signed, and the
development chain made once when two processes make it at the same time."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import c2pa
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.credentials.claims import ALGORITHMIC, ASSERTION, COMPOSITE_SYNTHETIC
from pipeline.credentials.keys import SigningKey, development_key, make_development_chain
from pipeline.credentials.read import read_credentials

MANIFEST = """\
campaign: creds
defaults: {enhance: false, video: {frames: 9}}
assets: {sofa: assets/sofa.png, plant-mask: assets/plant-mask.png, music: assets/music.mp3}
images:
  - id: navy
    from: sofa
    edits:
      - erase-object: {mask: plant-mask}
      - search-recolor: {select_prompt: sofa, prompt: navy blue velvet}
videos:
  - id: teaser
    formats: ["16:9", "1:1"]
    fit: crop
    audio: {asset: music}
    shots:
      - prompt: A bee on a flower.
      - {prompt: The sofa in a sunlit loft., image: navy}
"""


def latest(out: Path, campaign: str) -> tuple[dict[str, Any], Path]:
    doc = json.loads((out / "runs" / campaign / "latest.json").read_text())
    path = out / "runs" / campaign / doc["report"]
    return json.loads(path.read_text()), path.parent


def manifest_store(path: Path) -> dict[str, Any]:
    mime = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}[path.suffix]
    with open(path, "rb") as fh, c2pa.Reader(mime, fh) as reader:
        doc: dict[str, Any] = json.loads(reader.json())
    return doc


def assertion(store: dict[str, Any], label: str) -> dict[str, Any]:
    active = store["manifests"][store["active_manifest"]]
    return next(a["data"] for a in active["assertions"] if a["label"] == label)


def failure_codes(store: dict[str, Any]) -> set[str]:
    return {f["code"] for f in (store.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])}


def delivered(report: dict[str, Any]) -> list[str]:
    """Every image, image step, clip, video format and poster the report names (independently of the signer)."""
    paths: list[str] = []
    for im in report["images"]:
        paths += [im["path"], *(s["path"] for s in im["steps"])]
    for v in report["videos"]:
        paths += [p for f in v["formats"] for p in (f["path"], f["poster"])] + [c["path"] for c in v["clips"]]
    return sorted(set(paths))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("creds")
    (folder / "assets").mkdir()
    src = Path(__file__).resolve().parents[1] / "manifests" / "assets"
    for name in ("sofa.png", "plant-mask.png", "music.mp3"):
        (folder / "assets" / name).write_bytes((src / name).read_bytes())
    manifest = folder / "creds.yaml"
    manifest.write_text(MANIFEST)
    out = folder / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    report, run_dir = latest(out, "creds")
    return manifest, out, report, run_dir


def test_every_delivered_file_reads_back_with_only_the_development_chain_untrusted(run) -> None:  # type: ignore[no-untyped-def]
    _, _, report, run_dir = run
    files = delivered(report)
    assert len(files) == 2 + 2 + 2 + 2 + 1  # 2 steps (the last is the image), image, 2 clips, 2 formats, 2 posters
    assert sorted(report["credentials"]["files"]) == files
    assert report["credentials"]["signer"]["kind"] == "development"
    assert not report["credentials"]["signer"]["trusted_for_publication"]
    for rel in files:
        store = manifest_store(run_dir / rel)
        assert failure_codes(store) == {"signingCredential.untrusted"}, rel
        active = store["manifests"][store["active_manifest"]]
        assert active["claim_generator_info"][0]["name"] == "campaign"
        assert report["credentials"]["files"][rel]["state"] == "signed"


def test_claims_say_what_made_each_file_and_never_claim_a_model_the_preview_did_not_run(run) -> None:  # type: ignore[no-untyped-def]
    _, out, report, run_dir = run
    video = report["videos"][0]
    clip = manifest_store(run_dir / video["clips"][1]["path"])
    actions = assertion(clip, "c2pa.actions.v2")["actions"]
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == ALGORITHMIC
    ours = assertion(clip, ASSERTION)
    assert ours["models"][0]["backend"] == "preview" and ours["models"][0]["generative_model_ran"] is False
    assert ours["prompts"][0]["prompt"] == "The sofa in a sunlit loft."
    # the start image is an ingredient by hash: the edited image's cached bytes
    [start] = ours["ingredients"]
    cached = out / "cache" / "image" / f"{report['images'][0]['key']}.png"
    assert start["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()

    crop = next(f for f in video["formats"] if f["format"] == "1:1")
    store = manifest_store(run_dir / crop["path"])
    names = [a["action"] for a in assertion(store, "c2pa.actions.v2")["actions"]]
    assert names[0] == "c2pa.created" and {"c2pa.placed", "c2pa.transcoded", "c2pa.cropped"} <= set(names)
    ours = assertion(store, ASSERTION)
    assert ours["digital_source_type"] == COMPOSITE_SYNTHETIC  # only preview clips: nothing a trained model made
    clip_hashes = [hashlib.sha256((run_dir / c["path"]).read_bytes()).hexdigest() for c in video["clips"]]
    assert clip_hashes  # the delivered clips are signed copies: their ingredient hashes are the cached bytes
    cached_clips = [hashlib.sha256((out / "cache" / "clip" / f"{c['key']}.mp4").read_bytes()).hexdigest()
                    for c in video["clips"]]
    assert [i["sha256"] for i in ours["ingredients"] if i["role"] == "clip"] == cached_clips
    assert any(i["role"] == "audio" and i["sha256"] for i in ours["ingredients"])

    image = manifest_store(run_dir / report["images"][0]["path"])
    names = [a["action"] for a in assertion(image, "c2pa.actions.v2")["actions"]]
    assert names == ["c2pa.opened", "c2pa.edited", "c2pa.edited"]
    models = assertion(image, ASSERTION)["models"]
    assert [m["id"] for m in models] == ["erase-object", "search-recolor"]
    assert not any(m["generative_model_ran"] for m in models)  # local classical edits and a placeholder


def test_media_a_model_made_is_trained_and_what_combines_it_composite(run) -> None:  # type: ignore[no-untyped-def]
    """The same run's claims as they would be had a GPU backend made the clips and Stability on Bedrock the edit:
    the claims follow what each job's result says made it (pipeline/credentials/claims.py), signed and read back."""
    import copy

    from pipeline.credentials.claims import COMPOSITE_TRAINED, TRAINED, file_claims
    from pipeline.credentials.sign import sign_file

    manifest, out, report, _ = run
    plan, results = _replan(manifest, out)
    info = {r.job_id: copy.deepcopy(r.info or {}) for r in results}
    made = copy.deepcopy(report)
    for c in made["videos"][0]["clips"]:
        c.update(backend="sagemaker", placeholder=False)
        info[c["job"]].update(backend="sagemaker", placeholder=False, identity="sagemaker/cogvideox-5b@weights-v1")
    last = info["image:navy"]["steps"][-1]
    last.update(backend="bedrock", placeholder=False, identity="stability.stable-image-search-recolor-v1:0")
    claims = file_claims(plan, made, info, lambda key: None)
    clip = claims[made["videos"][0]["clips"][0]["path"]]
    assert clip.source_type == TRAINED and clip.models[0]["generative_model_ran"] is True
    assert clip.actions[0]["softwareAgent"] == {"name": "cogvideox-5b", "version": "sagemaker/cogvideox-5b@weights-v1"}
    video = claims[made["videos"][0]["formats"][0]["path"]]
    poster = claims[made["videos"][0]["formats"][0]["poster"]]
    assert video.source_type == poster.source_type == COMPOSITE_TRAINED
    image = claims[made["images"][0]["path"]]
    first_step = claims[made["images"][0]["steps"][0]["path"]]
    assert image.source_type == COMPOSITE_TRAINED and first_step.source_type is None  # erase-object ran locally
    assert [a.get("digitalSourceType") for a in image.actions] == [None, None, COMPOSITE_TRAINED]
    dst = out.parent / "trained.mp4"
    unsigned = out / "cache" / "video" / f"{plan.job('video:teaser').video.outputs[0].key}.mp4"  # as the cache keeps it
    assert read_credentials(unsigned).state == "missing"  # the cache holds unsigned outputs
    sign_file(unsigned, dst,
              video.definition(campaign="creds", run_id="x", include_prompts=True, signed_at="now"),
              development_key(out.parent / "cfg"), mime="video/mp4")
    store = manifest_store(dst)
    assert assertion(store, ASSERTION)["digital_source_type"] == COMPOSITE_TRAINED
    assert failure_codes(store) == {"signingCredential.untrusted"}


def test_report_html_shows_each_files_credential_state(run) -> None:  # type: ignore[no-untyped-def]
    _, _, report, run_dir = run
    page = (run_dir / "report.html").read_text()
    section = page[page.index("<section id=credentials>"):]
    section = section[:section.index("</section>")]
    assert "not trusted for publication" in section
    for rel in delivered(report):
        assert f">{rel}</a>" in section
    assert section.count(">signed</span>") == len(delivered(report))


def test_campaign_credentials_exit_0_intact_and_1_on_a_flipped_byte_or_no_manifest(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    _, _, report, run_dir = run
    video = run_dir / report["videos"][0]["formats"][0]["path"]
    image = run_dir / report["images"][0]["path"]
    assert main(["credentials", str(video), str(image)]) == 0
    out = capsys.readouterr().out
    assert "intact" in out and "NOT trusted for publication" in out and "c2pa.created" in out

    # one byte in the video's media data (inside mdat, away from its header)
    data = bytearray(video.read_bytes())
    at = data.index(b"mdat") + 4 + 1000
    data[at] ^= 0xFF
    (tmp_path / "video.mp4").write_bytes(bytes(data))
    assert main(["credentials", str(tmp_path / "video.mp4")]) == 1
    assert "tampered" in (text := capsys.readouterr().out) and "assertion.bmffHash.mismatch" in text

    # one pixel changed, the manifest kept: re-encode the pixels into the same PNG chunks
    with Image.open(image) as im:
        pixels = im.copy()
    pixels.putpixel((3, 3), tuple(255 - c for c in pixels.getpixel((3, 3))))  # type: ignore[union-attr, arg-type]
    raw = image.read_bytes()
    tampered = tmp_path / "image.png"
    _swap_idat(raw, pixels, tampered)
    assert main(["credentials", str(tampered)]) == 1
    assert "assertion.dataHash.mismatch" in capsys.readouterr().out

    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert main(["credentials", str(plain)]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(["credentials", str(tmp_path / "absent.mp4")]) == 1
    assert "absent.mp4: unreadable" in capsys.readouterr().out


def _swap_idat(signed_png: bytes, pixels: Image.Image, dest: Path) -> None:
    """The signed PNG with its IDAT chunks replaced by the changed pixels' (its caBX manifest chunk kept)."""
    import struct
    import zlib

    def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
        out, i = [], 8
        while i < len(data):
            (n,) = struct.unpack(">I", data[i:i + 4])
            out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
            i += 12 + n
        return out

    buf = io.BytesIO()
    pixels.save(buf, format="PNG")
    new_idat = b"".join(body for kind, body in chunks(buf.getvalue()) if kind == b"IDAT")
    parts, done = [signed_png[:8]], False
    for kind, body in chunks(signed_png):
        if kind == b"IDAT":
            if done:
                continue
            body, done = new_idat, True
        parts.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
    dest.write_bytes(b"".join(parts))


def test_a_new_key_re_signs_every_file_and_re_makes_nothing(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest, out, _, _ = run
    # a brand's own chain (issued here by a test CA; the library's default trust list knows neither)
    chain, key = make_development_chain(org="Example Brand", signer="Example Brand signer", ca_name="Example Brand CA")
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    assert main(["run", str(manifest), "--out", str(out), "--quiet", "--sign-cert", str(tmp_path / "chain.pem"),
                 "--sign-key", str(tmp_path / "key.pem")]) == 0
    report, run_dir = latest(out, "creds")
    assert report["jobs"]["executed"] == 0 and report["jobs"]["cached"] == report["jobs"]["total"]
    assert report["credentials"]["signer"]["kind"] == "certificate"
    for rel in delivered(report):
        found = read_credentials(run_dir / rel)
        assert found.intact and not found.development and found.signer == "Example Brand signer", rel


def test_a_wrong_key_is_refused_before_anything_runs(run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    manifest, out, _, _ = run
    chain, _ = make_development_chain()
    _, other = make_development_chain()
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(other)
    rc = main(["run", str(manifest), "--out", str(tmp_path / "o"), "--sign-cert", str(tmp_path / "chain.pem"),
               "--sign-key", str(tmp_path / "key.pem")])
    err = capsys.readouterr().err
    assert rc == 1 and "key.pem: this key does not belong to the first certificate" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_file_that_cannot_be_signed_is_an_error_of_its_item_and_not_delivered(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.report.write import write_run

    manifest, out, report, _ = run
    plan, results = _replan(manifest, out)

    def refuse(data: bytes) -> bytes:
        raise RuntimeError("the signing service is down")

    chain, _ = make_development_chain()
    broken = SigningKey("certificate", chain, None, sign=refuse, origin="test")
    again = write_run(plan, results, _store(out), run_id="broken", started=0.0, finished=1.0, signing=broken)
    assert again["status"] == "partial"
    errors = [e for e in again["errors"] if e["error"] == "SigningFailed"]
    assert {e["job"] for e in errors} == {"image:navy", "clip:teaser/01", "clip:teaser/02", "video:teaser"}
    run_dir = out / "runs" / "creds" / "broken"
    assert not list((run_dir / "videos").glob("*.mp4")) and not list((run_dir / "clips").glob("*.mp4"))
    # only the reviewer's copy of the manifest's own source picture is there (ours to sign it is not)
    assert [p.name for p in (run_dir / "images").rglob("*.png")] == ["step-0-source.png"]
    assert all(f["path"] is None for f in again["videos"][0]["formats"])
    assert not [p for p in run_dir.rglob("*") if p.is_file() and ".signing-" in p.name]  # no temp left
    assert "SigningFailed" in (run_dir / "report.html").read_text()


def test_credentials_off_delivers_unsigned_and_include_prompts_false_leaves_them_out(run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from pipeline.manifest.credentials import CredentialsSpec
    from pipeline.report.write import write_run

    manifest, out, _, _ = run
    plan, results = _replan(manifest, out)
    off = write_run(replace(plan, credentials=CredentialsSpec(enabled=False), _index={}), results, _store(out),
                    run_id="off", started=0.0, finished=1.0)
    assert off["status"] == "succeeded" and not off["credentials"]["enabled"]
    video = out / "runs" / "creds" / "off" / off["videos"][0]["formats"][0]["path"]
    assert read_credentials(video).state == "missing"
    quiet = write_run(replace(plan, credentials=CredentialsSpec(include_prompts=False), _index={}), results,
                      _store(out), run_id="quiet", started=0.0, finished=1.0)
    store = manifest_store(out / "runs" / "creds" / "quiet" / quiet["videos"][0]["formats"][0]["path"])
    ours = assertion(store, ASSERTION)
    assert "prompts" not in ours and ours["models"]
    assert "sunlit loft" not in json.dumps(store)


def test_the_manifest_field_reads_off_and_include_prompts(write_campaign: Callable[[str], Path]) -> None:
    from pipeline.manifest.campaign import load_manifest
    from pipeline.manifest.credentials import CredentialsSpec

    base = "campaign: fields\nvideos:\n  - id: v\n    shots:\n      - prompt: A bee.\n"
    assert load_manifest(write_campaign(base)).credentials == CredentialsSpec()
    assert load_manifest(write_campaign(base + "credentials: off\n", "b.yaml")).credentials.enabled is False
    spec = load_manifest(write_campaign(base + "credentials: {include_prompts: false}\n", "c.yaml")).credentials
    assert spec == CredentialsSpec(enabled=True, include_prompts=False)
    with pytest.raises(Exception, match="credentials"):
        load_manifest(write_campaign(base + "credentials: {include_prompt: false}\n", "d.yaml"))


def _store(out: Path) -> Any:
    from pipeline.storage.store import LocalStore

    return LocalStore(out)


def _replan(manifest: Path, out: Path) -> tuple[Any, list[Any]]:
    """The run's plan and its results as cache hits (the same plan `campaign run` made)."""
    from pipeline.backends import select_backends
    from pipeline.manifest.campaign import load_manifest
    from pipeline.plan.build import KeySource, build_plan
    from pipeline.run.runner import run_plan

    backends = select_backends()
    keys = KeySource(enhancer=backends.enhancer.identity(), images=backends.images.identity,
                     video=backends.video.identity)
    plan = build_plan(load_manifest(manifest), keys, backends=backends.names())
    work = out.parent / f"work-{os.getpid()}"
    work.mkdir(exist_ok=True)
    results = run_plan(plan, _store(out), backends, workdir=work, workers=1)
    assert all(r.status == "cached" for r in results)
    return plan, results


def _make_dev_key(folder: str) -> bytes:
    return development_key(Path(folder)).chain_pem


def test_two_processes_making_the_development_chain_at_once_get_the_same_one(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        chains = pool.map(_make_dev_key, [str(tmp_path)] * 4)
    assert len(set(chains)) == 1
    assert sorted(p.name for p in (tmp_path / "credentials").iterdir()) == ["dev"]  # no half-made folder left
    assert (tmp_path / "credentials" / "dev" / "key.pem").stat().st_mode & 0o077 == 0


def test_the_process_that_loses_the_race_uses_the_winners_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: another process's chain appears between our making ours and renaming it into place."""
    winner = development_key(tmp_path / "winner")
    real_rename = os.rename

    def rename_after_the_winner(src: Any, dst: Any) -> None:
        Path(dst).mkdir(parents=True)
        for name in ("chain.pem", "key.pem"):
            (Path(dst) / name).write_bytes((Path(winner.origin) / name).read_bytes())
        real_rename(src, dst)  # fails: the folder is there and not empty

    monkeypatch.setattr(os, "rename", rename_after_the_winner)
    got = development_key(tmp_path / "loser")
    assert got.chain_pem == winner.chain_pem
    assert sorted(p.name for p in (tmp_path / "loser" / "credentials").iterdir()) == ["dev"]
