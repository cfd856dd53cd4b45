"""A campaign using all 13 Stability tools and Claude enhancement, end to end against a fake Bedrock endpoint
over real HTTP through boto3: every request matches the service contract; one filtered image -> partial run."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_bedrock import FakeBedrock, Recorded, Reply, default_reply, finish
from PIL import Image

from pipeline import catalog
from pipeline.backends.bedrock import DEFAULT_ENHANCER_MODEL
from pipeline.cli import main

pytestmark = pytest.mark.slow

MANIFEST = """\
campaign: all-tools
defaults:
  enhance: true
assets:
  sofa: assets/sofa.png
  mask: assets/plant-mask.png
  brand: assets/brand-style.jpg
images:
  - id: edits
    from: sofa
    edits:
      - erase-object: {mask: mask, grow_mask: 5}
      - remove-background: {}
      - search-recolor: {select_prompt: sofa, prompt: navy velvet, style_preset: photographic}
      - inpaint: {prompt: a plant, mask: mask, negative_prompt: blur}
      - outpaint: {left: 64, right: 64, prompt: a loft, creativity: 0.4}
  - id: upscales
    from: sofa
    edits:
      - upscale-fast: {}
      - upscale-conservative: {prompt: a sofa, creativity: 0.3}
  - id: creative
    from: brand
    edits:
      - upscale-creative: {prompt: brand texture, creativity: 0.3}
  - id: control
    from: sofa
    edits:
      - sketch: {prompt: a pencil sofa, control_strength: 0.6}
      - structure: {prompt: a leather sofa}
      - style-guide: {prompt: a sofa in the brand style, aspect_ratio: "16:9", fidelity: 0.5}
      - style-transfer: {style_image: brand, style_strength: 0.8, composition_fidelity: 0.9, change_strength: 0.5}
  - id: filtered
    from: sofa
    edits:
      - search-replace: {search_prompt: sofa, prompt: FORBIDDEN THING}
videos:
  - id: teaser
    shots:
      - {prompt: A bee on a flower., frames: 9}
      - {prompt: A navy sofa in a loft, image: edits, frames: 9}
"""


def router(req: Recorded) -> Reply:
    """The service, as the tests script it: one prompt trips the content filter, the rest succeed."""
    if req.operation == "invoke" and "FORBIDDEN" in json.dumps(req.body):
        return finish("Filter reason: prompt")(req)
    return default_reply(req)


@pytest.fixture
def fake_bedrock(monkeypatch: pytest.MonkeyPatch, offline_aws: None) -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        server.default = router
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
        yield server


def test_all_13_tools_end_to_end_against_fake_bedrock(fake_bedrock: FakeBedrock, write_campaign, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = write_campaign(MANIFEST)
    out = tmp_path / "out"
    args = ["run", str(manifest), "--out", str(out), "--images", "bedrock", "--enhancer", "bedrock", "--quiet"]
    assert main(args) == 1  # partial: one image was filtered

    invokes = [r for r in fake_bedrock.requests if r.operation == "invoke"]
    by_model = {t.model_id: t for t in catalog.EDIT_TOOLS.values()}
    assert {r.model_id for r in invokes} == set(by_model)  # every one of the 13 tools was called
    assert len(invokes) == 13  # nothing retried, nothing sent twice
    for req in invokes:
        tool = by_model[req.model_id]
        assert req.headers["content-type"] == "application/json"
        allowed = set(tool.fields) | {tool.image_field}
        assert set(req.body) <= allowed, (tool.name, set(req.body) - allowed)
        assert set(tool.required) <= set(req.body)
        assert req.body.get("output_format", "png") == "png"
        for name in (tool.image_field, *tool.image_fields):
            if name in req.body:
                raw = base64.b64decode(req.body[name], validate=True)  # plain base64 of a PNG, encoded once
                assert raw.startswith(b"\x89PNG"), (tool.name, name)
                Image.open(io.BytesIO(raw)).verify()
        assert "us-west-2" in req.headers["authorization"]  # the Stability region by default

    converse = [r for r in fake_bedrock.requests if r.operation == "converse"]
    assert len(converse) == 2 and {r.model_id for r in converse} == {DEFAULT_ENHANCER_MODEL}  # one per shot prompt
    sent = sorted(r.body["messages"][0]["content"][0]["text"] for r in converse)
    assert "A bee on a flower." in sent[0] and "A navy sofa in a loft" in sent[1]
    assert all(r.body["system"] and r.body["inferenceConfig"]["temperature"] <= 0.2 for r in converse)

    latest = json.loads((out / "runs" / "all-tools" / "latest.json").read_text())
    report = json.loads((out / "runs" / "all-tools" / latest["report"]).read_text())
    assert report["status"] == "partial"
    assert [(e["job"], e["error"]) for e in report["errors"]] == [("image:filtered", "ContentFiltered")]
    assert "Filter reason: prompt" in report["errors"][0]["message"]
    images = {i["id"]: i for i in report["images"]}
    assert all(images[i]["status"] == "executed" and images[i]["backend"] == "bedrock"
               for i in ("edits", "upscales", "creative", "control"))
    clips = report["videos"][0]["clips"]
    assert clips[0]["enhanced_prompt"].startswith("A richly detailed cinematic scene:")  # the fake's answer
    assert "A bee on a flower." in clips[0]["enhanced_prompt"]
    assert clips[0]["enhancer"] == "bedrock"
    assert report["videos"][0]["path"]

    # the same campaign again: nothing succeeded is sent again; only the filtered image is retried
    before = len(fake_bedrock.requests)
    assert main(args) == 1
    again = fake_bedrock.requests[before:]
    assert [r.model_id for r in again] == [catalog.EDIT_TOOLS["search-replace"].model_id]
