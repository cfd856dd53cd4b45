"""A Python stand-in for the SageMaker processing container (container/generate.py) in the moto tests.

It honours the container's contract (reference: container/generate.py's docstring): the jobs file and
start images under the `jobs` input, one `<key>.mp4` + `<key>.json` per clip under the output, a failed
clip's JSON carries `status: failed` and its error. It renders with the local `preview` backend, so its
clips are the local runner's clips, byte for byte.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.backends.base import ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.storage.store import parse_s3_uri

# What SageMaker reports when it cannot get the instance for a job it accepted (the job fails, never starts).
CAPACITY_REASON = ("CapacityError: Unable to provision requested ML compute capacity. "
                   "Please retry using a different ML instance type.")


def preview_container(s3: Any, *, fail_job: Callable[[dict[str, Any]], str | None] = lambda request: None,
                      fail_clip: Callable[[dict[str, Any]], str | None] = lambda line: None,
                      stop_after: int | None = None, no_capacity: int = 0,
                      ) -> Callable[[dict[str, Any]], tuple[str, str | None]]:
    """`fail_job(request)` -> a FailureReason fails the whole job (nothing written); `fail_clip(line)` -> an
    error message fails that clip only (its JSON says so, as generate.py's record_failure does);
    `stop_after=N` -> the job is stopped (MaxRuntimeExceeded) after writing its first N clips;
    `no_capacity=N` -> the first N jobs of each batch fail with CAPACITY_REASON (nothing written), the next
    ones run."""
    lock = threading.Lock()
    jobs_per_batch: dict[str, int] = {}

    def run(request: dict[str, Any]) -> tuple[str, str | None]:
        batch = request.get("Environment", {}).get("CAMPAIGN_BATCH", "")
        with lock:
            jobs_per_batch[batch] = seen = jobs_per_batch.get(batch, 0) + 1
        if seen <= no_capacity:
            return "Failed", CAPACITY_REASON
        reason = fail_job(request)
        if reason:
            return "Failed", reason
        inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"]}
        out_bucket, out_prefix = parse_s3_uri(request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"])
        jobs_bucket, jobs_prefix = parse_s3_uri(inputs["jobs"])
        assert any(name.startswith("models") for name in inputs), f"no weights input in {sorted(inputs)}"
        with tempfile.TemporaryDirectory(prefix="fake-container-") as tmp:
            work = Path(tmp)
            body = s3.get_object(Bucket=jobs_bucket, Key=jobs_prefix + "jobs.jsonl")["Body"].read().decode()
            for n, raw in enumerate(body.splitlines()):
                if stop_after is not None and n >= stop_after:
                    return "Stopped", "MaxRuntimeExceeded: the job ran past its stopping condition"
                line = json.loads(raw)
                error = fail_clip(line)
                if error:
                    doc = {"status": "failed", "key": line["key"], "error": error, "error_type": "RuntimeError"}
                    s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{line['key']}.json", Body=json.dumps(doc).encode())
                    continue
                image = None
                if "image" in line:
                    image = work / line["image"]
                    image.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(jobs_bucket, jobs_prefix + line["image"], str(image))
                fields = {k: v for k, v in line.items() if k != "image"}
                outcome = PreviewVideoBackend().render([ClipRequest(**fields, image=image)], work / "out")[0]
                doc = {"key": line["key"], "timings": outcome.timings, "placeholder": outcome.placeholder}
                if outcome.path is None:
                    doc.update(status="failed", error=outcome.error, error_type=outcome.error_type)
                else:
                    doc["status"] = "succeeded"
                    s3.upload_file(str(outcome.path), out_bucket, f"{out_prefix}{line['key']}.mp4")
                s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{line['key']}.json", Body=json.dumps(doc).encode())
        return "Completed", None

    return run
