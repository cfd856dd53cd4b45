"""Builds the campaign state machine's ASL (`campaign.asl.json`, its committed output) from a few functions.

`python -m state_machines.build` prints the ASL; `--write` rewrites `campaign.asl.json`; `--check` exits 1
when the file differs from the build. The file stays committed because cfn-lint, Workflow Studio and the CDK
stack read it (infra/workflow.py fills its `${...}` placeholders). Each stage's Map is written once, by
`job_map`, and generated twice: inline (items in the state) and "(distributed)" (items read from S3, each a
child execution), with the same child workflow. Stdlib only, plus the names below that the code owns.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# What the pipeline's code decides and the ASL must agree with, imported in one place (pipeline/cloud/contract.py).
from pipeline.cloud import (
    APPROVAL_ENDED_STATUSES,
    APPROVAL_EXPIRED_ERROR,
    PLAN_SUMMARY_FIELDS,
    RENDER_REQUEST_FIELDS,
    STAGES,
    WAVE_STAGES,
)
from pipeline.cloud.contract import RAY2_JOBS_FOLDER, RAY2_START_FIELDS
from pipeline.errors import PollLimitExceeded, Throttled, TransientError
from pipeline.plan.schedule import BEDROCK

ASL_PATH = Path(__file__).with_name("campaign.asl.json")
DISTRIBUTED = " (distributed)"  # the suffix of every state of a Distributed Map's child workflow

State = dict[str, Any]
States = dict[str, State]
Mode = Literal["inline", "distributed"]

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
# The callback pattern: Step Functions passes `$$.Task.Token` in the payload and waits until SendTaskSuccess or
# SendTaskFailure answers it, or the state's timeout passes (States.Timeout) ("Wait for a Callback with Task
# Token", https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token).
LAMBDA_INVOKE_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
S3_PUT_OBJECT = "arn:aws:states:::aws-sdk:s3:putObject"
PROCESSING_JOB_SYNC = "arn:aws:states:::sagemaker:createProcessingJob.sync"
# Bedrock's async API through the AWS SDK integration: service `bedrockruntime`, errors prefixed `BedrockRuntime.`
# ("Amazon Bedrock Runtime ... Task state resource: arn:aws:states:::aws-sdk:bedrockruntime:[apiAction], Exception
# prefix: BedrockRuntime", https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html).
# SDK integrations support Request Response and .waitForTaskToken but not Run a Job (.sync) ("Supported AWS SDK
# integrations ... Run a Job (.sync): Not supported", https://docs.aws.amazon.com/step-functions/latest/dg/
# connect-supported-services.html), and StartAsyncInvoke is not an optimized Bedrock API, so the state machine
# polls GetAsyncInvoke in a Wait loop. Parameters go in PascalCase (the same page, "API naming conventions"); that the
# answers come back PascalCased too ($.InvocationArn, $.Status) is what moto's interpreter and public examples do,
# not stated on that page [unverified].
BEDROCK_START_ASYNC = "arn:aws:states:::aws-sdk:bedrockruntime:startAsyncInvoke"
BEDROCK_GET_ASYNC = "arn:aws:states:::aws-sdk:bedrockruntime:getAsyncInvoke"


# --- retry policies ---------------------------------------------------------------------------------------------


def retrier(errors: list[str], *, interval_s: int, attempts: int, max_delay_s: int | None = None) -> State:
    """One Retry entry: exponential backoff (x2) with full jitter, so parallel iterations do not retry in step."""
    entry: State = {"ErrorEquals": errors, "IntervalSeconds": interval_s, "MaxAttempts": attempts, "BackoffRate": 2.0}
    if max_delay_s is not None:
        entry["MaxDelaySeconds"] = max_delay_s
    entry["JitterStrategy"] = "FULL"
    return entry


def error_names(base: type[BaseException]) -> list[str]:
    """`base` and every subclass, by class name (what a Lambda reports as `errorType` and Retry matches on).
    Every error type lives in pipeline/errors.py, so importing it finds them all."""
    names = [base.__name__]
    for sub in base.__subclasses__():
        names += [n for n in error_names(sub) if n not in names]
    return names


# Lambda's own transient failures, which Step Functions asks production code to handle ("Handling errors in Step
# Functions workflows": https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
LAMBDA_SERVICE_RETRY = retrier(["Lambda.TooManyRequestsException", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                                "Lambda.SdkClientException", "Lambda.ClientExecutionTimeoutException"],
                               interval_s=2, attempts=6, max_delay_s=60)
# A task told to slow down: the pipeline's Throttled (and its kinds), or an AWS throttling error it let through.
THROTTLED_RETRY = retrier(error_names(Throttled) + ["ThrottlingException", "TooManyRequestsException", "ServiceUnavailable",
                                                    "ServiceUnavailableException"],
                          interval_s=2, attempts=5, max_delay_s=120)
# Any other retryable failure the pipeline raises (TransientError and its kinds that are not throttling).
TRANSIENT_RETRY = retrier([n for n in error_names(TransientError) if n not in error_names(Throttled)],
                          interval_s=5, attempts=3, max_delay_s=120)
LAMBDA_RETRY = [LAMBDA_SERVICE_RETRY, THROTTLED_RETRY, TRANSIENT_RETRY]
# Writing a failure record to S3: anything, a few times; past that the report shows the job without a result.
RECORD_RETRY = [retrier(["States.ALL"], interval_s=1, attempts=3)]
# CreateProcessingJob through the optimized SageMaker integration. Step Functions reports the API's errors as
# `SageMaker.AmazonSageMakerException` (any API error: throttling, an internal error, but also a validation
# error, so only a few attempts) and a quota as `SageMaker.ResourceLimitExceededException` (wait for running
# jobs to end). These are the names the integration's page retries in its CreateTrainingJob example:
# https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html ("SageMaker AI Training Job Example").
# A job that started and failed is not an API error: it is `States.TaskFailed`, caught below.
SAGEMAKER_QUOTA_RETRY = retrier(["SageMaker.ResourceLimitExceededException"], interval_s=60, attempts=6, max_delay_s=1800)
SAGEMAKER_API_RETRY = retrier(["SageMaker.AmazonSageMakerException"], interval_s=5, attempts=4, max_delay_s=60)
RENDER_RETRY = [SAGEMAKER_QUOTA_RETRY, SAGEMAKER_API_RETRY]
# StartAsyncInvoke / GetAsyncInvoke: throttling and the service's transient errors, with backoff and jitter (the
# errors botocore's bedrock-runtime model lists for both; Step Functions adds the `BedrockRuntime.` prefix and the
# Exception suffix). ServiceQuotaExceededException on a start means too many async jobs are running: wait longer.
BEDROCK_RETRY = [
    retrier(["BedrockRuntime.ThrottlingException", "BedrockRuntime.ServiceUnavailableException",
             "BedrockRuntime.InternalServerException"], interval_s=5, attempts=6, max_delay_s=120),
    retrier(["BedrockRuntime.ServiceQuotaExceededException"], interval_s=60, attempts=6, max_delay_s=900),
]


def placeholder(name: str) -> str:
    """`${Name}`: filled by the stack (infra/workflow.py definition_substitutions) and by the moto tests."""
    return "${" + name + "}"


OUTPUT_BUCKET = placeholder("OutputBucket")


def catch_all(next_state: str, *, result_path: str = "$.error") -> list[State]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


def lambda_task(function: str, payload: State | str, *, selector: State, result_path: str | None,
                comment: str | None = None) -> State:
    """A Lambda task (tasks/): `payload` is the event's fields, or a path whose value is the whole event."""
    state: State = {"Type": "Task", "Resource": LAMBDA_INVOKE}
    if comment:
        state["Comment"] = comment
    event: State = {"Payload.$": payload} if isinstance(payload, str) else {"Payload": payload}
    state["Parameters"] = {"FunctionName": placeholder(function), **event}
    state |= {"ResultSelector": selector, "ResultPath": result_path, "Retry": LAMBDA_RETRY}
    return state


