"""What the state machine and the cloud's Lambda steps agree on: stage names, state budgets, the fields of the
render request and of the plan summary. The ASL builder (state_machines/build.py) reads these; no imports."""

from __future__ import annotations

RUN_DOCUMENT_VERSION = 1
EXECUTION_NAME_MAX = 80  # Step Functions
SCHEDULE_NAME_MAX = 64  # EventBridge Scheduler
NAME_HASH_CHARS = 16
MANIFEST_PREFIX = "manifests/"
MANIFEST_SUFFIXES = (".yaml", ".yml")
SUBMITTED_ASSETS_PREFIX = "assets/"
# The shortest interval between two runs of one manifest's `schedule:` unless the stack's
# min_schedule_interval_s says otherwise: each scheduled run is a full run, held to the manifest's budget.
DEFAULT_MIN_SCHEDULE_INTERVAL_S = 3600
ERROR_MESSAGE_MAX = 2000
# An execution's history holds at most 25,000 events (hard quota, "Step Functions service quotas"); the plan
# keeps every execution's worst case (pipeline/cloud/history.py, from the ASL) within HISTORY_BUDGET.
HISTORY_LIMIT = 25_000
HISTORY_BUDGET = 20_000
# Inline or Distributed Map, per stage. An inline Map item adds its own states' events to the execution's
# history (history.py counts them) and its id to the state (256 KB at most); a Distributed Map's items are child
# executions with their own histories, read from S3. A stage runs distributed when it has more jobs than the
# threshold (the state machine passes the stack's `distributed_map_threshold`) or holds a Ray2 batch (whose
# polls must never sit in the parent's history), and the largest stages also go distributed while the inline
# ones together pass either budget below.
DEFAULT_DISTRIBUTED_THRESHOLD = 500
INLINE_JOBS_BUDGET = 2000
INLINE_SUMMARY_BYTES = 64 * 1024
# With every stage distributed the state holds one small entry per dependency wave; past this it is refused.
MAX_SUMMARY_BYTES = 128 * 1024
# ... and each wave of a distributed stage adds about 12 events to the parent's history (its Distributed Map and
# the loop's Choice and Passes): past this many waves the parent could pass HISTORY_BUDGET, so it is refused too
# (tests/test_cloud_history.py checks the parent at this many waves against the ASL).
MAX_WAVES = 1500
# The stages as the state machine names them (its `... inline or distributed?` Choices read
# `$.run.stages.<name>.mode`); images and waiting_clips run in waves, one Distributed Map per wave. `voices` (one
# Polly utterance per job) runs beside images and clips, before the videos that mix them.
STAGES = ("enhance", "images", "clips", "voices", "waiting_clips", "videos")
WAVE_STAGES = ("images", "waiting_clips")

# The fields of the CreateProcessingJob request that the state's `Render ... clip batch on GPU` Task passes
# on (its Parameters name exactly these); prepare_clip_batch refuses a request with any other field.
RENDER_REQUEST_FIELDS = ("ProcessingJobName", "RoleArn", "AppSpecification", "ProcessingResources",
                         "ProcessingInputs", "ProcessingOutputConfig", "StoppingCondition", "Environment",
                         "NetworkConfig")
# What the `Plan campaign` Task keeps of the plan step's answer (its ResultSelector names exactly these).
# `over_budget`: the run was refused before any job (its estimate is over its budget); `approval`: the run
# waits at `Await approval` before any clip is rendered.
PLAN_SUMMARY_FIELDS = ("valid", "ref", "report", "problems", "enhance", "image_waves", "clip_batches",
                       "voices", "clip_waves", "videos", "stages", "over_budget", "approval")
# How long `Await approval` waits for an answer before the run ends as `expired` (the stack's
# approval_timeout_s context overrides it).
DEFAULT_APPROVAL_TIMEOUT_S = 7 * 24 * 3600
# The errors an answered or unanswered approval ends a run with (SendTaskFailure's error; the Pass state that
# stands in for States.Timeout): the report step turns them into the statuses `rejected` and `expired`.
APPROVAL_REJECTED_ERROR = "ApprovalRejected"
APPROVAL_EXPIRED_ERROR = "ApprovalExpired"
# ... and the report statuses they end in (pipeline/report/write.py REJECTED, EXPIRED), which `Campaign outcome` reads
APPROVAL_ENDED_STATUSES = ("rejected", "expired")
# A held run's task token, kept outside runs/ (which the reports and the studio read): the approval step writes
# it, `campaign approve|reject` reads it (the README lists that IAM permission).
APPROVAL_TOKENS_PREFIX = "approval-tokens/"

PARALLEL_S3_READS = 16  # the report step reads one result per job: in parallel, a few thousand fit its timeout


# Luma Ray2 batches (pipeline/cloud/ray2.py): the StartAsyncInvoke fields the state's `Start Ray2 job` Task passes
# on, in the AWS SDK integration's PascalCase (prepare_ray2_batch refuses a request with any other field), and
# the prefix of the output bucket that Bedrock writes the clips under (the stack grants s3:PutObject there only).
RAY2_START_FIELDS = ("ModelId", "ModelInput", "OutputDataConfig", "ClientRequestToken")
RAY2_OUTPUT_PREFIX = "bedrock-output/"
# Where the state machine records how each clip's job ended (runs/<campaign>/<run-id>/<folder>/<clip key>.json).
RAY2_JOBS_FOLDER = "ray2-jobs"
# How the state machine polls a Ray2 job (GetAsyncInvoke in a Wait loop) unless the stack says otherwise: every
# 30 s, at most 120 polls (an hour); a job still InProgress then fails its clip with PollLimitExceeded.
DEFAULT_RAY2_POLL_S = 30
DEFAULT_RAY2_MAX_POLLS = 120
# The worst-case history events of a Ray2 batch's child execution: BATCH + clips x (CLIP + POLL x max polls).
# history.py derives them from the ASL; tests/test_cloud_history.py holds these equal to it (the Lambdas do
# not ship the ASL).
RAY2_BATCH_EVENTS = 120
RAY2_CLIP_EVENTS = 69
RAY2_POLL_EVENTS = 13


# Amazon Polly ("Quotas in Amazon Polly", https://docs.aws.amazon.com/polly/latest/dg/limits.html): SynthesizeSpeech
# takes 8 transactions a second for neural voices (8 for generative and long-form too; standard 80) and at most 18
# neural requests at once. The voice Map runs `concurrency` Lambdas at once and each Lambda spaces its own requests
# `interval_s` apart and holds its slot that long after its last one (pipeline/backends/voice_polly.py), so no one
# second holds more than `tps` requests, whatever Polly's latency (each slot makes at most one request a slot
# interval, and concurrency / interval_s == tps).
DEFAULT_POLLY_TPS = 8
POLLY_CONCURRENT_REQUESTS = 18


def voice_pacing(tps: int) -> tuple[int, float]:
    """(MaxConcurrency of the voice Map, seconds between one Lambda's Polly requests) for a quota of `tps`."""
    if tps < 1:
        raise ValueError(f"the Polly request quota must be at least 1 request/s, got {tps!r}")
    concurrency = min(tps, POLLY_CONCURRENT_REQUESTS)
    return concurrency, concurrency / tps
