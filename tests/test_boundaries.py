"""What crosses the boundaries: every field a backend (or the GPU container) receives equals what the manifest
says, for the local runner and for the state machine executed under moto. The expected values are read from
the manifest's YAML directly, never from the plan, so a value lost or replaced on the way fails here."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_aws.cloud import Cloud, cloud_for_tasks
from fake_aws.container import preview_container

from pipeline.backends import Backends, PassThroughEnhancer
from pipeline.backends.base import ClipOutcome, ClipRequest, EditOutcome
from pipeline.backends.images_local import LocalImageEditor
from pipeline.backends.video_preview import PreviewVideoBackend
from pipeline.manifest.campaign import load_manifest
from pipeline.plan.build import KeySource, build_plan
from pipeline.plan.jobs import output_key
from pipeline.run.runner import run_local
from pipeline.storage.store import parse_s3_uri

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "manifests" / "assets"
MANIFEST = """\
    campaign: boundary-check
    assets:
      sofa: assets/sofa.png
      mask: assets/sofa-mask.png
    images:
      - id: sofa-navy
        from: sofa
        edits:
          - search-recolor: {select_prompt: sofa, prompt: navy blue velvet, seed: 99, grow_mask: 5}
          - inpaint: {prompt: a soft cushion, mask: mask, grow_mask: 7, seed: 4242}
    videos:
      - id: tour
        shots:
          - {prompt: A bee on a flower., seed: 11, frames: 17, steps: 3, guidance: 4.5, negative_prompt: blurry text,
             model: cogvideox-5b, enhance: true}
          - {prompt: The sofa in a sunlit loft., image: sofa, seed: 12345, frames: 9, steps: 2, guidance: 7.25,
             model: cogvideox-5b, enhance: false}
          - {prompt: A navy sofa turns slowly., image: sofa-navy, seed: 7, frames: 25, steps: 4, guidance: 5.5,
             model: cogvideox-5b, enhance: false}
          - {prompt: Wide shot of the loft at dusk., seed: 3, frames: 17, steps: 5, guidance: 6.0,
             model: cogvideox1.5-5b, enhance: true}
    """
CLIP_FIELDS = ("seed", "frames", "steps", "guidance", "model")


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "campaign"
    shutil.copytree(ASSETS, folder / "assets")
    (folder / "boundary.yaml").write_text(textwrap.dedent(MANIFEST), encoding="utf-8")
    return folder


def manifest_shots(folder: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load((folder / "boundary.yaml").read_text())["videos"][0]["shots"])


def manifest_edits(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    edits = yaml.safe_load((folder / "boundary.yaml").read_text())["images"][0]["edits"]
    return [next(iter(e.items())) for e in edits]


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the local runner --------------------------------------------------------------------------------------


class MarkingEnhancer(PassThroughEnhancer):
    """An enhancer whose output is recognisable, recording what it was asked."""

    name = "marking"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def identity(self) -> str:
        return "marking:v1"

    def enhance(self, prompt: str) -> str:
        self.asked.append(prompt)
        return f"{prompt} Cinematic, soft light."


class RecordingImages(LocalImageEditor):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any], dict[str, tuple[int, int]]]] = []

    def edit(self, tool: str, image: Any, params: Mapping[str, Any], refs: Mapping[str, Any]) -> EditOutcome:
        self.calls.append((tool, dict(params), {name: ref.size for name, ref in refs.items()}))
        return super().edit(tool, image, params, refs)


class RecordingVideo(PreviewVideoBackend):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ClipRequest] = []
        self.start_images: dict[str, str] = {}

    def render(self, requests: Sequence[ClipRequest], out_dir: Path) -> list[ClipOutcome]:
        for r in requests:
            self.requests.append(r)
            if r.image is not None:
                self.start_images[r.key] = sha(r.image)
        return super().render(requests, out_dir)


def test_the_local_runner_sends_each_backend_what_the_manifest_says(campaign_dir: Path, tmp_path: Path) -> None:
    enhancer, images, video = MarkingEnhancer(), RecordingImages(), RecordingVideo()
    backends = Backends(enhancer, images, video)
    keys = KeySource(enhancer=enhancer.identity(), images=images.identity, video=video.identity)
    plan = build_plan(load_manifest(campaign_dir / "boundary.yaml"), keys, backends=backends.names())
    outcome = run_local(plan, backends, out_dir=tmp_path / "out", show_progress=False)
    assert outcome.report["status"] == "succeeded", outcome.report["errors"]

    # image edits: each tool with the manifest's fields; an image-valued field arrives as an image
    edits = manifest_edits(campaign_dir)
    assert [c[0] for c in images.calls] == [tool for tool, _ in edits]
    for (tool, params, refs), (_, written) in zip(images.calls, edits, strict=True):
        assert params == {k: v for k, v in written.items() if k != "mask"}, tool
        assert set(refs) == ({"mask"} if "mask" in written else set())

    # prompts: the enhancer is asked the shot's prompt as written, once per shot that enhances
    shots = manifest_shots(campaign_dir)
    assert sorted(enhancer.asked) == sorted(s["prompt"] for s in shots if s["enhance"])

    # clips: every field as the manifest says; the prompt is the enhancer's answer or the shot's own
    by_prompt = {r.prompt: r for r in video.requests}
    assert len(video.requests) == len(shots)
    for shot in shots:
        expected_prompt = f"{shot['prompt']} Cinematic, soft light." if shot["enhance"] else shot["prompt"]
        req = by_prompt[expected_prompt]
        assert {f: getattr(req, f) for f in CLIP_FIELDS} == {f: shot[f] for f in CLIP_FIELDS}, shot["prompt"]
        assert req.negative_prompt == shot.get("negative_prompt")
        if shot.get("image") == "sofa":
            assert video.start_images[req.key] == sha(campaign_dir / "assets" / "sofa.png")
        elif shot.get("image") == "sofa-navy":  # the edited image as the image job made it (its cache entry; the
            # copy delivered in the run's images/ carries Content Credentials besides)
            [navy] = [i for i in outcome.report["images"] if i["id"] == "sofa-navy"]
            assert video.start_images[req.key] == sha(tmp_path / "out" / output_key("image", navy["key"], "png"))
        else:
            assert req.image is None


# --- the state machine under moto ----------------------------------------------------------------------------


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    yield from cloud_for_tasks(monkeypatch)


def test_the_state_machine_sends_the_gpu_container_what_the_manifest_says(cloud: Cloud, campaign_dir: Path) -> None:
    sent: list[dict[str, Any]] = []
    start_images: dict[str, str] = {}
    render = preview_container(cloud.s3)

    def recording_container(request: dict[str, Any]) -> tuple[str, str | None]:
        jobs_uri = next(i["S3Input"]["S3Uri"] for i in request["ProcessingInputs"] if i["InputName"] == "jobs")
        bucket, prefix = parse_s3_uri(jobs_uri)
        for raw in cloud.s3.get_object(Bucket=bucket, Key=prefix + "jobs.jsonl")["Body"].read().decode().splitlines():
            line = json.loads(raw)
            sent.append(line)
            if "image" in line:
                body = cloud.s3.get_object(Bucket=bucket, Key=prefix + line["image"])["Body"].read()
                start_images[line["key"]] = hashlib.sha256(body).hexdigest()
        return render(request)

    cloud.upload_folder(campaign_dir, prefix="manifests/")
    run = cloud.run("manifests/boundary.yaml", name="boundary-check-test", container=recording_container)
    assert run.status == "SUCCEEDED" and run.output["status"] == "succeeded", run.described
    report = json.loads(cloud.bytes("runs/boundary-check/boundary-check-test/report.json"))

    shots = manifest_shots(campaign_dir)
    by_prompt = {line["prompt"]: line for line in sent}
    assert len(sent) == len(shots)
    for shot in shots:  # the stack's enhancer here is passthrough: the model reads the prompt as written
        line = by_prompt[shot["prompt"]]
        assert {f: line[f] for f in CLIP_FIELDS} == {f: shot[f] for f in CLIP_FIELDS}, shot["prompt"]
        assert line.get("negative_prompt") == shot.get("negative_prompt")
        if shot.get("image") == "sofa":
            assert start_images[line["key"]] == sha(campaign_dir / "assets" / "sofa.png")
        elif shot.get("image") == "sofa-navy":  # the image job's output (the delivered copy is signed besides)
            [navy] = [i for i in report["images"] if i["id"] == "sofa-navy"]
            made = cloud.bytes(output_key("image", navy["key"], "png"))
            assert start_images[line["key"]] == hashlib.sha256(made).hexdigest()
        else:
            assert "image" not in line
