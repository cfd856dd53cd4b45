"""Per-asset review from the command line, on real preview runs: reject with a note, regenerate one clip with a new
seed (only it and its video are made, counted from the run's jobs), both versions in report.json and report.html,
`campaign plan` naming the override, `campaign export` delivering only approved files and never overwriting a
file it did not write; bad input is one line, and decisions are append-only records beside the runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import ReviewRefused
from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, build_plan
from pipeline.plan.overrides import Override, check_override

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = """\
    campaign: review-demo
    assets:
      sofa: assets/sofa.png
    images:
      - {id: big, from: sofa, edits: [{upscale-fast: {}}]}
    videos:
      - id: teaser
        formats: ["16:9", "9:16"]
        shots:
          - {prompt: A bee on a flower., frames: 9}
          - {prompt: A sofa in a sunlit loft., frames: 9}
    """
NOTE = "too dark <b>here</b> [link](https://x.example)"


def _report(out: Path, run_id: str) -> dict[str, Any]:
    return json.loads((out / "runs" / "review-demo" / run_id / "report.json").read_text())


def _runs(out: Path) -> list[str]:
    return sorted(p.parent.name for p in (out / "runs" / "review-demo").glob("*/report.json"))


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run, its first clip rejected with a note, then regenerated with seed 7: a second run."""
    base = tmp_path_factory.mktemp("review")
    shutil.copytree(ROOT / "manifests" / "assets", base / "assets")
    manifest = base / "campaign.yaml"
    manifest.write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    before = hashlib.sha256(manifest.read_bytes()).hexdigest()
    out = base / "out"
    assert main(["run", str(manifest), "--out", str(out), "--quiet"]) == 0
    [first] = _runs(out)
    assert main(["review", "review-demo", "clip:teaser/01", "--reject", "--note", NOTE, "--out", str(out)]) == 0
    assert main(["review", "review-demo", "clip:teaser/01", "--regenerate", "--seed", "7", "--out", str(out),
                 "--quiet"]) == 0
    [second] = [r for r in _runs(out) if r != first]
    return {"base": base, "out": out, "manifest": manifest, "sha": before, "first": first, "second": second}


def test_regenerate_makes_only_the_clip_and_its_video_and_keeps_both_versions(reviewed: dict[str, Any]) -> None:
    out = reviewed["out"]
    report = _report(out, reviewed["second"])
    made = {r["job"] for r in report["job_results"] if r["status"] == "executed"}
    assert made == {"clip:teaser/01", "video:teaser"}  # the clip and its video (every format): nothing else
    assert report["jobs"]["cached"] == report["jobs"]["total"] - 2
    [video] = report["videos"]
    assert {f["format"] for f in video["formats"]} == {"16:9", "9:16"}
    clip = video["clips"][0]
    assert clip["seed"] == 7 and video["clips"][1]["review"]["versions"][0]["current"]
    old, new = clip["review"]["versions"]
    assert (old["run_id"], old["made_with"]["seed"], old["current"]) == (reviewed["first"], 42, False)
    assert [(d["decision"], d["note"]) for d in old["decisions"]] == [("reject", NOTE), ("regenerate", "")]
    assert (new["run_id"], new["made_with"]["seed"], new["status"], new["current"]) == (reviewed["second"], 7,
                                                                                      "unreviewed", True)
    [replaced] = report["review"]["replaces"]
    assert (replaced["item"], replaced["run_id"], replaced["asked"]) == ("clip:teaser/01", reviewed["first"], {"seed": 7})
    html = (out / "runs" / "review-demo" / reviewed["second"] / "report.html").read_text()
    assert "too dark &lt;b&gt;here&lt;/b&gt;" in html and "<b>here</b>" not in html  # the note is text
    assert "This run replaces" in html and "v2 (this run)" in html
    # the first run's report now shows the rejection of its version
    first = _report(out, reviewed["first"])["videos"][0]["clips"][0]["review"]
    assert first["versions"][0]["decisions"][0]["note"] == NOTE
    # the user's manifest is untouched; the override lives beside the runs
    assert hashlib.sha256(reviewed["manifest"].read_bytes()).hexdigest() == reviewed["sha"]
    records = list((out / "reviews" / "review-demo" / "decisions").glob("*.json"))
    assert len(records) == 2