# --- the child workflows: one job, one clip batch --------------------------------------------------------------

Processor = Callable[[str], tuple[str, States]]  # name suffix -> (StartAt, States) of a Map's child workflow


def record_failure(noun: str, *, key: str, key_arg: str, suffix: str) -> tuple[str, States]:
    """A task that failed past its retries writes its error as its result (the whole state, with the Catch's
    `error`), where the report reads results; if even that fails, the report shows no result."""
    record, lost = f"Record {noun} failure{suffix}", f"{noun[0].upper()}{noun[1:]} failure not recorded{suffix}"
    return record, {
        record: then({
            "Type": "Task", "Resource": S3_PUT_OBJECT,
            "Comment": "The task failed past its retries: its error becomes this job's result in S3, the campaign goes on",
            "Parameters": {"Bucket": OUTPUT_BUCKET,
                           "Key.$": f"States.Format('runs/{{}}/{{}}/{key}', $.run.campaign, $.run.run_id, {key_arg})",
                           "Body.$": "States.JsonToString($)", "ContentType": "application/json"},
            "ResultSelector": {"status": "failed", "recorded": True}, "ResultPath": "$", "Retry": RECORD_RETRY,
        }, None, catch_all(lost)),
        lost: then({"Type": "Pass", "Comment": f"The report shows the {noun} as failed with no recorded result",
                    "Result": {"status": "failed", "recorded": False}}, None),
    }


def job_processor(*, task: str, function: str, noun: str) -> Processor:
    """One enhance, image or video job: its Lambda, then on failure its failure record."""

    def states(suffix: str) -> tuple[str, States]:
        name = task + suffix
        record, failure = record_failure(noun, key="results/{}.json", key_arg="$.job_id", suffix=suffix)
        run = lambda_task(function, {"job_id.$": "$.job_id", "run.$": "$.run"},
                          selector={"status.$": "$.Payload.status"}, result_path="$")
        return name, {name: then(run, None, catch_all(record)), **failure}

    return states


