"""Task `image`: an image's chain of edits, each step stored under its own key (an unchanged prefix is reused)."""

from __future__ import annotations

import io
import time
from typing import Any

from PIL import Image

from pipeline.manifest.image_files import load_image
from pipeline.plan.jobs import Job, output_key, provenance_key, ref_to_json
from pipeline.storage.integrity import check_and_repair
from pipeline.tasks.common import TaskContext, image_info, open_image, provenance, resolve_image, write_done


def _encode(image: Image.Image, ext: str) -> bytes:
    buf = io.BytesIO()
    if ext == "jpg":
        image.convert("RGB").save(buf, "JPEG", quality=92)
    elif ext == "webp":
        image.save(buf, "WEBP", quality=92)
    else:
        image.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def run_image(job: Job, ctx: TaskContext) -> dict[str, Any]:
    editor = ctx.backends.images
    spec = job.image
    source = load_image(resolve_image(ctx, spec.source), what=f"{job.id}: source {ref_to_json(spec.source)}")
    current = source.image
    chain: list[dict[str, Any]] = []
    for i, step in enumerate(spec.steps):
        okey = output_key("image", step.key, step.ext)
        check = check_and_repair(ctx.store, provenance_key=provenance_key("image", step.key), output_key=okey)
        prov = check.provenance if check.done else None
        if prov:  # an unchanged prefix of the chain is reused
            current = open_image(ctx.store.materialize(okey, ctx.workdir))
            chain.append(prov["info"]["step"])
            continue
        refs = {f: open_image(resolve_image(ctx, r)) for f, r in step.refs.items()}
        t0 = time.perf_counter()
        before = current.size
        outcome = editor.edit(step.tool, current, step.params, refs)
        current = outcome.image
        step_info = {
            "index": i, "tool": step.tool, "params": step.params, "refs": {f: ref_to_json(r) for f, r in step.refs.items()},
            "key": step.key, "output": okey, "backend": outcome.backend, "identity": editor.identity(step.tool),
            "placeholder": outcome.placeholder, "note": outcome.note, "seed": outcome.seed,
            "size_in": list(before), "size_out": list(current.size), "mode": current.mode,
            "seconds": round(time.perf_counter() - t0, 3), **({"extra": outcome.extra} if outcome.extra else {}),
            **({"source_orientation": source.orientation, "source_mode": source.source_mode} if i == 0 else {}),
        }
        chain.append(step_info)
        data = _encode(current, step.ext)
        write_done(ctx.store, "image", step.key, step.ext,
                    provenance(ctx, job, info={"step": step_info, "chain": list(chain)}), data=data)
        # the next step reads exactly what is stored (a lossy format changes pixels, jpeg drops alpha), so a
        # chain resumed from the cache makes the same bytes under the same keys as one run in a single pass
        current = open_image(io.BytesIO(data))
    return image_info(job, chain)
