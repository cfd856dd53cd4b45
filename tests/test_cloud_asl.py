"""state_machines/campaign.asl.json as data: states, transitions, Retry and Catch, what the state carries, and the
contracts it shares with pipeline/cloud/ (no AWS involved)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import cloud
from pipeline.cloud import names, ray2
from pipeline.report.write import EXPIRED, REJECTED

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
    # the Choices' Default is the inline Map: the path of a normal campaign
    assert order == ["Read settings", "Plan campaign", "Manifest valid?", "Enhance inline or distributed?",
                     "Enhance prompts", "Generate images, clips and voiceover", "Approval needed?", "Waiting clips inline or distributed?",
                     "Render clips that wait", "Videos inline or distributed?", "Assemble videos", "Write report",
                     "Campaign outcome", "Campaign done"]
    branches = [b["States"][b["StartAt"]]["Default"] for b in TOP["Generate images, clips and voiceover"]["Branches"]]
    assert branches == ["Edit images", "Render clips", "Speak voiceover"]


def test_an_invalid_manifest_ends_before_any_job() -> None:
    over_budget, invalid = TOP["Manifest valid?"]["Choices"]
    assert invalid == {"Variable": "$.run.valid", "BooleanEquals": False, "Next": "Manifest invalid"}
    assert TOP["Manifest invalid"]["Type"] == "Fail" and TOP["Manifest invalid"]["Error"] == "ManifestInvalid"
    # a run whose estimate is over its budget ends there too (the plan step answers valid=false as well)
    assert over_budget == {"Variable": "$.run.over_budget", "BooleanEquals": True, "Next": "Over budget"}
    assert TOP["Over budget"]["Type"] == "Fail" and TOP["Over budget"]["Error"] == "OverBudget"


def test_every_task_retries_with_jittered_backoff_and_catches_everything() -> None:
    tasks = [(n, s) for n, s, _ in ALL if s["Type"] == "Task"]
    # 11 Lambda tasks (one waits for approval), 2 SageMaker renders, 6 failure records; all but plan, approval and
    # report again in child workflows; per Ray2 branch (clips, waiting clips) 2 Lambdas, 2 Bedrock Runtime calls and
    # 3 records, inline and distributed
    assert len(tasks) == 19 + 16 + 2 * 2 * 7
    for name, state in tasks:
        catch = state["Catch"]
        assert catch[-1]["ErrorEquals"] == ["States.ALL"], name
        if state["Resource"].endswith(":getAsyncInvoke"):
            # a throttled or unanswered Ray2 poll is a poll that learnt nothing: caught to the poll count, so each
            # poll adds a fixed number of events to the child's history (pipeline/cloud/history.py)
            assert "BedrockRuntime.ThrottlingException" in catch[0]["ErrorEquals"] and "Retry" not in state, name
            assert catch[0]["Next"].startswith("Count "), name
            continue
        assert state["Retry"], name
        for retrier in state["Retry"]:
            assert retrier["JitterStrategy"] == "FULL" and retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 3, name
        if state["Resource"] == "arn:aws:states:::lambda:invoke":
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert LAMBDA_RETRY_ERRORS <= retried, name


def test_the_report_is_written_on_every_path() -> None:
    for name, state in TOP.items():
        for c in state.get("Catch", []):
            # an unanswered approval passes through `Approval expired`, which names its error for the report
            expected = {"Write report": "Report not written"}.get(name, "Write report")
            if c["ErrorEquals"] == ["States.Timeout"] and name == "Await approval":
                expected = "Approval expired"
                assert TOP[expected]["Next"] == "Write report"
            assert c["Next"] == expected, name
            assert c["ResultPath"] == "$.error"
    steps = {n: s for n, s in TOP.items() if s["Type"] in ("Task", "Map", "Parallel")}
    assert set(steps) - {"Write report"} == {n for n, s in TOP.items() if "Catch" in s} - {"Write report"}
    # the rest only route: settings, choices, the wave loop's counter, the end states
    assert {s["Type"] for n, s in TOP.items() if n not in steps} == {"Pass", "Choice", "Fail", "Succeed"}
    # a failed job inside a Map becomes its result in S3: the iteration never fails the Map
    for name, state, scope in ALL:
        if state["Type"] == "Task" and scope is not TOP:
            for c in state["Catch"]:
                assert c["Next"] in scope, name


def test_one_failed_branch_of_the_parallel_never_cancels_the_other() -> None:
    """A Parallel stops its other branches when one fails (and with them the GPU jobs they run), so every
    Map at the top of a branch catches its own failure and ends its branch quietly."""
    for branch in TOP["Generate images, clips and voiceover"]["Branches"]:
        states = branch["States"]
        for name, state in states.items():
            if state["Type"] != "Map":
                continue
            [catch] = state["Catch"]
            assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.branch_error"
            landing = states[catch["Next"]]
            assert landing["Type"] == "Pass" and landing.get("End") is True, name


def test_map_iterations_carry_their_job_ids_and_results_stay_out_of_the_state() -> None:
    maps = {n: s for n, s, _ in ALL if s["Type"] == "Map" and "ItemReader" not in s}
    assert set(maps) == {"Enhance prompts", "Edit images", "Edit image wave", "Render clips", "Render clips that wait",
                         "Render clip wave", "Speak voiceover", "Assemble videos", "Run Ray2 batch jobs", "Run Ray2 batch jobs (distributed)",
                         "Run waiting Ray2 batch jobs", "Run waiting Ray2 batch jobs (distributed)"}
    for name, state in maps.items():
        assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}, name
        if state.get("End"):  # it ends a Parallel branch or a wave's iteration: a summary (tests/test_asl_limits.py)
            assert state["ResultPath"] == "$" and set(state["ResultSelector"]) == {"status", "items.$"}, name
        else:  # the iterations' results are in S3: the state goes on unchanged
            assert state["ResultPath"] is None, name
        selector = json.dumps(state["ItemSelector"])
        assert "$$.Map.Item.Value" in selector, name
        assert ("MaxConcurrencyPath" in state) != ("MaxConcurrency" in state), name
    for name in ("Enhance prompts", "Edit image wave", "Speak voiceover", "Assemble videos"):
        assert maps[name]["ItemSelector"]["job_id.$"] == "$$.Map.Item.Value"
    # Polly's requests-per-second quota bounds the voice Map (pipeline/cloud/contract.py voice_pacing)
    assert maps["Speak voiceover"]["MaxConcurrencyPath"] == "$.limits.voices"
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
    assert placeholders == set(infra_workflow.FUNCTION_PLACEHOLDERS) | {"OutputBucket", "JobConcurrency", "GpuConcurrency",
                                                                        "DistributedMapThreshold", "RenderAttempts",
                                                                        "CapacityWaitSeconds", "ApprovalTimeoutSeconds", "Ray2Concurrency",
                                                                        "VoiceConcurrency"}
    limits = TOP["Read settings"]["Parameters"]["limits"]
    assert limits == {"jobs.$": "States.StringToJson('${JobConcurrency}')",
                      "gpu_batches.$": "States.StringToJson('${GpuConcurrency}')",
                      "ray2_concurrency.$": "States.StringToJson('${Ray2Concurrency}')",
                      "voices.$": "States.StringToJson('${VoiceConcurrency}')",
                      "render_attempts.$": "States.StringToJson('${RenderAttempts}')",
                      "capacity_wait_s.$": "States.StringToJson('${CapacityWaitSeconds}')",
                      "distributed_over.$": "States.StringToJson('${DistributedMapThreshold}')",
                      "approval_timeout_s.$": "States.StringToJson('${ApprovalTimeoutSeconds}')",
                      "tolerated_failure_percentage": 100}
    # the plan step gets the threshold with the limits
    assert TOP["Plan campaign"]["Parameters"]["Payload"]["limits.$"] == "$.limits"


def test_contracts_shared_with_pipeline_cloud() -> None:
    selector = TOP["Plan campaign"]["ResultSelector"]
    assert set(selector) == {f"{k}.$" for k in cloud.PLAN_SUMMARY_FIELDS}
    for name in ("Render clip batch on GPU", "Render waiting clip batch on GPU"):
        state = BY_NAME[name]
        assert state["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
        assert state["Parameters"] == {f"{k}.$": f"$.prepared.request.{k}" for k in cloud.RENDER_REQUEST_FIELDS}
    # the failure records land exactly where the tasks' results do
    ref = names.RunRef("spring", "spring-0123")
    for name, state, _ in ALL:
        if name.startswith("Record "):
            fmt = state["Parameters"]["Key.$"]
            template, args = re.fullmatch(r"States\.Format\('([^']*)', (.*)\)", fmt).groups()  # type: ignore[union-attr]
            values = {"$.run.campaign": ref.campaign, "$.run.run_id": ref.run_id, "$.job_id": "clip:teaser/02",
                      "$.batch": "w0-cogvideox-5b-01", "$.key": "0f" * 32}
            key = template.format(*(values[a.strip()] for a in args.split(",")))
            expected = (ray2.job_record_key(ref, "0f" * 32) if "Ray2 job" in name
                        else names.batch_failure_key(ref, "w0-cogvideox-5b-01") if "batch" in name
                        else names.result_key(ref, "clip:teaser/02"))
            assert key == expected, name
            assert state["Parameters"]["Bucket"] == "${OutputBucket}"


# https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html (its CreateTrainingJob example's Retry)
SAGEMAKER_API_ERROR = "SageMaker.AmazonSageMakerException"
SAGEMAKER_QUOTA_ERROR = "SageMaker.ResourceLimitExceededException"


def test_sagemaker_api_errors_are_retried_by_their_documented_names_a_few_times() -> None:
    """Step Functions reports CreateProcessingJob's API errors (throttling and validation alike) as
    SageMaker.AmazonSageMakerException and a quota as SageMaker.ResourceLimitExceededException; a name it never
    reports (SageMaker.ThrottlingException) would leave a throttled request failing the whole batch."""
    renders = [(n, s) for n, s, _ in ALL if s.get("Resource") == "arn:aws:states:::sagemaker:createProcessingJob.sync"]
    assert len(renders) == 4  # clips and waiting clips, inline and distributed
    for name, state in renders:
        by_error = {e: r for r in state["Retry"] for e in r["ErrorEquals"]}
        assert set(by_error) == {SAGEMAKER_API_ERROR, SAGEMAKER_QUOTA_ERROR}, name
        api, quota = by_error[SAGEMAKER_API_ERROR], by_error[SAGEMAKER_QUOTA_ERROR]
        # a request SageMaker rejects as invalid is retried a few times only, then fails its batch's clips
        assert 2 <= api["MaxAttempts"] <= 5 and api["MaxDelaySeconds"] <= 120, name
        # a quota frees up when running jobs end: longer waits, still a bounded number
        assert quota["IntervalSeconds"] >= 30 and quota["MaxAttempts"] <= 10, name
        for retrier in (api, quota):
            assert retrier["BackoffRate"] > 1 and retrier["JitterStrategy"] == "FULL", name
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": state["Catch"][0]["Next"]}]
        assert " lacked capacity?" in state["Catch"][0]["Next"], name  # then the batch's clips fail


RENDER_PATHS = [("Render clips", "clip batch"), ("Render clip wave", "waiting clip batch")]


@pytest.mark.parametrize(("map_name", "what"), RENDER_PATHS)
def test_a_batch_sagemaker_could_not_start_is_prepared_again_under_a_new_name(map_name: str, what: str) -> None:
    """A processing job that failed for want of an instance (FailureReason `CapacityError: ...`) or an
    internal error cannot be retried as is (SageMaker never reuses a name): a Choice on the error's cause
    waits and goes back to the prepare step, which names a new job, until the attempt limit; then, and on
    any other failure, the collect step fails the batch's clips as before."""
    state_map = BY_NAME[map_name]
    states = state_map["ItemProcessor"]["States"]
    prepare, render, collect = f"Prepare {what}", f"Render {what} on GPU", f"Collect {what}"
    choice, wait, again = (states[f"{what[0].upper()}{what[1:]} lacked capacity?"],
                           states[f"Wait for capacity for {what}"], states[f"Prepare {what} again"])
    # every iteration starts at attempt 1 with the stack's limits; the prepare step hears the attempt
    assert state_map["ItemSelector"]["render"] == {"attempt": 1, "attempts.$": "$.limits.render_attempts",
                                                   "wait_s.$": "$.limits.capacity_wait_s"}
    assert states[prepare]["Parameters"]["Payload"]["attempt.$"] == "$.render.attempt"
    [catch] = states[render]["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{what[0].upper()}{what[1:]} lacked capacity?"}
    # no cause: collect; a capacity or internal failure with attempts left: wait; anything else: collect
    no_cause, retry = choice["Choices"]
    assert no_cause == {"Not": {"Variable": "$.error.Cause", "IsPresent": True}, "Next": collect}
    assert retry["Next"] == f"Wait for capacity for {what}" and choice["Default"] == collect
    rules = json.dumps(retry["And"])
    assert '"NumericLessThanPath": "$.render.attempts"' in rules
    assert "*CapacityError:*" in rules and "*InternalServerError:*" in rules
    assert wait["SecondsPath"] == "$.render.wait_s" and wait["Next"] == f"Prepare {what} again"
    # the next attempt starts clean: no error, no old request, one more attempt counted
    assert again["Next"] == prepare and set(again["Parameters"]) == {"batch.$", "jobs.$", "run.$", "render"}
    assert again["Parameters"]["render"]["attempt.$"] == "States.MathAdd($.render.attempt, 1)"


