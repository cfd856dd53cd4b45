"""The largest state the campaign state machine can make stays under Step Functions' payload quota (ASL as data).

Step Functions ends a run with `States.DataLimitExceeded` when a state's input or output passes 256 KiB, and no
Catch catches it, not even `States.ALL` (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html):
such a run ends with no report. A Map's result is the list of its iterations' outputs and a Parallel's the list of
its branches' outputs, so these tests evaluate the ASL's own input/output processing (ResultSelector, ResultPath,
OutputPath) of every state that ends an iteration or a branch, on the largest inputs the code allows, and build
the largest Map result at the inline budget of pipeline/cloud/contract.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session

from pipeline.cloud import contract as cloud

ROOT = Path(__file__).resolve().parents[1]
ASL = json.loads((ROOT / "state_machines" / "campaign.asl.json").read_text())
PAYLOAD_QUOTA = 256 * 1024  # bytes of a state's input or output (Step Functions service quotas)
ITERATION_OUTPUT_MAX = 256  # what an iteration or a branch may return: a few hundred bytes at most

# The largest error a Catch can put in the state: the Error and Cause limits of Step Functions' API model.
_SFN = botocore.session.get_session().get_service_model("stepfunctions")
ERROR_MAX = _SFN.shape_for("SensitiveError").metadata["max"]
CAUSE_MAX = _SFN.shape_for("SensitiveCause").metadata["max"]
EXECUTION_NAME_MAX = _SFN.shape_for("Name").metadata["max"]
ARN_MAX = _SFN.shape_for("LongArn").metadata["max"]
# The most items an inline Map gets: an inline stage's items hold at least one job each, and the inline stages
# together hold at most INLINE_JOBS_BUDGET jobs (choose_distributed), whatever the stack's threshold.
INLINE_ITEMS_MAX = cloud.INLINE_JOBS_BUDGET
JOB_STATUSES = ("executed", "cached", "failed", "skipped")  # pipeline.tasks.JobResult.status

# --- the largest values a state in a child workflow can hold, and the largest task results ----------------------

BIG_ID = "j" * 200
WORST_ERROR = {"Error": "E" * ERROR_MAX, "Cause": "C" * CAUSE_MAX}
# Everything any state of a child workflow sets or is given, at its largest: a state that passed its input on
# would return at least the 32 KiB error Cause.
WORST_ITERATION_STATE = {
    "job_id": BIG_ID, "batch": BIG_ID, "jobs": [BIG_ID] * 100, "run": {"campaign": "c" * 48, "run_id": "r" * 80},
    "render": {"attempt": 3, "attempts": 3, "wait_s": 600}, "wave": {"wave": 1, "jobs": [BIG_ID] * 100},
    "limits": {"jobs": 1000, "gpu_batches": 1000}, "prepared": {"render": True, "request": {"Environment": {"X": "x" * 4096}}},
    "rendered": {"job": "p" * 63, "status": "Completed"}, "error": WORST_ERROR,
}
# A job step answers {"job_id", "status"}, a clip batch's collect step {"batch", "status": {status: count}}; the
# larger of each field, with every status counted at the budget.
WORST_LAMBDA_RESULT = {"ExecutedVersion": "$LATEST", "StatusCode": 200,
                       "Payload": {"job_id": BIG_ID, "batch": BIG_ID,
                                   "status": dict.fromkeys(JOB_STATUSES, INLINE_ITEMS_MAX)}}
WORST_PUT_OBJECT_RESULT = {"ETag": '"' + "0" * 32 + '"', "ServerSideEncryption": "aws:kms", "VersionId": "v" * 32}
# A Distributed Map's result with a ResultWriter is the Map Run's address, its items' results are in S3.
WORST_MAP_RUN_RESULT = {"MapRunArn": "a" * ARN_MAX, "ResultWriterDetails": {"Bucket": "b" * 63, "Key": "k" * 1024}}


def size(doc: Any) -> int:
    return len(json.dumps(doc).encode())


# --- the ASL's input and output processing, for the paths the state machine uses ---------------------------------


def get(doc: Any, path: str) -> Any:
    if path == "$":
        return doc
    assert re.fullmatch(r"\$(\.\w+)+", path), f"a path this test does not evaluate: {path}"
    for part in path[2:].split("."):
        doc = doc[part]
    return doc


def fill(template: dict[str, Any], doc: Any) -> dict[str, Any]:
    """A payload template (ResultSelector): `x.$` fields from paths or States.ArrayLength, the rest as written."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            length = re.fullmatch(r"States\.ArrayLength\((.+)\)", value)
            out[key[:-2]] = len(get(doc, length.group(1))) if length else get(doc, value)
        else:
            out[key] = fill(value, doc) if isinstance(value, dict) else value
    return out


def output_of(state: dict[str, Any], state_input: Any, result: Any) -> Any:
    """A state's output from its input and its result, in the ASL's order: ResultSelector, ResultPath, OutputPath."""
    if state["Type"] == "Pass":
        assert "Parameters" not in state, "a Pass ending an iteration or branch returns its Result"
        result = state.get("Result", state_input)
    elif "ResultSelector" in state:
        result = fill(state["ResultSelector"], result)
    result_path = state.get("ResultPath", "$")
    if result_path is None:
        out = state_input
    elif result_path == "$":
        out = result
    else:
        out = copy.deepcopy(state_input)
        *parents, last = result_path[2:].split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = result
    return get(out, state.get("OutputPath", "$"))