def clip_batch_processor(prefix: str) -> Processor:
    """One clip batch: prepare the request, render it in one SageMaker processing job (a job SageMaker could
    not start is prepared again under a new name after a wait), collect every clip's result."""
    what = f"{prefix}clip batch"

    def states(suffix: str) -> tuple[str, States]:
        prepare, anything = f"Prepare {what}{suffix}", f"Anything to render in {prefix}batch?{suffix}"
        render, lacked = f"Render {what} on GPU{suffix}", f"{what[0].upper()}{what[1:]} lacked capacity?{suffix}"
        wait, again, collect = f"Wait for capacity for {what}{suffix}", f"Prepare {what} again{suffix}", f"Collect {what}{suffix}"
        record, failure = record_failure(what, key="results/batches/{}.json", key_arg="$.batch", suffix=suffix)
        return prepare, {
            prepare: lambda_task(
                "PrepareBatchFunctionArn",
                {"batch.$": "$.batch", "jobs.$": "$.jobs", "run.$": "$.run", "attempt.$": "$.render.attempt"},
                selector={"render.$": "$.Payload.render", "request.$": "$.Payload.request"}, result_path="$.prepared",
                comment="Writes the jobs file and start images to S3 and renders the processing job request "
                        "(pipeline/backends/sagemaker_jobs.py)",
            ) | {"Catch": catch_all(collect), "Next": anything},
            anything: {
                "Type": "Choice", "Comment": "Nothing to render when every clip is cached or waits on a failed job",
                "Choices": [{"Variable": "$.prepared.render", "BooleanEquals": True, "Next": render}],
                "Default": collect,
            },
            render: {
                "Type": "Task", "Resource": PROCESSING_JOB_SYNC,
                "Comment": "One processing job renders the whole batch (one model load); the request comes whole "
                           "from the prepare step",
                # exactly the fields prepare_clip_batch renders (it refuses a request with any other)
                "Parameters": {f"{field}.$": f"$.prepared.request.{field}" for field in RENDER_REQUEST_FIELDS},
                "ResultSelector": {"job.$": "$.ProcessingJobName", "status.$": "$.ProcessingJobStatus"},
                "ResultPath": "$.rendered", "Retry": RENDER_RETRY, "Catch": catch_all(lacked), "Next": collect,
            },
            lacked: {
                "Type": "Choice",
                "Comment": "A processing job SageMaker could not start (no GPU capacity, an internal error) is prepared "
                           "again under a new name after a wait, up to the attempt limit; any other failure fails the "
                           "batch's clips",
                "Choices": [
                    {"Not": {"Variable": "$.error.Cause", "IsPresent": True}, "Next": collect},
                    {"And": [{"Variable": "$.error.Cause", "IsString": True},
                             {"Variable": "$.render.attempt", "NumericLessThanPath": "$.render.attempts"},
                             {"Or": [{"Variable": "$.error.Cause", "StringMatches": "*CapacityError:*"},
                                     {"Variable": "$.error.Cause", "StringMatches": "*InternalServerError:*"}]}],
                     "Next": wait},
                ],
                "Default": collect,
            },
            wait: {"Type": "Wait", "Comment": "Give SageMaker time to find an instance", "SecondsPath": "$.render.wait_s",
                   "Next": again},
            again: {
                "Type": "Pass",
                "Comment": "The batch's ids and the next attempt's number; the failed attempt's error and request are dropped",
                "Parameters": {"batch.$": "$.batch", "jobs.$": "$.jobs", "run.$": "$.run",
                               "render": {"attempt.$": "States.MathAdd($.render.attempt, 1)",
                                          "attempts.$": "$.render.attempts", "wait_s.$": "$.render.wait_s"}},
                "Next": prepare,
            },
            collect: then(lambda_task(
                "CollectBatchFunctionArn", "$", selector={"status.$": "$.Payload.status"}, result_path="$",
                comment="Copies each clip into the cache with its provenance and records every clip's result (also "
                        "after a failed render)",
            ), None, catch_all(record)),
            **failure,
        }

    return states


