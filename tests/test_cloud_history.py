"""The execution-history quota (25,000 events, hard): the worst case of every execution (the parent and each
Distributed Map child), computed from the committed ASL, stays within the 20,000 planned for the largest allowed
campaign in three shapes (every clip Luma Ray2 reaching the poll limit, every clip CogVideoX, every job an image
edit) and at the most waves the state may carry; no Ray2 poll sits in the parent's history."""

from __future__ import annotations

import copy
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main as campaign_cli
from pipeline.cloud.contract import (
    DEFAULT_RAY2_MAX_POLLS,
    HISTORY_BUDGET,
    MAX_SUMMARY_BYTES,
    MAX_WAVES,
)
from pipeline.cloud.history import (
    PARENT,
    Load,
    RunShape,
    UnboundedLoop,
    load_asl,
    ray2_batch_limit,
    run_events,
    state_events,
    worst_case_events,
)
from pipeline.cloud.names import RunRef, stage_key
from pipeline.cloud.quotas import ray2_batch_size, ray2_child_events
from pipeline.cloud.sizing import CloudSizing, size_for_cloud
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.variables import MAX_EXPANDED_JOBS
from pipeline.plan.build import KeySource, Plan, build_plan

ROOT = Path(__file__).resolve().parents[1]
ASL = load_asl()
A, B = 100, 50  # 5,000 combinations: 5,000 videos of one shot are 10,000 jobs, 2 x 5,000 images too


def ray2_only(m: int) -> RunShape:
    return RunShape(distributed=frozenset({"clips"}), enhance=0, image_waves=(), clip_batches=1, clip_waves=(),
                    videos=0, ray2_batch=m, max_polls=DEFAULT_RAY2_MAX_POLLS, render_attempts=1)


# --- the counter itself -------------------------------------------------------------------------------------------


def test_a_small_machine_is_counted_state_by_state_with_retries_and_loop_bounds() -> None:
    machine = {"StartAt": "Go", "States": {
        "Go": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Wait",
               "Retry": [{"ErrorEquals": ["X"], "MaxAttempts": 2}, {"ErrorEquals": ["Y"]}]},  # 2 + 3 (default)
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Poll"},
        "Poll": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:x:y", "Next": "Done?"},
        "Done?": {"Type": "Choice", "Choices": [{"Variable": "$.d", "BooleanEquals": True, "Next": "End"}],
                  "Default": "Wait"},
        "End": {"Type": "Succeed"},
    }}
    assert state_events(machine["States"]["Go"]) == 5 + 3 * 5
    # 2 (execution) + 20 (Go) + 4 loops x (Wait 2 + Poll 5 + Choice 2) + 2 (Succeed)
    assert worst_case_events(machine, Load(loops={"Wait": 4})) == {PARENT: 2 + 20 + 4 * 9 + 2}
    with pytest.raises(UnboundedLoop, match="'Wait'"):
        worst_case_events(machine, Load())


def test_every_loop_of_the_asl_has_a_bound_and_a_new_one_is_refused() -> None:
    shape = ray2_only(1)
    assert run_events(shape, ASL)[PARENT] > 0  # every loop of the committed ASL is named in RunShape.load
    broken = copy.deepcopy(ASL)
    broken["States"]["Campaign outcome"]["Default"] = "Write report"  # a loop nobody bounds
    with pytest.raises(UnboundedLoop, match="Write report"):
        run_events(shape, broken)


@pytest.mark.parametrize(("clips", "polls"), [(1, 1), (3, 7), (8, DEFAULT_RAY2_MAX_POLLS), (12, 200)])
def test_the_lambdas_ray2_figures_are_the_asls(clips: int, polls: int) -> None:
    """The plan step sizes Ray2 batches from contract constants (the Lambdas do not ship the ASL)."""
    shape = RunShape(distributed=frozenset({"clips"}), enhance=0, image_waves=(), clip_batches=1, clip_waves=(),
                     videos=0, ray2_batch=clips, max_polls=polls, render_attempts=1)
    assert run_events(shape, ASL)["Render clips (distributed)"] == ray2_child_events(clips, polls)
    size = ray2_batch_size(1000, polls)
    assert ray2_child_events(size, polls) <= HISTORY_BUDGET < ray2_child_events(size + 1, polls)
    assert ray2_batch_limit(polls, asl=ASL) == size


