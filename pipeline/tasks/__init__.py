"""The task functions, one module per job kind: the same code runs in the local runner and in the Lambda tasks.

Each is a pure function of its job's inputs: it skips work whose output is already stored under the job's
key (the entry checked first), writes the output and then its provenance JSON (the provenance is the commit
mark: an output without one is re-made), and reports a small JobResult.

  common    JobResult, TaskContext, the cache, provenance, `run_task` (cache, dependencies, failures)
  enhance   `run_enhance`          translate `run_translate`      images   `run_image`
  clips     `run_clip_batch`       videos   `run_video` (pipeline/media/)
  dispatch  `run_job`: any job by its kind (the local runner's entry; it imports every kind)

A Lambda imports the one kind it runs, so a light function never loads the media modules. This file
re-exports only `common`.
"""

from pipeline.tasks.common import (
    JobResult,
    TaskContext,
    TaskFunction,
    failure,
    is_done,
    missing_dependency,
    read_provenance,
    run_task,
)

__all__ = ["JobResult", "TaskContext", "TaskFunction", "failure", "is_done", "missing_dependency", "read_provenance",
           "run_task"]
