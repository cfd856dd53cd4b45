"""Luma Ray2 shots in the manifest, plan and cost: validation located on the field, keys of CogVideoX shots
untouched, Ray2 keys decided by its request settings, preview clips at the catalog's geometry."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import pytest

from pipeline import catalog
from pipeline.backends.base import ClipRequest
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.schema import render_schema
from pipeline.plan import pricing
from pipeline.plan.build import KeySource, Plan, build_plan
from pipeline.plan.cost import estimate_cost
from pipeline.plan.jobs import Job

KEYS = KeySource(enhancer="passthrough:v1", images="local", video="preview")

MIXED = """\
    campaign: mixed-models
    defaults:
      video: {model: cogvideox-5b, steps: 2, frames: 9, seed: 3}
    assets:
      sofa: assets/sofa.png
    videos:
      - id: teaser
        transition: {crossfade: 0.5}
        shots:
          - prompt: A bee on a flower.
          - prompt: A sofa in a loft, slow orbit.
            model: luma-ray2
            duration: 9
            resolution: 540p
            aspect_ratio: "9:16"
            loop: true
          - prompt: The sofa, close up.
            image: sofa
    """


def plan_of(path: Path) -> Plan:
    return build_plan(load_manifest(path), KEYS, backends={"video": "preview"})


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestInvalid) as info:
        load_manifest(path)
    return [str(p) for p in info.value.problems]


def test_ray2_shot_is_typed_from_shot_and_defaults(write_campaign: Callable[..., Path]) -> None:
    path = write_campaign(MIXED)
    shot = load_manifest(path).videos[0].shots[1]
    assert shot.model == "luma-ray2"
    assert shot.ray2 == catalog.Ray2Settings(duration_s=9, resolution="540p", aspect_ratio="9:16", loop=True)
    assert (shot.ray2.width, shot.ray2.height, shot.ray2.fps, shot.ray2.frames) == (540, 960, 24, 216)
    assert shot.duration_s == 9
    # defaults.video may carry Ray2's settings for every Ray2 shot
    path = write_campaign("""\
        campaign: ray2-defaults
        defaults:
          video: {model: luma-ray2, duration: 9, aspect_ratio: "1:1"}
        videos:
          - id: v
            shots:
              - prompt: A bee.
              - prompt: A cat.
                resolution: 540p
        """, "defaults.yaml")
    shots = load_manifest(path).videos[0].shots
    assert [s.ray2 for s in shots] == [catalog.Ray2Settings(9, "720p", "1:1", False),
                                       catalog.Ray2Settings(9, "540p", "1:1", False)]


def test_ray2_problems_are_located_on_the_field(write_campaign: Callable[..., Path]) -> None:
    path = write_campaign("""\
        campaign: bad-ray2
        assets:
          sofa: assets/sofa.png
        videos:
          - id: v
            continuity: last-frame
            shots:
              - prompt: one
                model: luma-ray2
                duration: 7
                steps: 3
                image: sofa
              - prompt: two
                model: luma-ray2
                resolution: 1080p
                aspect_ratio: "5:4"
              - prompt: three
                aspect_ratio: "16:9"
          - id: w
            shots:
              - prompt: "%s"
                model: luma-ray2
        """ % ("x" * 5001))
    found = problems_of(path)
    expect = [
        (":10:", "videos[0].shots[0].duration: int 7 is not allowed here: expected one of 5, 9"),
        (":11:", "videos[0].shots[0].steps: 'steps' is a CogVideoX setting; luma-ray2 does not take it"),
        (":12:", "videos[0].shots[0].image: luma-ray2 cannot start from an image here"),
        (":13:", "videos[0].shots[1]: this shot continues from the previous clip"),
        (":15:", "videos[0].shots[1].resolution: the string '1080p' is not allowed here"),
        (":16:", "videos[0].shots[1].aspect_ratio: the string '5:4' is not allowed here"),
        (":18:", "videos[0].shots[2].aspect_ratio: 'aspect_ratio' is a luma-ray2 setting; cogvideox-5b does not read it"),
        (":21:", "videos[1].shots[0].prompt: is too long (5001 characters; at most 5000)"),
    ]
    for line, text in expect:
        assert any(line in p and text in p for p in found), (line, text, found)
    assert len(found) == len(expect), found


def test_cogvideox_prompt_limit_is_kept_below_ray2s(write_campaign: Callable[..., Path]) -> None:
    path = write_campaign("""\
        campaign: long-prompt
        videos:
          - id: v
            shots:
              - prompt: "%s"
        """ % ("y" * 4500))
    assert any("videos[0].shots[0].prompt: is too long (4500 characters; at most 4000 for cogvideox-5b)" in p
               for p in problems_of(path))


def test_ray2_clip_job_carries_its_settings_and_cog_keys_do_not_move(write_campaign: Callable[..., Path]) -> None:
    mixed = plan_of(write_campaign(MIXED))
    ray2_job = mixed.job("clip:teaser/02")
    spec = ray2_job.clip
    assert (spec.model, spec.width, spec.height, spec.fps, spec.frames, spec.i2v) == ("luma-ray2", 540, 960, 24, 216, False)
    assert spec.ray2 == catalog.Ray2Settings(9, "540p", "9:16", True)
    assert spec.max_tokens == catalog.RAY2.max_prompt_tokens
    assert mixed.job(spec.enhance_job).enhance.max_tokens == catalog.RAY2.max_prompt_tokens  # not CogVideoX's 226
    # the run document round trip keeps the typed settings
    assert Job.from_json(json.loads(json.dumps(ray2_job.to_json()))) == ray2_job
    # the same campaign without the Ray2 shot: every CogVideoX job keeps its key
    without = plan_of(write_campaign(MIXED.replace("""\
          - prompt: A sofa in a loft, slow orbit.
            model: luma-ray2
            duration: 9
            resolution: 540p
            aspect_ratio: "9:16"
            loop: true