def test_no_poll_of_a_ray2_job_is_in_the_parents_history() -> None:
    few, many = (run_events(RunShape(distributed=frozenset({"clips", "waiting_clips"}), enhance=0, image_waves=(),
                                     clip_batches=4, clip_waves=(1, 1), videos=0, ray2_batch=8, max_polls=polls,
                                     render_attempts=3), ASL) for polls in (1, 10_000 // 13))
    assert few[PARENT] == many[PARENT]
    assert many["Render clips (distributed)"] > HISTORY_BUDGET  # the poll count lands in the child only


# --- the largest allowed campaign, three shapes -------------------------------------------------------------------


def manifest(kind: str) -> str:
    values = {"a": [f"a{i}" for i in range(A)], "b": [f"b{i}" for i in range(B)]}
    head = f"campaign: largest-{kind}\nvariables: {json.dumps(values)}\n"
    if kind == "images":
        return head + textwrap.dedent("""\
            assets: {sofa: assets/sofa.png}
            images:
              - {id: "up-{a}-{b}", from: sofa, edits: [{upscale-fast: {}}]}
              - {id: "cut-{a}-{b}", from: sofa, edits: [{remove-background: {}}]}
            """)
    shot = ('{prompt: "A sofa {a} {b}.", model: luma-ray2, resolution: 540p}' if kind == "ray2"
            else '{prompt: "A sofa {a} {b}.", model: cogvideox-5b}')
    return head + f'videos:\n  - id: "v-{{a}}-{{b}}"\n    shots: [{shot}]\n'


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Plan]]:
    folder = tmp_path_factory.mktemp("largest")
    shutil.copytree(ROOT / "manifests" / "assets", folder / "assets")
    keys = KeySource(enhancer="passthrough:v1", images="local", video="preview")
    out = {}
    for kind in ("ray2", "cogvideox", "images"):
        path = folder / f"{kind}.yaml"
        path.write_text(manifest(kind), encoding="utf-8")
        plan = build_plan(load_manifest(path), keys, backends={"enhancer": "passthrough", "images": "local",
                                                                "video": "preview"})
        assert sum(1 for j in plan.jobs if j.kind != "enhance") == MAX_EXPANDED_JOBS  # the largest allowed
        out[kind] = (path, plan)
    return out


@pytest.mark.parametrize("kind", ["ray2", "cogvideox", "images"])
def test_the_largest_campaign_keeps_every_execution_within_the_budget(kind: str, plans: dict[str, tuple[Path, Plan]]) -> None:
    sizing: CloudSizing = size_for_cloud(plans[kind][1], asl=ASL)
    assert len(sizing.events) >= 2  # the parent and at least one kind of child
    assert all(0 < n <= HISTORY_BUDGET for n in sizing.events.values()), sizing.events
    if kind == "ray2":  # every Ray2 clip polled to the limit, in children only
        assert {"clips", "waiting_clips"} <= sizing.distributed
        child = ray2_child_events(sizing.ray2_batch, DEFAULT_RAY2_MAX_POLLS)
        assert sizing.events["Render clip wave (distributed)"] == child
        assert sizing.events[PARENT] < child


def test_the_most_waves_the_plan_allows_keep_the_parent_within_the_budget() -> None:
    # the plan step refuses more than MAX_WAVES waves, or waves whose entries pass MAX_SUMMARY_BYTES of state
    ref = RunRef("c", "r")
    entry = len(json.dumps({"wave": 1, "count": 1, "key": stage_key(ref, "waiting_clips", 1)})) + 2
    waves = min(MAX_WAVES, MAX_SUMMARY_BYTES // entry)
    assert waves == MAX_WAVES  # the history, not the state, is the binding limit
    half = waves // 2
    shape = RunShape(distributed=frozenset({"enhance", "images", "clips", "waiting_clips", "videos"}), enhance=1,
                     image_waves=(1,) * half, clip_batches=1, clip_waves=(1,) * (waves - half), videos=1,
                     ray2_batch=1, max_polls=DEFAULT_RAY2_MAX_POLLS, render_attempts=3)
    assert run_events(shape, ASL)[PARENT] <= HISTORY_BUDGET


def test_campaign_plan_json_shows_the_history_figures_and_the_wall_time(
        plans: dict[str, tuple[Path, Plan]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = plans["ray2"][0].parent / "forty.yaml"
    path.write_text(textwrap.dedent("""\
        campaign: forty
        variables: {n: [n01, n02, n03, n04, n05, n06, n07, n08, n09, n10, n11, n12, n13, n14, n15, n16, n17, n18, n19,
                        n20, n21, n22, n23, n24, n25, n26, n27, n28, n29, n30, n31, n32, n33, n34, n35, n36, n37, n38,
                        n39, n40]}
        videos:
          - id: "v-{n}"
            shots: [{prompt: "A sofa, take {n}.", model: luma-ray2, resolution: 540p}]
        """), encoding="utf-8")
    common = [str(path), "--out", str(tmp_path / "out"), "--enhancer", "passthrough", "--video", "bedrock",
              "--bedrock-output", "s3://plan-only/clips"]
    assert campaign_cli(["plan", *common, "--json"]) == 0
    cloud: dict[str, Any] = json.loads(capsys.readouterr().out)["cloud"]
    events = cloud["history"]["worst_case_events"]
    assert events[PARENT] < events["Render clip wave (distributed)"] <= cloud["history"]["budget"]
    ray2 = next(t for t in cloud["wall_time"] if t["stage"] == "ray2")
    assert ray2["seconds"] == 40 * 72
    assert ray2["text"] == "40 Ray2 clip(s) at 1 at a time, about 72 s each: about 48 minutes"
    assert campaign_cli(["plan", *common]) == 0
    assert "ray2      40 Ray2 clip(s) at 1 at a time, about 72 s each: about 48 minutes" in capsys.readouterr().out