def test_the_execution_output_is_the_report_summary() -> None:
    outcome = TOP["Campaign outcome"]
    assert outcome["OutputPath"] == "$.report"  # applied after the choice, which reads the whole state
    failed, not_approved = outcome["Choices"]
    assert failed == {"Variable": "$.report.status", "StringEquals": "failed", "Next": "Campaign failed"}
    # rejected or expired at the approval gate: the report says which; nothing failed
    assert {c["StringEquals"] for c in not_approved["Or"]} == {REJECTED, EXPIRED}
    assert TOP[not_approved["Next"]]["Type"] == "Succeed"
    assert set(TOP["Write report"]["ResultSelector"]) == {"status.$", "report.$", "jobs.$", "errors.$"}
    assert TOP["Campaign failed"]["Error"] == "CampaignFailed"


# --- Distributed Maps -------------------------------------------------------------------------------------------------

DISTRIBUTED = {n: s for n, s, _ in ALL if s["Type"] == "Map" and "ItemReader" in s}


def test_each_stage_has_a_distributed_map_that_never_fails_on_an_item() -> None:
    """Inline and distributed Maps come from one `job_map` (state_machines/build.py): only what differs is here."""
    assert set(DISTRIBUTED) == {"Enhance prompts (distributed)", "Edit image wave (distributed)",
                                "Render clips (distributed)", "Render clip wave (distributed)",
                                "Speak voiceover (distributed)", "Assemble videos (distributed)"}
    for name, state in DISTRIBUTED.items():
        assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, name
        twin = BY_NAME[name.removesuffix(" (distributed)")]
        assert state["MaxConcurrencyPath"] == twin["MaxConcurrencyPath"], name
        assert set(state["ItemSelector"]) == set(twin["ItemSelector"]), name
        assert state["ItemSelector"]["run.$"] == "$.run.ref", name
        for field in ("job_id", "batch", "jobs"):
            if f"{field}.$" in state["ItemSelector"]:
                assert state["ItemSelector"][f"{field}.$"] == f"$$.Map.Item.Value.{field}", name
        # no item ever fails the Map Run (a failed job is recorded as its result and the report lists it)
        assert state["ToleratedFailurePercentagePath"] == "$.limits.tolerated_failure_percentage", name
        assert TOP["Read settings"]["Parameters"]["limits"]["tolerated_failure_percentage"] == 100
        # a Map Run that fails as a whole (its list unreadable) ends the stage like its twin: the report is written
        if name in TOP:
            assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Write report"}]
        else:  # in a Parallel branch: it ends its branch quietly (see the test on the Parallel's branches)
            assert [c["ResultPath"] for c in state["Catch"]] == ["$.branch_error"], name


