"""Manifest loading and validation: the example is valid; every problem is found, located and explained."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import catalog
from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.schedule_expr import schedule_problem
from pipeline.manifest.schema import SCHEMA_PATH, render_schema

INVALID = sorted((Path(__file__).parent / "manifests" / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S+): (.*)$")
SHARED_ASSETS = Path(__file__).resolve().parents[1] / "manifests" / "assets"  # what the invalid corpus points at


def test_example_is_valid_and_resolved(example_manifest: Path) -> None:
    c = load_manifest(example_manifest)
    assert c.name == "spring-sofa-launch"
    assert [i.id for i in c.images] == ["sofa-navy", "sofa-cutout", "sofa-brand"]
    teaser = c.videos[0]
    assert teaser.crossfade == 0.5 and teaser.audio and teaser.audio.fade_out == 1.0
    assert [s.seed for s in teaser.shots] == [42, 11, 42]  # defaults apply unless a shot says otherwise
    assert [s.enhance for s in teaser.shots] == [True, False, True]
    assert teaser.shots[2].frames == 33 and teaser.shots[0].frames == 49
    assert c.assets["sofa"].path and c.assets["sofa"].path.is_file()


def test_shipped_schema_matches_the_catalog() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), "run: python -m pipeline.manifest.schema"
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["$defs"]["edit"]["propertyNames"]["enum"]) == set(catalog.EDIT_TOOLS)
    assert len(catalog.EDIT_TOOLS) == 13


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_corpus_reports_every_problem_with_its_position(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = [EXPECT.match(line) for line in path.read_text().splitlines() if line.startswith("# expect:")]
    assert expected and all(expected)
    assert main(["validate", str(path), "--allow-outside", str(SHARED_ASSETS)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(expected), "\n".join(out)
    for m in expected:
        assert m is not None
        line, col, where, message = m.groups()
        prefix = f"{path}:{line}:{col}: error: {where}: "
        hits = [o for o in out if o.startswith(prefix) and message in o]
        assert hits, f"missing {prefix}{message}\ngot:\n" + "\n".join(out)


def test_validate_many_files_exit_code(example_manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(example_manifest)]) == 0
    assert "ok (3 image(s), 2 video(s), 5 shot(s))" in capsys.readouterr().out
    assert main(["validate", str(example_manifest), str(INVALID[0])]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the manifest is empty"),
        (b"   \n# only a comment\n", "the manifest is empty"),
        (b"- a\n- b\n", "must be a mapping of keys"),
        (b"just a string", "must be a mapping of keys"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "not UTF-8 text"),
        (b"campaign: abc\x00def\n", "NUL bytes"),
        (b"campaign: [unclosed\n", "invalid YAML"),
        (b"campaign: a\ncampaign: b\n", "duplicate key 'campaign'"),
        (b"a: &a [x]\nb: {<<: *a}\n", "merge keys"),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nests too deeply"),
        (b"campaign: x\n---\ncampaign: y\n", "invalid YAML"),
        (b"campaign: nan-guidance\ndefaults:\n  video: {guidance: .nan}\n", "3:21: error: defaults.video.guidance: '.nan' is not a finite number"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "binary", "nul", "syntax", "duplicate-key", "merge-key", "deep",
         "two-documents", "nan"],
)
def test_hostile_or_broken_input_is_a_clear_error(tmp_path: Path, content: bytes, message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"{path}:") and ": error: " in out and message in out, out
    assert "Traceback" not in out


def test_alias_bomb_is_refused_without_expanding(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")  # 10**10 values if expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("campaign: bomb\n" + "\n".join(lines) + "\n")
    # In a child held to 10 s of CPU (not wall time, so a loaded machine changes nothing): a loader that expanded
    # the 10**10 values would be killed by the limit instead of answering.
    limit = "import resource, sys; resource.setrlimit(resource.RLIMIT_CPU, (10, 10)); from pipeline.cli import main; "
    proc = subprocess.run([sys.executable, "-c", limit + f"sys.exit(main(['validate', {str(path)!r}]))"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "alias bomb" in proc.stdout


def test_huge_file_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("campaign: huge\ndescription: '" + "x" * 3_000_000 + "'\n")
    assert main(["validate", str(path)]) == 2
    assert "larger than 1024 KiB" in capsys.readouterr().out


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml"), str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "nope.yaml:1:1: error: <document>: no such file" in out
    assert "is a directory" in out


def test_crossfade_longer_than_a_middle_clip_can_give(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: xfade
        videos:
          - id: v
            transition: {crossfade: 2.0}
            shots: [{prompt: a}, {prompt: b, frames: 25}, {prompt: c}]
        """)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    [p] = exc.value.problems
    assert (p.line, p.path) == (4, "videos[0].transition.crossfade")
    assert "a 2 s crossfade is 16 frames at 8 fps" in p.message and "at most 1.5 s fits" in p.message


def test_crossfade_is_checked_in_whole_frames_as_assembly_counts_them(write_campaign) -> None:  # type: ignore[no-untyped-def]
    text = """\
        campaign: xfade-frames
        videos:
          - id: v
            transition: {crossfade: XF}
            shots: [{prompt: a, frames: 9}, {prompt: b, frames: 9}, {prompt: c, frames: 9}]
        """
    load_manifest(write_campaign(text.replace("XF", "0.5")))  # 4 frames a side of the 9-frame middle clip
    with pytest.raises(ManifestInvalid, match="at most 0.5 s fits"):
        load_manifest(write_campaign(text.replace("XF", "0.5625")))  # rounds to 5 frames: 10 > 9


def test_continuity_forbids_explicit_start_image_after_first_shot(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: cont
        assets: {sofa: assets/sofa.png}
        videos:
          - id: v
            continuity: last-frame
            shots:
              - {prompt: a, image: sofa}
              - {prompt: b, image: sofa}
        """)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [p.path for p in exc.value.problems] == ["videos[0].shots[1].image"]


def test_ids_that_are_unsafe_for_paths_are_rejected(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: ids
        assets: {"../etc": assets/sofa.png}
        videos:
          - id: "a/../../b"
            shots: [{prompt: a}]
        """)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    msgs = {p.path: p.message for p in exc.value.problems}
    assert "not allowed" in msgs["assets.../etc"]
    assert "not a valid id" in msgs["videos[0].id"]


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("cron(0 9 ? * MON *)", True), ("cron(0/15 8-17 ? * MON-FRI *)", True), ("cron(0 12 1 * ? 2027)", True),
        ("cron(0 18 L * ? *)", True), ("cron(0 10 ? * 6#3 *)", True), ("rate(1 day)", True), ("rate(5 minutes)", True),
        ("at(2027-01-31T09:30:00)", True),
        ("cron(0 9 * * MON *)", False), ("cron(61 9 ? * MON *)", False), ("cron(0 9 ? * MON)", False),
        ("rate(1 days)", False), ("rate(0 hours)", False), ("rate(2 weeks)", False), ("at(2027-02-30T09:00:00)", False),
        ("every monday", False),
    ],
)
def test_schedule_expressions(expr: str, ok: bool) -> None:
    assert (schedule_problem(expr) is None) is ok, schedule_problem(expr)


def test_blank_prompt_is_a_validation_error(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: blank
        videos:
          - id: v
            shots: [{prompt: "   "}]
        """)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(path)
    assert [(p.path, p.message) for p in exc.value.problems] == [
        ("videos[0].shots[0].prompt", "the prompt is blank; describe what the clip shows")]