def ray2_batch_processor(prefix: str) -> Processor:
    """One batch of Luma Ray2 clips: prepare one StartAsyncInvoke request per clip, then per clip (a Map) start
    the job and poll GetAsyncInvoke in a Wait loop, at most `max_polls` times, and write how the job ended to S3
    (runs/<campaign>/<run-id>/ray2-jobs/<clip key>.json: the last GetAsyncInvoke answer, or the error that ended
    it early: a start or poll Bedrock refused past its retries, or the poll limit's PollLimitExceeded); the
    collect step reads those records and the clips' MP4s. No iteration ever fails (that would stop its
    neighbours' polls) and no answer or error travels back through the state (its 256 KiB)."""
    what = f"{prefix}Ray2 batch"

    def states(suffix: str) -> tuple[str, States]:
        prepare, anything = f"Prepare {what}{suffix}", f"Anything to start in {what}?{suffix}"
        run_all, collect = f"Run {what} jobs{suffix}", f"Collect {what}{suffix}"
        job = f"{prefix}Ray2 job"
        Job = job[0].upper() + job[1:]  # noqa: N806 - the state names' capitalised form
        record_end, record_error = f"Record {job} end{suffix}", f"Record {job} error{suffix}"
        lost = f"{Job} error not recorded{suffix}"
        start, wait, get = f"Start {job}{suffix}", f"Wait for {job}{suffix}", f"Get {job} status{suffix}"
        done, count, more = f"{Job} done?{suffix}", f"Count {job} poll{suffix}", f"{Job} polls left?{suffix}"
        timed_out = f"{Job} timed out{suffix}"
        record, failure = record_failure(what, key="results/batches/{}.json", key_arg="$.batch", suffix=suffix)

        def put_record(body: str, status: str) -> State:
            return {
                "Type": "Task", "Resource": S3_PUT_OBJECT,
                "Parameters": {"Bucket": OUTPUT_BUCKET,
                               "Key.$": f"States.Format('runs/{{}}/{{}}/{RAY2_JOBS_FOLDER}/{{}}.json', $.run.campaign, "
                                        "$.run.run_id, $.key)",
                               "Body.$": f"States.JsonToString({body})", "ContentType": "application/json"},
                "ResultSelector": {"status": status}, "ResultPath": "$", "Retry": RECORD_RETRY,
            }

        record_error_states: States = {
            record_error: put_record("$.error", "failed") | {"Catch": catch_all(lost), "End": True},
            lost: {"Type": "Pass", "Comment": "The collect step reports the clip's job as ended without a record",
                   "Result": {"status": "failed", "recorded": False}, "End": True},
        }
        clip: States = {
            start: {
                "Type": "Task", "Resource": BEDROCK_START_ASYNC,
                "Comment": "StartAsyncInvoke with the clip's idempotency token (its content key and this run, the "
                           "attempt): a retried start is the same job, billed once; a later run is a new request",
                # exactly the fields prepare_ray2_batch renders (it refuses a request with any other)
                "Parameters": {f"{field}.$": f"$.request.{field}" for field in RAY2_START_FIELDS},
                "ResultSelector": {"arn.$": "$.InvocationArn"}, "ResultPath": "$.job", "Retry": BEDROCK_RETRY,
                "Catch": catch_all(record_error), "Next": wait,
            },
            wait: {"Type": "Wait", "Comment": "No Lambda sleeps: the state machine waits between polls",
                   "SecondsPath": "$.poll.wait_s", "Next": get},
            # A throttled or unanswered poll is a poll that learnt nothing: it counts against the poll limit and
            # the next one comes after the Wait (the Wait is its backoff). No Retry here, so each poll adds a
            # fixed 13 events to the child's history (pipeline/cloud/history.py), whatever Bedrock answers.
            get: {
                "Type": "Task", "Resource": BEDROCK_GET_ASYNC, "Parameters": {"InvocationArn.$": "$.job.arn"},
                "ResultPath": "$.got",
                "Catch": [{"ErrorEquals": BEDROCK_RETRY[0]["ErrorEquals"], "ResultPath": "$.poll_error", "Next": count},
                          *catch_all(record_error)],
                "Next": done,
            },
            done: {
                "Type": "Choice",
                "Choices": [{"Or": [{"Variable": "$.got.Status", "StringEquals": "Completed"},
                                    {"Variable": "$.got.Status", "StringEquals": "Failed"}], "Next": record_end}],
                "Default": count,
            },
            count: {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.polls.n, 1)"}, "ResultPath": "$.polls",
                    "Next": more},
            more: {
                "Type": "Choice", "Comment": "A bounded number of polls: a job that never ends fails its clip, not the run",
                "Choices": [{"Variable": "$.polls.n", "NumericLessThanPath": "$.poll.max_polls", "Next": wait}],
                "Default": timed_out,
            },
            # The poll limit is a named error, recorded exactly as a Catch records a failed start or poll. It is
            # not a Fail state: that would fail the Map, which stops the batch's other clips' polls.
            timed_out: {
                "Type": "Pass", "Comment": "The job never ended within the poll limit: PollLimitExceeded",
                "Parameters": {"Error": PollLimitExceeded.__name__,
                               "Cause.$": "States.Format('the Luma Ray2 job {} was still InProgress after {} polls "
                                          "of GetAsyncInvoke', $.job.arn, $.polls.n)"},
                "ResultPath": "$.error", "Next": record_error,
            },
            record_end: put_record("$.got", "ended") | {
                "Comment": "Completed or Failed: GetAsyncInvoke's answer is the clip's record",
                "Catch": catch_all(record_error), "End": True},
            **record_error_states,
        }
        return prepare, {
            prepare: lambda_task(
                "PrepareBatchFunctionArn",
                {"batch.$": "$.batch", "jobs.$": "$.jobs", "run.$": "$.run", "service": BEDROCK},
                selector={"start.$": "$.Payload.start", "clips.$": "$.Payload.clips", "poll.$": "$.Payload.poll"},
                result_path="$.prepared",
                comment="One StartAsyncInvoke request per clip (pipeline/backends/video_bedrock.py) and the poll limits",
            ) | {"Catch": catch_all(collect), "Next": anything},
            anything: {
                "Type": "Choice", "Comment": "Nothing to start when every clip is cached or waits on a failed job",
                "Choices": [{"Variable": "$.prepared.start", "BooleanEquals": True, "Next": run_all}],
                "Default": collect,
            },
            run_all: {
                "Type": "Map", "Comment": "The batch's clip jobs, at most the account's Ray2 quota at once",
                "ItemsPath": "$.prepared.clips",
                "ItemSelector": {"key.$": "$$.Map.Item.Value.key", "request.$": "$$.Map.Item.Value.request",
                                 "run.$": "$.run", "poll.$": "$.prepared.poll", "polls": {"n": 0}},
                # the account's Ray2 concurrent-request quota (a stack setting, pipeline/cloud/quotas.py); the plan
                # puts at most one Ray2 batch in a wave, so no two batches' jobs run side by side
                "MaxConcurrencyPath": "$.ray2_concurrency",
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": start, "States": clip},
                "ResultPath": None, "Catch": catch_all(collect), "Next": collect,
            },
            collect: then(lambda_task(
                "CollectBatchFunctionArn", "$", selector={"status.$": "$.Payload.status"}, result_path="$",
                comment="Reads each finished clip back from S3 into the cache with its provenance and records every "
                        "clip's result (a failed, filtered or timed-out job fails its clip alone)",
            ), None, catch_all(record)),
            **failure,
        }

    return states