""", ""), "without.yaml"))
    assert mixed.job("clip:teaser/01").key == without.job("clip:teaser/01").key
    assert mixed.job("clip:teaser/03").key == without.job("clip:teaser/02").key


@pytest.mark.parametrize("change", ["duration: 5", "resolution: 720p", 'aspect_ratio: "1:1"', "loop: false",
                                    "prompt: A sofa in a loft, fast orbit."])
def test_each_ray2_setting_decides_the_key(write_campaign: Callable[..., Path], change: str) -> None:
    base = plan_of(write_campaign(MIXED)).job("clip:teaser/02").key
    field = change.split(":")[0]
    lines = MIXED.splitlines()
    start = next(i for i, line in enumerate(lines) if "slow orbit" in line)
    idx = next(i for i, line in enumerate(lines) if i >= start and line.strip().lstrip("- ").startswith(f"{field}:"))
    indent = lines[idx][: len(lines[idx]) - len(lines[idx].lstrip(" -"))]
    lines[idx] = indent + change
    changed = plan_of(write_campaign("\n".join(lines) + "\n", "changed.yaml")).job("clip:teaser/02").key
    assert changed != base
    # steps/guidance/seed in the defaults do not reach a Ray2 clip's key
    reseeded = plan_of(write_campaign(MIXED.replace("seed: 3", "seed: 4"), "reseeded.yaml"))
    assert reseeded.job("clip:teaser/02").key == base


def test_preview_renders_ray2_geometry(tmp_path: Path) -> None:
    settings = catalog.Ray2Settings(5, "540p", "16:9", False)
    req = ClipRequest(key="r2", model="luma-ray2", prompt="A bee.", frames=settings.frames, fps=settings.fps,
                      width=settings.width, height=settings.height, steps=50, guidance=6.0, seed=1, ray2=settings)
    out = PreviewVideoBackend().render([req], tmp_path)[0]
    assert out.error is None and out.path is not None
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(out.path))
    reader = imageio_ffmpeg.read_frames(str(out.path))
    meta = next(reader)
    reader.close()
    assert (frames, tuple(meta["size"]), meta["fps"]) == (120, (960, 540), 24.0)
    assert seconds == pytest.approx(5.0, abs=0.05)


def test_ray2_cost_per_second_of_output(write_campaign: Callable[..., Path]) -> None:
    cost = estimate_cost(plan_of(write_campaign(MIXED)))
    item = next(i for i in cost["items"] if i["what"].startswith("clip luma-ray2"))
    assert item["what"] == "clip luma-ray2 540p 9s (Bedrock)"
    assert item["usd"] == pytest.approx(9 * pricing.RAY2_PER_SECOND["540p"])
    assert "[unverified]" in item["basis"]
    with pytest.raises(ValueError, match="no Ray2 price for resolution '1080p'"):
        pricing.ray2_clip_cost("1080p", 5)


def test_schema_is_generated_from_the_catalog() -> None:
    shipped = Path(__file__).resolve().parents[1] / "pipeline" / "manifest" / "schema" / "campaign.schema.json"
    assert shipped.read_text(encoding="utf-8") == render_schema()
    shot = json.loads(render_schema())["$defs"]["shot"]["properties"]
    assert shot["model"]["enum"] == catalog.all_video_model_names()
    assert shot["duration"]["enum"] == [5, 9] and shot["aspect_ratio"]["enum"] == list(catalog.RAY2_ASPECT_RATIOS)


class _ManifestBucket:
    """The one S3 call the plan step makes for a manifest without assets."""

    def __init__(self, text: str) -> None:
        self.text = text

    def get_object(self, **_: object) -> dict[str, object]:
        import io

        return {"Body": io.BytesIO(self.text.encode())}


def test_the_cloud_plan_step_refuses_ray2_shots_located(tmp_path: Path) -> None:
    """A deployment that renders on SageMaker only (video_backend sagemaker) cannot make Ray2 clips: a Ray2 shot
    is a located problem at planning, not a GPU batch that fails (sagemaker+bedrock runs them: test_ray2_cloud.py)."""
    from pipeline.cloud.events import ManifestSource, PlanEvent
    from pipeline.cloud.plan_step import plan_run
    from pipeline.cloud.settings import CloudSettings
    from pipeline.storage.store import LocalStore

    text = "campaign: cloud-ray2\nvideos:\n  - id: v\n    shots:\n      - prompt: A bee.\n      - prompt: A cat.\n        model: luma-ray2\n"
    settings = CloudSettings(enhancer="passthrough", images="local", video="sagemaker", clips_per_batch=8)
    out = tmp_path / "out"
    summary = plan_run(PlanEvent(ManifestSource("in", "manifests/r.yaml"), run_id="r1", started=0.0),
                       store=LocalStore(out), s3=_ManifestBucket(text), settings=settings, workdir=tmp_path / "w")
    assert summary["valid"] is False and summary["problems"] == 1
    report = json.loads((out / "runs" / "cloud-ray2" / "r1" / "report.json").read_text())
    (error,) = report["errors"]
    assert (error["error"], error["line"], error["col"], error["path"]) == ("ManifestInvalid", 6, 9, "videos[0].shots[1]")
    assert "luma-ray2 shots cannot run in this deployment" in error["message"]
    assert "sagemaker+bedrock" in error["message"]