def test_distributed_maps_read_the_plan_steps_lists_and_write_results_to_s3() -> None:
    workflow = pytest.importorskip("infra.workflow", reason="aws-cdk-lib is not installed")
    ref = names.RunRef("spring", "spring-0123")
    stage_of = {"Enhance prompts (distributed)": "enhance", "Render clips (distributed)": "clips",
                "Assemble videos (distributed)": "videos", "Edit image wave (distributed)": "images",
                "Render clip wave (distributed)": "waiting_clips", "Speak voiceover (distributed)": "voices"}
    for name, state in DISTRIBUTED.items():
        reader = state["ItemReader"]
        assert reader["Resource"] == "arn:aws:states:::s3:getObject" and reader["ReaderConfig"] == {"InputType": "JSON"}
        assert reader["Parameters"]["Bucket"] == "${OutputBucket}"
        stage = stage_of[name]
        if stage in cloud.WAVE_STAGES:  # one list per wave, picked by the wave loop
            loop = reader["Parameters"]["Key.$"].split(".")[1]
            assert reader["Parameters"]["Key.$"] == f"$.{loop}.wave.key"
            assert any(f"States.ArrayGetItem($.run.stages.{stage}.waves, $.{loop}.index)" in json.dumps(s)
                       for s in BY_NAME.values()), name
        else:
            assert reader["Parameters"]["Key.$"] == f"$.run.stages.{stage}.key"
        # the IAM policy's resources cover the keys the plan step writes and the ResultWriter's prefix
        assert re.fullmatch(workflow.STAGE_FILES.replace("*", ".+"), names.stage_key(ref, stage, 1)), name
        assert state["ResultWriter"] == {"Resource": "arn:aws:states:::s3:putObject",
                                         "Parameters": {"Bucket": "${OutputBucket}",
                                                        "Prefix": workflow.MAP_RESULTS_PREFIX.rstrip("/")}}, name