def test_plan_shows_the_override_and_a_plain_run_keeps_it(reviewed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out, manifest = reviewed["out"], reviewed["manifest"]
    assert main(["plan", str(manifest), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "review override (* below): clip:teaser/01: seed 7" in text
    assert len([x for x in text.splitlines() if "clip:teaser/01" in x and "cached *" in x]) == 1
    assert main(["plan", str(manifest), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["plan"]["overrides"] == {"clip:teaser/01": {"seed": 7}}


def test_export_holds_only_approved_files_and_never_overwrites_a_users_file(reviewed: dict[str, Any], tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = reviewed["out"]
    dest = tmp_path / "delivery"
    # a file of the user's where the export would write: refused before anything is written
    (dest / "videos").mkdir(parents=True)
    (dest / "videos" / "teaser-16x9.mp4").write_bytes(b"the user's own file")
    assert main(["review", "review-demo", "video:teaser", "--approve", "--note", "ship it", "--out", str(out)]) == 0
    assert main(["export", "review-demo", "--to", str(dest), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "was not written by campaign export" in err
    assert (dest / "videos" / "teaser-16x9.mp4").read_bytes() == b"the user's own file"
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["teaser-16x9.mp4"]

    (dest / "videos" / "teaser-16x9.mp4").unlink()
    assert main(["export", "review-demo", "--to", str(dest), "--out", str(out)]) == 0
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == ["export.json", "videos/teaser-16x9.mp4", "videos/teaser-9x16.mp4"]  # the image is not approved
    listed = json.loads((dest / "export.json").read_text())
    assert listed["run_id"] == reviewed["second"]
    assert {f["item"] for f in listed["files"]} == {"video:teaser"}
    assert {x["item"]: x["state"] for x in listed["left_out"]} == {"image:big": "unreviewed"}
    run_dir = out / "runs" / "review-demo" / reviewed["second"]
    for f in listed["files"]:
        assert (dest / f["path"]).read_bytes() == (run_dir / f["path"]).read_bytes()
        assert hashlib.sha256((dest / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    # exporting again replaces only its own files
    assert main(["export", "review-demo", "--to", str(dest), "--out", str(out)]) == 0


def test_bad_review_input_is_one_line_and_records_nothing(reviewed: dict[str, Any],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = reviewed["out"]
    folder = out / "reviews" / "review-demo" / "decisions"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    cases = [
        (["clip:teaser/09", "--approve"], "not an item of run"),
        (["../../etc", "--approve"], "is not an item of a report"),
        (["image:big", "--regenerate", "--prompt", "a cat"], "takes --prompt"),
        (["clip:teaser/02", "--regenerate", "--seed", "-3"], "--seed must be"),
        (["clip:teaser/02", "--approve", "--seed", "3"], "go with --regenerate"),
        (["video:teaser", "--regenerate", "--prompt", "x"], "a video is made from its clips"),
        (["clip:teaser/01", "--approve", "--run", "20990101T000000Z-none"], "no run"),
    ]
    for argv, said in cases:
        assert main(["review", "review-demo", *argv, "--out", str(out), "--quiet"]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert said in err and err.count("\n") == 0 and "Traceback" not in err, (argv, err)
    assert main(["review", "no-such-campaign", "clip:teaser/01", "--approve", "--out", str(out)]) == 1
    assert "no runs" in capsys.readouterr().err
    # nothing was recorded, and what was recorded before is byte for byte the same (append-only)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before


def test_an_image_edit_parameter_override_changes_only_that_images_key(write_campaign: Any) -> None:
    path = write_campaign("""\
        campaign: review-params
        assets: {sofa: assets/sofa.png}
        images:
          - {id: a, from: sofa, edits: [{upscale-creative: {prompt: a sofa, creativity: 0.3}}]}
          - {id: b, from: sofa, edits: [{upscale-fast: {}}]}
        """)
    campaign = load_manifest(path)
    keys = KeySource(enhancer="passthrough", images="local", video="preview")
    plain = build_plan(campaign, keys, backends={})
    ov = Override("image:a", params={"1.creativity": "0.2"})
    changed = build_plan(campaign, keys, backends={}, overrides={"image:a": ov})
    assert changed.job("image:a").key != plain.job("image:a").key
    assert changed.job("image:b").key == plain.job("image:b").key
    assert changed.job("image:a").image.steps[0].params["creativity"] == 0.2
    assert changed.overrides == {"image:a": {"params": {"1.creativity": "0.2"}}}
    for bad, said in ((Override("image:a", params={"1.creativity": "0.9"}), "outside"),
                      (Override("image:a", params={"2.creativity": "0.2"}), "no step 2"),
                      (Override("image:a", params={"1.mask": "sofa"}), "no parameter"),
                      (Override("image:zz", seed=1), "no such image")):
        with pytest.raises(ReviewRefused, match=said):
            check_override(campaign, bad)