def routed_batch_processor(prefix: str) -> Processor:
    """A clip batch goes to the branch of the service that renders it (the plan step's `service` per batch):
    SageMaker (one processing job) or Bedrock (Luma Ray2 async jobs)."""
    sagemaker, ray2 = clip_batch_processor(prefix), ray2_batch_processor(prefix)

    def states(suffix: str) -> tuple[str, States]:
        router = f"Which service renders {prefix}batch?{suffix}"
        sagemaker_start, sagemaker_states = sagemaker(suffix)
        ray2_start, ray2_states = ray2(suffix)
        return router, {
            router: {"Type": "Choice", "Choices": [{"Variable": "$.service", "StringEquals": BEDROCK, "Next": ray2_start}],
                     "Default": sagemaker_start},
            **sagemaker_states, **ray2_states,
        }

    return states


# --- the stages -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One of the plan's stages (pipeline.cloud.STAGES) as the state machine runs it."""

    name: str  # as the plan summary names it: `$.run.stages.<name>`
    label: str  # its `<label> inline or distributed?` Choice
    map_name: str  # the Map over its items (in a wave stage: over one wave's items)
    comment: str
    unit: str  # what one child execution of its Distributed Map is
    items: str  # the plan summary field holding its inline items (a wave stage: its waves)
    processor: Processor
    batches: bool = False  # items are clip batches (GPU concurrency) rather than job ids
    concurrency: str = ""  # the path of its Map's MaxConcurrency (default: the GPU or the Lambda job limit)
    # a wave stage (pipeline.cloud.WAVE_STAGES): the Map over its waves, and its distributed wave loop
    waves_map: str = ""
    waves_comment: str = ""
    loop: str = ""  # the state field of the wave loop's counter
    loop_noun: str = ""
    loop_comment: str = ""

    @property
    def in_waves(self) -> bool:
        return self.name in WAVE_STAGES


ENHANCE = Stage(name="enhance", label="Enhance", map_name="Enhance prompts",
                comment="One job per distinct shot prompt, fitted to the video model's token limit", unit="prompt",
                items="enhance", processor=job_processor(task="Enhance prompt", function="EnhanceFunctionArn", noun="enhance"))
IMAGES = Stage(name="images", label="Images", map_name="Edit image wave",
               comment="The images of one wave in parallel: each applies its edit chain in order", unit="item",
               items="image_waves", processor=job_processor(task="Edit image", function="ImageFunctionArn", noun="image"),
               waves_map="Edit images",
               waves_comment="Image edit chains; an image made from another image waits for it in a later wave",
               loop="image_loop", loop_noun="image",
               loop_comment="Image edit chains from S3, one wave after another; each wave's items are one JSON list in S3")
CLIPS = Stage(name="clips", label="Clips", map_name="Render clips",
              comment="Clip batches that need no image: one SageMaker processing job each", unit="batch",
              items="clip_batches", processor=routed_batch_processor(""), batches=True)
WAITING_CLIPS = Stage(name="waiting_clips", label="Waiting clips", map_name="Render clip wave",
                      comment="The clip batches of one wave in parallel", unit="item", items="clip_waves",
                      processor=routed_batch_processor("waiting "), batches=True,
                      waves_map="Render clips that wait",
                      waves_comment="Clips that start from an edited image or continue an earlier clip, one wave after another",
                      loop="clip_loop", loop_noun="waiting clip",
                      loop_comment="Clips that wait, from S3, one wave after another; each wave's items are one JSON list in S3")
# Polly's requests-per-second quota bounds this Map: MaxConcurrency from the stack (pipeline/cloud/contract.py
# voice_pacing), each Lambda spacing its own requests, so the slots together stay within the quota.
VOICES = Stage(name="voices", label="Voices", map_name="Speak voiceover",
               comment="One job per distinct utterance (text, voice, engine, language): Amazon Polly speaks it",
               unit="utterance", items="voices",
               processor=job_processor(task="Speak utterance", function="VoiceFunctionArn", noun="voice"),
               concurrency="$.limits.voices")
VIDEOS = Stage(name="videos", label="Videos", map_name="Assemble videos",
               comment="One job per video: its clips joined with transitions and audio", unit="video", items="videos",
               processor=job_processor(task="Assemble video", function="AssembleFunctionArn", noun="video"))
STAGE_SPECS = (ENHANCE, IMAGES, CLIPS, VOICES, WAITING_CLIPS, VIDEOS)


