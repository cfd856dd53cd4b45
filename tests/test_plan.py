"""Planning: content keys change exactly when what decides an output changes; stages and dependencies."""

from __future__ import annotations

from pathlib import Path

from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, Plan, build_plan, expected_duration
from pipeline.plan.jobs import ClipLastFrame
from pipeline.tasks.prompts import estimate_tokens, fit_prompt

KEYS = KeySource(enhancer="passthrough:v1", images="local", video="preview")


def plan_of(path: Path, keys: KeySource = KEYS) -> Plan:
    return build_plan(load_manifest(path), keys, backends={"video": "preview"})


def keys_by_id(plan: Plan) -> dict[str, str]:
    return {j.id: j.key for j in plan.jobs}


def test_example_plan_stages_and_dependencies(example_manifest: Path) -> None:
    plan = plan_of(example_manifest)
    stages = {s: sorted(j.id for j in jobs) for s, jobs in plan.stages().items()}
    assert len(stages[1]) == 4  # one enhance job per distinct prompt with enhance on
    assert {"image:sofa-navy", "image:sofa-cutout", "image:sofa-brand", "clip:teaser/01", "clip:teaser/03",
            "clip:living-room/01"} == set(stages[2])
    assert set(stages[3]) == {"clip:teaser/02", "clip:living-room/02"}
    assert set(stages[4]) == {"video:teaser", "video:living-room"}
    assert plan.job("clip:teaser/02").deps == ("image:sofa-navy",)  # enhance: false, I2V from an edited image
    assert "clip:living-room/01" in plan.job("clip:living-room/02").deps  # continuity
    assert plan.job("clip:living-room/02").clip.start == ClipLastFrame("clip:living-room/01",
                                                                       color_match_to="clip:living-room/01")


def test_plan_is_deterministic_and_round_trips_through_json(example_manifest: Path) -> None:
    a, b = plan_of(example_manifest), plan_of(example_manifest)
    assert a.to_json() == b.to_json()
    again = Plan.from_dict(__import__("json").loads(a.to_json()))
    assert again.to_json() == a.to_json() and again.job("video:teaser").deps == a.job("video:teaser").deps
    assert again.jobs == a.jobs  # every typed spec (refs, steps, cards, audio) survives the round trip


def test_editing_one_prompt_changes_only_what_depends_on_it(example_manifest: Path, write_campaign) -> None:  # type: ignore[no-untyped-def]
    text = example_manifest.read_text()
    before = keys_by_id(plan_of(write_campaign(text)))
    after_plan = plan_of(write_campaign(text.replace("Cherry blossoms drifting", "Tulips swaying")))
    after = keys_by_id(after_plan)
    changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    assert changed == {"clip:teaser/03", "video:teaser"}
    assert set(before) ^ set(after)  # the old enhance job is gone, a new one appears


def test_editing_an_image_step_changes_that_chain_and_its_clip(example_manifest: Path, write_campaign) -> None:  # type: ignore[no-untyped-def]
    text = example_manifest.read_text()
    before_plan = plan_of(write_campaign(text))
    after_plan = plan_of(write_campaign(text.replace("navy blue velvet", "forest green velvet")))
    b, a = keys_by_id(before_plan), keys_by_id(after_plan)
    assert {k for k in b if b[k] != a[k]} == {"image:sofa-navy", "clip:teaser/02", "video:teaser"}
    # the chain's first step (erase-object) keeps its key, so a re-run reuses it
    assert before_plan.job("image:sofa-navy").image.steps[0].key == after_plan.job("image:sofa-navy").image.steps[0].key


def test_backend_identity_is_part_of_the_key(example_manifest: Path) -> None:
    a = keys_by_id(plan_of(example_manifest))
    b = keys_by_id(plan_of(example_manifest, KeySource(enhancer="bedrock:claude", images="local", video="preview")))
    assert a["image:sofa-navy"] == b["image:sofa-navy"]
    assert a["clip:teaser/01"] != b["clip:teaser/01"]
    assert a["clip:teaser/02"] == b["clip:teaser/02"]  # that shot is not enhanced


def test_changing_an_asset_file_changes_its_dependents(write_campaign, example_manifest: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign(example_manifest.read_text())
    before = keys_by_id(plan_of(path))
    brand = path.parent / "assets" / "brand-style.jpg"
    brand.write_bytes(brand.read_bytes() + b"\0")
    after = keys_by_id(plan_of(path))
    assert {k for k in before if before[k] != after[k]} == {"image:sofa-brand"}


def test_expected_duration_matches_design(write_campaign) -> None:  # type: ignore[no-untyped-def]
    path = write_campaign("""\
        campaign: three-shots
        videos:
          - id: v
            transition: {crossfade: 0.5}
            shots: [{prompt: a}, {prompt: b}, {prompt: c}]
        """)
    plan = plan_of(path)
    assert expected_duration(plan, plan.job("video:v")) == 17.375


def test_token_estimate_is_pessimistic_and_trimming_fits() -> None:
    assert estimate_tokens("A bee on a flower.") >= 6
    long = " ".join(["A cinematic, sunlit panorama of rolling hills and drifting clouds."] * 40)
    fitted = fit_prompt(long, 226)
    assert fitted.trimmed and fitted.tokens <= 226 < fitted.original_tokens
    assert long.startswith(fitted.text) and fitted.text.endswith(".")
    short = fit_prompt("  A  bee\n on a flower. ", 226)
    assert short.text == "A bee on a flower." and not short.trimmed


def test_identical_shots_and_chains_are_made_once(write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pipeline.cli import main

    path = write_campaign("""\
        campaign: twins
        assets: {sofa: assets/sofa.png}
        images:
          - {id: a, from: sofa, edits: [{upscale-fast: {}}]}
          - {id: b, from: sofa, edits: [{upscale-fast: {}}]}
        videos:
          - id: one
            shots: [{prompt: The same intro., frames: 9}, {prompt: First ending., frames: 9}]
          - id: two
            shots: [{prompt: The same intro., frames: 9}, {prompt: Second ending., frames: 9}]
        """)
    plan = plan_of(path)
    assert plan.job("clip:two/01").key == plan.job("clip:one/01").key
    assert "clip:one/01" in plan.job("clip:two/01").deps and plan.job("clip:two/01").stage == 3
    assert "image:a" in plan.job("image:b").deps
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--enhancer", "passthrough"]) == 0
    import json

    latest = json.loads((out / "runs" / "twins" / "latest.json").read_text())
    report = json.loads((out / "runs" / "twins" / latest["report"]).read_text())
    status = {r["job"]: r["status"] for r in report["job_results"]}
    assert status["clip:two/01"] == "cached" and status["image:b"] == "cached"
    assert status["clip:one/01"] == "executed" and status["image:a"] == "executed"


def test_text_without_spaces_is_trimmed_by_characters() -> None:
    text = "日本語の長いプロンプト" * 40
    fitted = fit_prompt(text, 226)
    assert fitted.trimmed and fitted.text and text.startswith(fitted.text) and fitted.tokens <= 226
