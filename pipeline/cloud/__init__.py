"""The cloud runner's side of the pipeline, one module per Step Functions concern.

`state_machines/campaign.asl.json` (built by `state_machines/build.py`) walks the plan's stages; each Lambda
task in `tasks/` parses its event into a typed event (`events`) and calls one step function here, which calls
the same task functions as the local runner (`pipeline.tasks`) with an `S3Store` on the output bucket:

  contract      what the ASL and the code agree on (stage names, state budgets, request fields)
  names         execution/schedule names, S3 keys of a run, ARNs and console links
  settings      the Lambda environment the stack writes, and the backends it selects
  events        the typed events each step receives
  rundoc        the run document in S3 (plan, waves, clip batches) and the summary the state carries
  plan_step     `Plan campaign`
  job_step      `Enhance prompt`, `Edit image`, `Speak utterance` (Polly), `Assemble video`
  batches       `Prepare clip batch`, `Collect clip batch` (a Ray2 batch goes on to `ray2`)
  ray2          `Prepare Ray2 batch`, `Collect Ray2 batch`: StartAsyncInvoke requests, the jobs' clips into the cache
  approval_step `Await approval` (the task token stored, the held report, the notification) and its answer
  report_step   `Write report` (and the run's notification)
  webhook_step  the run's summary POSTed to the manifest's (or the stack's) webhook, signed with a Secrets Manager secret
  outputs       the collect steps' backend: what a finished job left, named as the plan's video backend
  trigger       the S3 trigger and the manifests' schedules
  tenancy       what a manifest may read (its own folder, its submitted assets, shared folders), schedule floor
  commands      `campaign submit` and `campaign status`
  history       worst-case history events of every execution, from the ASL (the 25,000-event quota)
  quotas        the AWS quotas as stack settings, the wall time they imply, Ray2 batches sized and spread
  sizing        a plan as the cloud would run it (`campaign plan`'s cloud figures)

The state carries ids only: the plan and every job's result live in S3 under `runs/<campaign>/<run-id>/`
(run id = execution name). No AWS client is created at import; callers pass them in. This file imports only
the contract, so importing one step never loads another's dependencies.
"""

from pipeline.cloud.contract import (
    APPROVAL_ENDED_STATUSES,
    APPROVAL_EXPIRED_ERROR,
    APPROVAL_REJECTED_ERROR,
    DEFAULT_APPROVAL_TIMEOUT_S,
    DEFAULT_DISTRIBUTED_THRESHOLD,
    ERROR_MESSAGE_MAX,
    PLAN_SUMMARY_FIELDS,
    RENDER_REQUEST_FIELDS,
    STAGES,
    WAVE_STAGES,
)

__all__ = ["APPROVAL_ENDED_STATUSES", "APPROVAL_EXPIRED_ERROR", "APPROVAL_REJECTED_ERROR", "DEFAULT_APPROVAL_TIMEOUT_S", "DEFAULT_DISTRIBUTED_THRESHOLD", "ERROR_MESSAGE_MAX", "PLAN_SUMMARY_FIELDS", "RENDER_REQUEST_FIELDS",
           "STAGES", "WAVE_STAGES"]
