"""state_machines/campaign.asl.json as data: states, transitions, Retry and Catch, what the state carries, and the
contracts it shares with pipeline/cloud.py (no AWS involved)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import cloud

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # infra/ lives at the repository root, outside the package
    sys.path.insert(0, str(ROOT))
ASL = json.loads((ROOT / "state_machines" / "campaign.asl.json").read_text())
LAMBDA_RETRY_ERRORS = {"Lambda.TooManyRequestsException", "Lambda.ServiceException", "Throttled", "TransientError",
                       "ServiceUnavailable", "ThrottlingException"}
TOP = ASL["States"]


def walk(states: dict[str, Any], scope: str = "") -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, state, the states dict it lives in), through Map item processors and Parallel branches."""
    for name, state in states.items():
        yield name, state, states
        if state["Type"] == "Map":
            yield from walk(state["ItemProcessor"]["States"], name)
        if state["Type"] == "Parallel":
            for branch in state["Branches"]:
                yield from walk(branch["States"], name)


ALL = list(walk(TOP))
BY_NAME = {name: state for name, state, _ in ALL}


def test_state_names_are_unique_and_every_transition_lands_in_its_own_scope() -> None:
    assert len(BY_NAME) == len(ALL)
    for name, state, scope in ALL:
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        for target in filter(None, targets):
            assert target in scope, f"{name} -> {target} leaves its scope"
        assert state["Type"] in ("Choice", "Succeed", "Fail") or state.get("End") or state.get("Next"), name


def test_stages_run_in_the_plans_order() -> None:
    order, name = [], ASL["StartAt"]
    while name:
        order.append(name)
        state = TOP[name]
        name = state.get("Next") or state.get("Default")
    assert order == ["Read settings", "Plan campaign", "Manifest valid?", "Enhance prompts", "Generate images and clips",
                     "Render clips that wait", "Assemble videos", "Write report", "Campaign outcome", "Campaign done"]
    branches = [b["StartAt"] for b in TOP["Generate images and clips"]["Branches"]]
    assert branches == ["Edit images", "Render clips"]


def test_an_invalid_manifest_ends_before_any_job() -> None:
    [choice] = TOP["Manifest valid?"]["Choices"]
    assert choice == {"Variable": "$.run.valid", "BooleanEquals": False, "Next": "Manifest invalid"}
    assert TOP["Manifest invalid"]["Type"] == "Fail" and TOP["Manifest invalid"]["Error"] == "ManifestInvalid"


def test_every_task_retries_with_jittered_backoff_and_catches_everything() -> None:
    tasks = [(n, s) for n, s, _ in ALL if s["Type"] == "Task"]
    assert len(tasks) == 16  # 9 Lambda tasks, 2 SageMaker renders, 5 failure records
    for name, state in tasks:
        catch = state["Catch"]
        assert catch[-1]["ErrorEquals"] == ["States.ALL"], name
        assert state["Retry"], name
        for retrier in state["Retry"]:
            assert retrier["JitterStrategy"] == "FULL" and retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 3, name
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert LAMBDA_RETRY_ERRORS <= retried, name


def test_the_report_is_written_on_every_path() -> None:
    for name, state in TOP.items():
        for c in state.get("Catch", []):
            assert c["Next"] == ("Report not written" if name == "Write report" else "Write report"), name
            assert c["ResultPath"] == "$.error"
    assert {s["Type"] for n, s in TOP.items() if n not in ("Write report", "Campaign outcome", "Read settings",
                                                             "Manifest valid?", "Manifest invalid", "Campaign failed",
                                                             "Report not written", "Campaign done")} == {"Task", "Map",
                                                                                                         "Parallel"}
    # a failed job inside a Map becomes its result in S3: the iteration never fails the Map
    for name, state, scope in ALL:
        if state["Type"] == "Task" and scope is not TOP:
            for c in state["Catch"]:
                assert c["Next"] in scope, name


