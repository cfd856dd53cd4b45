"""A video's delivered files when it has formats or captions: the assembled video (pipeline.media.assemble) once,
then every format that is not the assembled video itself in one pass (pipeline.media.formats)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import JobFailed
from pipeline.manifest.formats import Cue, cues
from pipeline.manifest.timeline import Timeline
from pipeline.media.assemble import AssemblyRequest, assemble_video
from pipeline.media.brand import Logo
from pipeline.media.formats import FormatTarget, render_formats
from pipeline.plan.jobs import VideoOutput


@dataclass(frozen=True)
class MadeOutput:
    output: VideoOutput
    path: Path
    poster: Path
    info: dict[str, Any]


def make_outputs(req: AssemblyRequest, *, outputs: Sequence[VideoOutput], tl: Timeline,
                 captions: Sequence[str | None], fit: str, workdir: Path,
                 cue_list: Sequence[Cue] | None = None, logo: Logo | None = None) -> list[MadeOutput]:
    """Make `outputs` (those not already stored) in `workdir`; `tl` is the video's planned timeline; `cue_list`
    (captions timed from speech) replaces the shots' spans when given; `logo`, the brand's, goes on every output
    (so none of them is the assembled video as it is)."""
    if not outputs:
        return []
    base, base_poster = workdir / "assembled.mp4", workdir / "assembled.png"
    result = assemble_video(req, base, base_poster)
    if result.frames != tl.frames:
        raise JobFailed(f"the clips give {result.frames} frames, their specs {tl.frames}: captions would be mistimed")
    common = {"duration_s": result.duration_s, "fps": result.fps, "frames": result.frames,
              "poster_frame": result.poster_frame, "notes": list(result.notes),
              **({"sound": result.extra["mix"]} if "mix" in result.extra else {})}
    made: list[MadeOutput] = []
    targets: list[tuple[VideoOutput, FormatTarget]] = []
    for i, o in enumerate(outputs):
        if (o.width, o.height) == (result.width, result.height) and not o.burn and logo is None:  # the assembled video
            path, poster = workdir / f"out-{i}.mp4", workdir / f"out-{i}.png"
            shutil.copyfile(base, path)
            shutil.copyfile(base_poster, poster)
            made.append(MadeOutput(o, path, poster, {**common, "format": o.format, "width": o.width, "height": o.height,
                                                     "fit": None, "burned": False, "method": result.method,
                                                     "timings": result.timings}))
        else:
            targets.append((o, FormatTarget(format=o.format, width=o.width, height=o.height, fit=fit, burn=o.burn,
                                            path=workdir / f"out-{i}.mp4", poster=workdir / f"out-{i}.png")))
    if targets:
        import time

        t0 = time.perf_counter()
        rendered = render_formats(base=base, size=(result.width, result.height), tl=tl, clips=req.clips,
                                  targets=[t for _, t in targets],
                                  cues=list(cue_list) if cue_list is not None else cues(tl, captions), title=req.title,
                                  end_card=req.end_card, has_audio=req.audio is not None or req.mix is not None,
                                  poster_frame=result.poster_frame, logo=logo, card_font=req.card_font,
                                  caption_font=req.caption_font)
        seconds = round(time.perf_counter() - t0, 4)
        for (o, t), r in zip(targets, rendered, strict=True):
            method = ("re-encode" + (f"+{r.fit}" if r.fit else "") + ("+burned-captions" if o.burn else "")
                      + ("+logo" if logo else ""))
            made.append(MadeOutput(o, t.path, t.poster, {
                **common, "format": o.format, "width": r.width, "height": r.height, "fit": r.fit, "burned": o.burn,
                "method": method, "timings": {**result.timings, "formats_s": seconds, "formats_in_pass": len(targets)}}))
    return made