def job_map(stage: Stage, processor: Processor, mode: Mode) -> State:
    """The Map over a stage's items (a wave stage: one wave's), without its transitions. `inline`: the items
    are in the state; `distributed`: the plan step wrote them to S3, each is a child execution, and no item
    ever fails the Map Run (a failed job is recorded as its result and the report lists it)."""
    distributed = mode == "distributed"
    suffix = DISTRIBUTED if distributed else ""
    start, states = processor(suffix)
    if stage.batches:
        selector: State = {"batch.$": "$$.Map.Item.Value.batch", "jobs.$": "$$.Map.Item.Value.jobs",
                           "service.$": "$$.Map.Item.Value.service"}
    else:
        selector = {"job_id.$": "$$.Map.Item.Value.job_id" if distributed else "$$.Map.Item.Value"}
    # an inline wave's Map runs inside the Map over waves, whose items carry the run's ref as `run`
    selector["run.$"] = "$.run" if stage.in_waves and not distributed else "$.run.ref"
    if stage.batches:
        selector["render"] = {"attempt": 1, "attempts.$": "$.limits.render_attempts", "wait_s.$": "$.limits.capacity_wait_s"}
        selector["ray2_concurrency.$"] = "$.limits.ray2_concurrency"
    state: State = {"Type": "Map"}
    if distributed:
        key = f"$.{stage.loop}.wave.key" if stage.in_waves else f"$.run.stages.{stage.name}.key"
        state |= {"Comment": f"{stage.comment}, read from S3 (a child execution per {stage.unit})",
                  "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                                 "Parameters": {"Bucket": OUTPUT_BUCKET, "Key.$": key}}}
    else:
        state |= {"Comment": stage.comment,
                  "ItemsPath": f"$.wave.{'batches' if stage.batches else 'jobs'}" if stage.in_waves else f"$.run.{stage.items}"}
    state |= {"ItemSelector": selector, "MaxConcurrencyPath": stage.concurrency or (
        "$.limits.gpu_batches" if stage.batches else "$.limits.jobs")}
    if distributed:
        state["ToleratedFailurePercentagePath"] = "$.limits.tolerated_failure_percentage"
    state["ItemProcessor"] = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"} if distributed
                              else {"Mode": "INLINE"}, "StartAt": start, "States": states}
    if distributed:
        state["ResultWriter"] = {"Resource": "arn:aws:states:::s3:putObject",
                                 "Parameters": {"Bucket": OUTPUT_BUCKET, "Prefix": "map-runs"}}
    state["ResultPath"] = None
    return state


# Step Functions ends a run with States.DataLimitExceeded, which no Catch can catch (not even States.ALL), when a
# state's input or output passes 256 KiB ("Handling errors in Step Functions workflows",
# https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html). A Map's result is the list of
# its iterations' outputs and a Parallel's the list of its branches', so whatever ends a child workflow or a branch
# returns a few bytes, never the state it was given (whose error Cause alone may be 32 KiB).
def ending(state: State) -> State:
    """`state` as the last of a child workflow or a Parallel branch: its output is a small summary."""
    if state["Type"] == "Task":
        if state.get("ResultPath") != "$" or "ResultSelector" not in state:
            raise ValueError(f"a task that ends a child workflow must return only its ResultSelector: {state}")
        return state
    if state["Type"] == "Pass":
        summary: State = {"Result": state.get("Result", {"status": "done"})}
    elif state["Type"] == "Map" and "ItemReader" in state:  # its results went to S3 (ResultWriter)
        summary = {"ResultSelector": {"status": "done"}}
    elif state["Type"] == "Map":
        summary = {"ResultSelector": {"status": "done", "items.$": "States.ArrayLength($)"}}
    else:
        raise ValueError(f"no small output for a {state['Type']} state")
    return {k: v for k, v in state.items() if k not in ("Result", "ResultPath")} | summary | {"ResultPath": "$"}


def then(state: State, next_state: str | None, catch: list[State] | None = None) -> State:
    """`state` followed by `next_state` (None: it ends its branch or child workflow), with its Catch."""
    state = state | {"Next": next_state} if next_state else ending(state) | {"End": True}
    if catch:
        state["Catch"] = catch
    return state


def choice_name(stage: Stage) -> str:
    return f"{stage.label} inline or distributed?"