def test_map_iterations_carry_their_job_ids_and_results_stay_out_of_the_state() -> None:
    maps = {n: s for n, s, _ in ALL if s["Type"] == "Map"}
    assert set(maps) == {"Enhance prompts", "Edit images", "Edit image wave", "Render clips", "Render clips that wait",
                         "Render clip wave", "Assemble videos"}
    for name, state in maps.items():
        assert state["ResultPath"] is None, name
        selector = json.dumps(state["ItemSelector"])
        assert "$$.Map.Item.Value" in selector, name
        assert ("MaxConcurrencyPath" in state) != ("MaxConcurrency" in state), name
    for name in ("Enhance prompts", "Edit image wave", "Assemble videos"):
        assert maps[name]["ItemSelector"]["job_id.$"] == "$$.Map.Item.Value"
    for name in ("Render clips", "Render clip wave"):
        assert maps[name]["ItemSelector"]["batch.$"] == "$$.Map.Item.Value.batch"
        assert maps[name]["ItemSelector"]["jobs.$"] == "$$.Map.Item.Value.jobs"
        assert maps[name]["MaxConcurrencyPath"] == "$.limits.gpu_batches"
    # waves run one after another: a wave waits for the one before it
    assert maps["Edit images"]["MaxConcurrency"] == 1 and maps["Render clips that wait"]["MaxConcurrency"] == 1


def test_placeholders_only_inside_parameters_and_the_stack_fills_each() -> None:
    def outside_parameters(node: Any, key: str = "") -> Iterator[str]:
        if key == "Parameters":
            return
        if isinstance(node, dict):
            for k, v in node.items():
                yield from outside_parameters(v, k)
        elif isinstance(node, list):
            for v in node:
                yield from outside_parameters(v, key)
        elif isinstance(node, str) and "${" in node:
            yield node

    assert list(outside_parameters(ASL)) == []
    placeholders = set(re.findall(r"\$\{(\w+)\}", json.dumps(ASL)))
    infra_workflow = pytest.importorskip("infra.workflow", reason="aws-cdk-lib is not installed")
    assert placeholders == set(infra_workflow.FUNCTION_PLACEHOLDERS) | {"OutputBucket", "JobConcurrency", "GpuConcurrency"}
    limits = TOP["Read settings"]["Parameters"]["limits"]
    assert limits == {"jobs.$": "States.StringToJson('${JobConcurrency}')",
                      "gpu_batches.$": "States.StringToJson('${GpuConcurrency}')"}


def test_contracts_shared_with_pipeline_cloud() -> None:
    selector = TOP["Plan campaign"]["ResultSelector"]
    assert set(selector) == {f"{k}.$" for k in cloud.PLAN_SUMMARY_FIELDS}
    for name in ("Render clip batch on GPU", "Render waiting clip batch on GPU"):
        state = BY_NAME[name]
        assert state["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
        assert state["Parameters"] == {f"{k}.$": f"$.prepared.request.{k}" for k in cloud.RENDER_REQUEST_FIELDS}
    # the failure records land exactly where the tasks' results do
    ref = cloud.RunRef("spring", "spring-0123")
    for name, state, _ in ALL:
        if name.startswith("Record "):
            fmt = state["Parameters"]["Key.$"]
            template, args = re.fullmatch(r"States\.Format\('([^']*)', (.*)\)", fmt).groups()  # type: ignore[union-attr]
            values = {"$.run.campaign": ref.campaign, "$.run.run_id": ref.run_id, "$.job_id": "clip:teaser/02",
                      "$.batch": "w0-cogvideox-5b-01"}
            key = template.format(*(values[a.strip()] for a in args.split(",")))
            expected = (cloud.batch_failure_key(ref, "w0-cogvideox-5b-01") if "batch" in name
                        else cloud.result_key(ref, "clip:teaser/02"))
            assert key == expected, name
            assert state["Parameters"]["Bucket"] == "${OutputBucket}"


def test_the_execution_output_is_the_report_summary() -> None:
    outcome = TOP["Campaign outcome"]
    assert outcome["OutputPath"] == "$.report"  # applied after the choice, which reads the whole state
    assert outcome["Choices"] == [{"Variable": "$.report.status", "StringEquals": "failed", "Next": "Campaign failed"}]
    assert set(TOP["Write report"]["ResultSelector"]) == {"status.$", "report.$", "jobs.$", "errors.$"}
    assert TOP["Campaign failed"]["Error"] == "CampaignFailed"