def test_a_choice_picks_inline_or_distributed_for_each_stage_from_the_plan_summary() -> None:
    choices = {n: s for n, s, _ in ALL if n.endswith(" inline or distributed?")}
    routed = {}
    for name, state in choices.items():
        [rule] = state["Choices"]
        stage = rule["Variable"].removeprefix("$.run.stages.").removesuffix(".mode")
        assert rule["StringEquals"] == "distributed", name
        routed[stage] = (rule["Next"], state["Default"])
    assert set(routed) == set(cloud.STAGES)
    assert routed["enhance"] == ("Enhance prompts (distributed)", "Enhance prompts")
    assert routed["images"] == ("Start image waves", "Edit images")
    assert routed["clips"] == ("Render clips (distributed)", "Render clips")
    assert routed["waiting_clips"] == ("Start waiting clip waves", "Render clips that wait")
    assert routed["videos"] == ("Assemble videos (distributed)", "Assemble videos")
    # the distributed and inline paths meet again at the next stage
    assert TOP["Enhance prompts (distributed)"]["Next"] == TOP["Enhance prompts"]["Next"]
    assert TOP["Assemble videos (distributed)"]["Next"] == TOP["Assemble videos"]["Next"] == "Write report"
    assert TOP["More waiting clip waves?"]["Default"] == TOP["Render clips that wait"]["Next"]


def test_waves_of_a_distributed_stage_run_one_after_another() -> None:
    for prefix, loop, stage in (("image", "image_loop", "images"), ("waiting clip", "clip_loop", "waiting_clips")):
        start, test, pick, count = (BY_NAME[f"Start {prefix} waves"], BY_NAME[f"More {prefix} waves?"],
                                    BY_NAME[f"Next {prefix} wave"], BY_NAME[f"Count {prefix} wave"])
        assert start["Parameters"] == {"index": 0, "count.$": f"States.ArrayLength($.run.stages.{stage}.waves)"}
        assert test["Choices"] == [{"Variable": f"$.{loop}.index", "NumericLessThanPath": f"$.{loop}.count",
                                    "Next": f"Next {prefix} wave"}]
        assert BY_NAME[pick["Next"]]["Next"] == f"Count {prefix} wave"  # the wave's Map, then the counter
        assert count["Parameters"]["index.$"] == f"States.MathAdd($.{loop}.index, 1)" and count["Next"] == f"More {prefix} waves?"