def stage_states(stage: Stage, *, after: str | None, catch: list[State]) -> States:
    """A stage: the Choice on the plan's mode for it, the inline Map, and the Distributed Map (a wave stage:
    a loop that runs one Distributed Map per wave, one after another). `after`: the next stage, or None at
    the end of a Parallel branch."""
    inline_name = stage.waves_map if stage.in_waves else stage.map_name
    distributed_name = f"Start {stage.loop_noun} waves" if stage.in_waves else stage.map_name + DISTRIBUTED
    states: States = {choice_name(stage): {
        "Type": "Choice",
        "Comment": "Over the stage threshold (or the state's budget) the plan step wrote this stage's items to S3: a "
                   "Distributed Map reads them there, each item a child execution with the same steps",
        "Choices": [{"Variable": f"$.run.stages.{stage.name}.mode", "StringEquals": "distributed", "Next": distributed_name}],
        "Default": inline_name,
    }}
    if not stage.in_waves:
        states[inline_name] = then(job_map(stage, stage.processor, "inline"), after, catch)
        states[distributed_name] = then(job_map(stage, stage.processor, "distributed"), after, catch)
        return states
    wave = job_map(stage, stage.processor, "inline")
    states[inline_name] = then({
        "Type": "Map", "Comment": stage.waves_comment, "ItemsPath": f"$.run.{stage.items}",
        "ItemSelector": {"wave.$": "$$.Map.Item.Value", "run.$": "$.run.ref", "limits.$": "$.limits"},
        "MaxConcurrency": 1,  # a wave waits for the one before it
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": stage.map_name,
                          "States": {stage.map_name: then(wave, None)}},
        "ResultPath": None,
    }, after, catch)
    noun, loop = stage.loop_noun, f"$.{stage.loop}"
    more, pick, count = f"More {noun} waves?", f"Next {noun} wave", f"Count {noun} wave"
    done = after or f"{noun[0].upper()}{noun[1:]} waves done"
    states |= {
        distributed_name: {"Type": "Pass", "Comment": stage.loop_comment,
                           "Parameters": {"index": 0, "count.$": f"States.ArrayLength($.run.stages.{stage.name}.waves)"},
                           "ResultPath": loop, "Next": more},
        more: {"Type": "Choice",
               "Choices": [{"Variable": f"{loop}.index", "NumericLessThanPath": f"{loop}.count", "Next": pick}],
               "Default": done},
        pick: {"Type": "Pass",
               "Parameters": {"index.$": f"{loop}.index", "count.$": f"{loop}.count",
                              "wave.$": f"States.ArrayGetItem($.run.stages.{stage.name}.waves, {loop}.index)"},
               "ResultPath": loop, "Next": stage.map_name + DISTRIBUTED},
        stage.map_name + DISTRIBUTED: then(job_map(stage, stage.processor, "distributed"), count, catch),
        count: {"Type": "Pass",
                "Parameters": {"index.$": f"States.MathAdd({loop}.index, 1)", "count.$": f"{loop}.count"},
                "ResultPath": loop, "Next": more},
    }
    if after is None:
        states[done] = then({"Type": "Pass"}, None)
    return states


def branch(stage: Stage, *, ended_early: str) -> State:
    """A Parallel branch running one stage. A Parallel stops its other branches when one fails (and with them
    the GPU jobs they run), so the branch catches its own failure and ends quietly."""
    states = stage_states(stage, after=None, catch=catch_all(ended_early, result_path="$.branch_error"))
    states[ended_early] = then({
        "Type": "Pass",
        "Comment": "A failure of this whole branch must not cancel the other one (a Parallel stops its other branches "
                   "when one fails, and with them running GPU jobs): its jobs without a result are reported as not run",
        "Result": {"status": "ended early"},
    }, None)
    return {"StartAt": choice_name(stage), "States": states}


# --- the whole state machine ------------------------------------------------------------------------------------

GENERATE = "Generate images, clips and voiceover"