def result_of(state: dict[str, Any]) -> Any:
    if state["Type"] == "Map":
        if "ItemReader" in state:
            return WORST_MAP_RUN_RESULT
        return [largest_output(state["ItemProcessor"]["States"])] * INLINE_ITEMS_MAX
    if state["Type"] == "Task":
        return WORST_LAMBDA_RESULT if state["Resource"] == "arn:aws:states:::lambda:invoke" else WORST_PUT_OBJECT_RESULT
    return None


def endings(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    return ((name, s) for name, s in states.items() if s.get("End") or s["Type"] in ("Succeed", "Fail"))


def largest_output(states: dict[str, Any]) -> Any:
    """The largest output a child workflow or branch can end with, over every state that can end it."""
    outputs = [output_of(s, WORST_ITERATION_STATE, result_of(s)) for _, s in endings(states)]
    return max(outputs, key=size)


def scopes(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name of the Map or Parallel, the states of one of its child workflows or branches), at every depth."""
    for name, state in states.items():
        if state["Type"] == "Map":
            yield name, state["ItemProcessor"]["States"]
            yield from scopes(state["ItemProcessor"]["States"])
        elif state["Type"] == "Parallel":
            for branch in state["Branches"]:
                yield name, branch["States"]
                yield from scopes(branch["States"])


# --- the tests ---------------------------------------------------------------------------------------------------


def test_every_iteration_and_branch_ends_with_a_few_bytes_on_every_path() -> None:
    """Success, a failure recorded in S3, a failure that could not be recorded, a branch that ended early: each
    returns a small summary, never the state it was given (which may hold a 32 KiB error Cause)."""
    checked = 0
    for owner, states in scopes(ASL["States"]):
        for name, state in endings(states):
            output = output_of(state, WORST_ITERATION_STATE, result_of(state))
            assert size(output) <= ITERATION_OUTPUT_MAX, (owner, name, size(output))
            assert "C" * 100 not in json.dumps(output), (owner, name)
            checked += 1
    assert checked >= 5 * 2 * 3  # each stage's job or batch: success, recorded failure, unrecorded failure; x2 modes


def test_the_largest_map_result_at_the_inline_budget_stays_under_the_quota() -> None:
    """The worst case: an inline Map with every item the inline budget allows, each iteration ending with its
    largest output (a clip batch counting every status at the budget)."""
    worst = 0
    for name, state in _inline_maps(ASL["States"]):
        result = result_of(state)
        assert len(result) == INLINE_ITEMS_MAX
        worst = max(worst, size(result))
        assert size(result) < PAYLOAD_QUOTA, (name, size(result))
    print(f"largest inline Map result at {INLINE_ITEMS_MAX} items: {worst} bytes of {PAYLOAD_QUOTA}")
    # a Parallel's result: one output per branch
    parallel = ASL["States"]["Generate images, clips and voiceover"]
    branches = [largest_output(b["States"]) for b in parallel["Branches"]]
    assert size(branches) <= 2 * ITERATION_OUTPUT_MAX


def _inline_maps(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state["Type"] == "Map":
            if "ItemReader" not in state:
                yield name, state
            yield from _inline_maps(state["ItemProcessor"]["States"])
        elif state["Type"] == "Parallel":
            for branch in state["Branches"]:
                yield from _inline_maps(branch["States"])


def test_the_largest_state_between_stages_stays_under_the_quota() -> None:
    """Between stages the state is the settings, the plan summary (the plan step refuses one over
    MAX_SUMMARY_BYTES), a wave loop's counters and, on the way to the report, the error a Catch put there."""
    assert cloud.INLINE_SUMMARY_BYTES <= cloud.MAX_SUMMARY_BYTES
    summary = {"stages": "s" * cloud.MAX_SUMMARY_BYTES}
    wave = {"index": 1, "count": 2, "wave": {"wave": 1, "count": cloud.INLINE_JOBS_BUDGET, "key": "k" * 1024}}
    state = {"source": {"bucket": "b" * 63, "key": "k" * 1024, "version_id": "v" * 1024},
             "run_id": "r" * EXECUTION_NAME_MAX, "started": "2026-01-01T00:00:00.000Z",
             "limits": {"jobs": 1000, "gpu_batches": 1000, "render_attempts": 10, "capacity_wait_s": 3600,
                        "distributed_over": 100000, "tolerated_failure_percentage": 100},
             "run": summary, "image_loop": wave, "clip_loop": wave, "error": WORST_ERROR,
             "branch_error": WORST_ERROR}
    assert size(state) < PAYLOAD_QUOTA, size(state)
    # the report step adds its summary and the execution ends with it
    report = ASL["States"]["Write report"]
    result = {"Payload": {"status": "partial", "report": "s3://" + "b" * 63 + "/" + "k" * 1024,
                          "jobs": dict.fromkeys(("total", *JOB_STATUSES), cloud.INLINE_JOBS_BUDGET * 100),
                          "errors": cloud.INLINE_JOBS_BUDGET * 100}}
    assert size(output_of(report, state, result)) < PAYLOAD_QUOTA