def build() -> State:
    """The campaign state machine: plan -> enhance -> images, clips and voiceover side by side -> clips that
    wait -> assemble -> report, every failure leading to the report."""
    if [s.name for s in STAGE_SPECS] != list(STAGES):
        raise ValueError(f"the builder's stages {[s.name for s in STAGE_SPECS]} are not the code's {list(STAGES)}")
    unknown = {s.items for s in STAGE_SPECS} - set(PLAN_SUMMARY_FIELDS)
    if unknown:
        raise ValueError(f"stage items {sorted(unknown)} are not plan summary fields {PLAN_SUMMARY_FIELDS}")
    to_report = catch_all("Write report")
    states: States = {
        "Read settings": {
            "Type": "Pass",
            "Comment": "The execution's input is the manifest's S3 location; the limits come from the stack's context. "
                       "A Distributed Map tolerates every failed item (100 %): a failure is recorded as the job's "
                       "result and the report lists it",
            "Parameters": {
                "source.$": "$", "run_id.$": "$$.Execution.Name", "started.$": "$$.Execution.StartTime",
                "limits": {"jobs.$": "States.StringToJson('${JobConcurrency}')",
                           "gpu_batches.$": "States.StringToJson('${GpuConcurrency}')",
                           "ray2_concurrency.$": "States.StringToJson('${Ray2Concurrency}')",
                           "voices.$": "States.StringToJson('${VoiceConcurrency}')",
                           "render_attempts.$": "States.StringToJson('${RenderAttempts}')",
                           "capacity_wait_s.$": "States.StringToJson('${CapacityWaitSeconds}')",
                           "distributed_over.$": "States.StringToJson('${DistributedMapThreshold}')",
                           "approval_timeout_s.$": "States.StringToJson('${ApprovalTimeoutSeconds}')",
                           "tolerated_failure_percentage": 100},
            },
            "Next": "Plan campaign",
        },
        "Plan campaign": lambda_task(
            "PlanFunctionArn",
            {"source.$": "$.source", "run_id.$": "$.run_id", "started.$": "$.started", "limits.$": "$.limits"},
            selector={f"{field}.$": f"$.Payload.{field}" for field in PLAN_SUMMARY_FIELDS}, result_path="$.run",
            comment="Reads the manifest from S3, validates it, plans every job and writes the plan to the output bucket",
        ) | {"Catch": to_report, "Next": "Manifest valid?"},
        "Manifest valid?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.run.over_budget", "BooleanEquals": True, "Next": "Over budget"},
                        {"Variable": "$.run.valid", "BooleanEquals": False, "Next": "Manifest invalid"}],
            "Default": choice_name(ENHANCE),
        },
        "Over budget": {
            "Type": "Fail", "Comment": "Nothing ran: the estimate of what is not cached is over the manifest's budget or "
                                      "the stack's ceiling; the report shows both and the estimate's unknowns",
            "Error": "OverBudget",
            "CausePath": "States.Format('the cost estimate is over the budget; nothing ran; see the report at {}', $.run.report)",
        },
        "Manifest invalid": {
            "Type": "Fail", "Comment": "Nothing ran; the validation problems are the run's report", "Error": "ManifestInvalid",
            "CausePath": "States.Format('{} problem(s) in the manifest; see the report at {}', $.run.problems, $.run.report)",
        },
        **stage_states(ENHANCE, after=GENERATE, catch=to_report),
        GENERATE: {
            "Type": "Parallel", "Comment": "Image edit chains, the clips that need no image and the voiceover's "
                                          "utterances run side by side",
            "Branches": [branch(IMAGES, ended_early="Image edits ended early"),
                         branch(CLIPS, ended_early="Clip rendering ended early"),
                         branch(VOICES, ended_early="Voiceover ended early")],
            "ResultPath": None, "Catch": to_report, "Next": "Approval needed?",
        },
        "Approval needed?": {
            "Type": "Choice",
            "Comment": "`approval: before-render`: every clip waits for an answer (the plan step moved the clips that "
                       "need no image to the first wave of clips that wait)",
            "Choices": [{"Variable": "$.run.approval", "BooleanEquals": True, "Next": "Await approval"}],
            "Default": choice_name(WAITING_CLIPS),
        },
        "Await approval": {
            "Type": "Task", "Resource": LAMBDA_INVOKE_WAIT,
            "Comment": "Writes the report for review (status awaiting-approval), stores this task's token under the run "
                       "and notifies; waits until `campaign approve` / `campaign reject` (SendTaskSuccess / "
                       "SendTaskFailure) answers, or the stack's approval timeout passes",
            "Parameters": {"FunctionName": placeholder("ApprovalFunctionArn"),
                           "Payload": {"token.$": "$$.Task.Token", "run.$": "$.run.ref", "started.$": "$.started",
                                       "execution.$": "$$.Execution.Id",
                                       "timeout_s.$": "$.limits.approval_timeout_s"}},
            "TimeoutSecondsPath": "$.limits.approval_timeout_s",
            "ResultPath": "$.approval", "Retry": [LAMBDA_SERVICE_RETRY],
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Approval expired"},
                      *to_report],
            "Next": choice_name(WAITING_CLIPS),
        },
        "Approval expired": {
            "Type": "Pass", "Comment": "No answer within the approval timeout: the report ends the run as expired",
            "Result": {"Error": APPROVAL_EXPIRED_ERROR, "Cause": "no answer before the approval timeout"},
            "ResultPath": "$.error", "Next": "Write report",
        },
        **stage_states(WAITING_CLIPS, after=choice_name(VIDEOS), catch=to_report),
        **stage_states(VIDEOS, after="Write report", catch=to_report),
        "Write report": lambda_task(
            "ReportFunctionArn", "$",
            selector={"status.$": "$.Payload.status", "report.$": "$.Payload.report", "jobs.$": "$.Payload.jobs",
                      "errors.$": "$.Payload.errors"},
            result_path="$.report",
            comment="Always runs (every Catch leads here): collects the job results from S3 and writes report.json "
                    "and report.html",
        ) | {"Catch": catch_all("Report not written"), "Next": "Campaign outcome"},
        "Campaign outcome": {
            "Type": "Choice", "Comment": "The execution's output is the report summary: status, report address, job counts",
            "OutputPath": "$.report",  # applied after the choice, which reads the whole state
            "Choices": [{"Variable": "$.report.status", "StringEquals": "failed", "Next": "Campaign failed"},
                        {"Or": [{"Variable": "$.report.status", "StringEquals": status}
                                for status in APPROVAL_ENDED_STATUSES],
                         "Next": "Campaign not approved"}],
            "Default": "Campaign done",
        },
        "Campaign failed": {"Type": "Fail", "Comment": "No video or image was produced; the report lists every error",
                            "Error": "CampaignFailed", "CausePath": "States.JsonToString($)"},
        "Report not written": {"Type": "Fail", "Error": "ReportNotWritten", "CausePath": "States.JsonToString($.error)"},
        "Campaign done": {"Type": "Succeed", "Comment": "succeeded or partial: the report says which"},
        "Campaign not approved": {"Type": "Succeed", "Comment": "rejected or expired at the approval gate: no clip was "
                                                                "rendered; the report says which and why"},
    }
    asl = {
        "Comment": "Campaign pipeline: plan -> enhance prompts -> images, clips and voiceover -> clips that wait -> "
                   "assemble -> "
                   "report. Same task functions as `campaign run`; results live in S3, the state carries ids only, and "
                   "a stage over the threshold reads its items from S3 in a Distributed Map.",
        "StartAt": "Read settings",
        "States": states,
    }
    return json.loads(json.dumps(asl))  # a fresh copy: states share the retry policies' objects


def render() -> str:
    """The ASL as committed: two-space indents, keys in the order written here, a trailing newline."""
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m state_machines.build", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help=f"rewrite {ASL_PATH.name}")
    action.add_argument("--check", action="store_true", help=f"exit 1 if {ASL_PATH.name} is not the builder's output")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        ASL_PATH.write_text(text, encoding="utf-8")
    elif args.check:
        if ASL_PATH.read_text(encoding="utf-8") != text:
            print(f"{ASL_PATH} is not the builder's output: run `python -m state_machines.build --write`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
