"""The Bedrock backends against a local fake Bedrock Runtime, through the real boto3 client over real HTTP."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fake_aws.validate import model_checked
from fake_bedrock import FakeBedrock, converse_ok, error, finish, image_ok, throttle
from PIL import Image

from pipeline.backends.bedrock import (
    DEFAULT_ENHANCER_MODEL,
    PROMPT_TEMPLATE_VERSION,
    SYSTEM_PROMPT,
    BedrockEnhancer,
    BedrockImageEditor,
    model_for_region,
    region_problem,
)
from pipeline.catalog import EDIT_TOOLS, FieldSpec
from pipeline.errors import BackendUnavailable, ContentFiltered, InputRejected, JobFailed, Throttled, TransientError
from pipeline.plan import pricing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST: dict[str, Any] = {"base_delay_s": 0.001, "max_delay_s": 0.002}  # retries without waiting

@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, offline_aws: None) -> Iterator[FakeBedrock]:
    """A running fake, with boto3 pointed at it by standard configuration and dummy credentials."""
    with FakeBedrock() as server, model_checked() as check:  # each request also checked against the model
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
        yield server
        assert server.requests == [] or check.operations("bedrock-runtime")


def picture(size: tuple[int, int] = (96, 80), mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, size)
    image.paste((200, 30, 30) if mode != "L" else 255, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    return image


def sample(name: str, spec: FieldSpec) -> Any:
    """A valid value for every non-image field, from the catalog's own ranges."""
    if spec.kind == "text":
        return f"{name.replace('_', ' ')}: a navy velvet sofa"
    if spec.kind == "enum":
        return spec.choices[-1]
    lo, hi = spec.minimum or 0, spec.maximum if spec.maximum is not None else 1
    if name in ("left", "right", "up", "down"):
        return 64
    if spec.kind == "int":
        return int(lo + (hi - lo) // 2) or 1
    return round(lo + (hi - lo) / 2, 3)


def all_params(tool: str) -> dict[str, Any]:
    spec = EDIT_TOOLS[tool]
    return {n: sample(n, f) for n, f in spec.fields.items() if f.kind != "image" and n != "output_format"}


def all_refs(tool: str) -> dict[str, Image.Image]:
    return {n: picture(mode="L") if n == "mask" else picture((80, 72)) for n in EDIT_TOOLS[tool].image_fields}


def decode_once(value: Any) -> Image.Image:
    assert isinstance(value, str)
    raw = base64.b64decode(value, validate=True)
    assert raw.startswith(PNG_SIGNATURE), "not plain base64 of a PNG (double-encoded?)"
    return Image.open(io.BytesIO(raw))


def editor(**kw: Any) -> BedrockImageEditor:
    return BedrockImageEditor(**{"max_attempts": 3, "seed": 0, **FAST, **kw})


def signed_region(headers: dict[str, str]) -> str:
    scope = headers["authorization"].split("Credential=")[1].split(",")[0]  # AKID/date/region/service/aws4_request
    return scope.split("/")[2]


# --- request bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", sorted(EDIT_TOOLS))
def test_request_body_per_tool(fake: FakeBedrock, tool: str) -> None:
    spec = EDIT_TOOLS[tool]
    params, refs = all_params(tool), all_refs(tool)
    out = editor().edit(tool, picture(), params, refs)

    [req] = fake.requests
    assert req.method == "POST" and req.operation == "invoke"
    assert req.model_id == spec.model_id
    assert req.raw_path == f"/model/{quote(spec.model_id, safe='')}/invoke"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["accept"] == "application/json"
    body = req.body
    assert set(body) == {spec.image_field, *params, *refs, "output_format"}
    assert set(spec.required) <= set(body)
    if spec.any_of:
        assert any(body.get(side) for side in spec.any_of)
    assert ({"image", "init_image"} - {spec.image_field}).isdisjoint(body)  # style-transfer: init_image only
    assert decode_once(body[spec.image_field]).size == (96, 80)
    for name, ref in refs.items():
        assert decode_once(body[name]).size == ref.size
    for name, value in params.items():
        assert body[name] == value
    assert body["output_format"] == "png"

    assert out.backend == "bedrock" and not out.placeholder
    assert out.image.size == (96, 80) and out.seed == 1234
    assert out.extra["model_id"] == spec.model_id and out.extra["attempts"] == 1
    assert out.note == ""


def test_style_transfer_uses_init_image_and_encodes_style_once(fake: FakeBedrock) -> None:
    editor().edit("style-transfer", picture(), {"style_strength": 0.8}, {"style_image": picture((70, 90))})
    body = fake.requests[0].body
    assert "image" not in body
    assert decode_once(body["init_image"]).size == (96, 80)
    assert decode_once(body["style_image"]).size == (70, 90)
    assert body == {"init_image": body["init_image"], "style_image": body["style_image"], "style_strength": 0.8,
                    "output_format": "png"}


def test_mask_is_sent_as_a_png_once(fake: FakeBedrock) -> None:
    editor().edit("erase-object", picture(), {}, {"mask": picture(mode="L")})
    mask = decode_once(fake.requests[0].body["mask"])
    assert mask.mode == "L" and mask.getpixel((30, 25)) == 255 and mask.getpixel((1, 1)) == 0


def test_output_format_passes_through(fake: FakeBedrock) -> None:
    editor().edit("remove-background", picture(), {"output_format": "webp"}, {})
    assert fake.requests[0].body["output_format"] == "webp"


def test_region_defaults_to_us_west_2_and_is_configurable(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")  # standard config does not move the Stability calls
    editor().edit("upscale-fast", picture(), {}, {})
    monkeypatch.setenv("CAMPAIGN_STABILITY_REGION", "us-east-1")
    editor().edit("upscale-fast", picture(), {}, {})
    editor(region="us-east-2").edit("upscale-fast", picture(), {}, {})
    assert [signed_region(r.headers) for r in fake.requests] == ["us-west-2", "us-east-1", "us-east-2"]


def test_identity_names_the_model() -> None:
    assert BedrockImageEditor().identity("outpaint") == "bedrock:us.stability.stable-outpaint-v1:0"
    assert BedrockImageEditor().identity("style-transfer") == "bedrock:us.stability.stable-style-transfer-v1:0"


# --- responses, retries, errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["Filter reason: prompt", "Filter reason: output image", "Filter reason: input image"])
def test_filter_reason_is_content_filtered(fake: FakeBedrock, reason: str) -> None:
    fake.script(finish(reason))
    with pytest.raises(ContentFiltered, match=reason) as info:
        editor().edit("search-recolor", picture(), {"prompt": "navy", "select_prompt": "sofa"}, {})
    assert "search-recolor" in str(info.value)
    assert len(fake.requests) == 1  # a filter is an answer, not a hiccup: never retried


def test_inference_error_is_retried(fake: FakeBedrock) -> None:
    fake.script(finish("Inference error"), image_ok(seed=77))
    out = editor().edit("structure", picture(), {"prompt": "a loft"}, {})
    assert len(fake.requests) == 2 and out.seed == 77 and out.extra["attempts"] == 2
    assert fake.requests[0].body == fake.requests[1].body


def test_throttle_then_success(fake: FakeBedrock) -> None:
    fake.script(throttle(), image_ok())
    out = editor().edit("upscale-fast", picture(), {}, {})
    assert len(fake.requests) == 2 and out.extra["attempts"] == 2 and out.image.size == (96, 80)


def test_botocore_does_not_retry_on_its_own(fake: FakeBedrock) -> None:
    fake.script(throttle())
    with pytest.raises(Throttled):
        editor(max_attempts=1).edit("upscale-fast", picture(), {}, {})
    assert len(fake.requests) == 1


def test_retries_exhausted_raise_throttled(fake: FakeBedrock) -> None:
    fake.script(*[throttle()] * 3)
    with pytest.raises(Throttled, match="after 3 attempts") as info:
        editor(max_attempts=3).edit("sketch", picture(), {"prompt": "a sofa"}, {})
    assert "ThrottlingException" in str(info.value)
    assert len(fake.requests) == 3 and fake.pending() == 0


def test_server_errors_are_transient(fake: FakeBedrock) -> None:
    fake.script(error(500, "InternalServerException"), error(503, "ServiceUnavailableException"),
                error(429, "ModelNotReadyException"), image_ok())
    out = editor(max_attempts=4).edit("inpaint", picture(), {"prompt": "a cushion"}, {})
    assert out.extra["attempts"] == 4
    fake.script(*[error(500, "InternalServerException")] * 2)
    with pytest.raises(TransientError) as info:
        editor(max_attempts=2).edit("inpaint", picture(), {"prompt": "a cushion"}, {})
    assert not isinstance(info.value, Throttled)


def test_access_denied_is_a_clear_job_failure(fake: FakeBedrock) -> None:
    fake.script(error(403, "AccessDeniedException", "You don't have access to the model with the specified model ID."))
    with pytest.raises(JobFailed) as denied:
        editor().edit("inpaint", picture(), {"prompt": "a cushion"}, {})
    assert len(fake.requests) == 1  # not retried: a subscription in progress and a missing grant look alike
    message = str(denied.value)
    assert "us.stability.stable-image-inpaint-v1:0 in us-west-2: access denied" in message
    assert "aws-marketplace:Subscribe" in message and "can take some minutes" in message
    assert "use-case form" in message and "Model access" not in message  # that console page is retired


def test_a_geographic_profile_is_refused_outside_its_geography_before_any_call(
        fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailable, match=r"us\. cross-Region inference profile.*not eu-west-1"):
        editor(region="eu-west-1").edit("upscale-fast", picture(), {}, {})
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    with pytest.raises(BackendUnavailable, match=r"use eu\.anthropic\.claude-haiku-4-5-20251001-v1:0"):
        BedrockEnhancer(max_attempts=1).enhance("a sofa")
    assert fake.requests == []
    assert BedrockEnhancer("eu.anthropic.claude-haiku-4-5-20251001-v1:0", max_attempts=1).enhance("a sofa")
    assert [r.model_id for r in fake.requests] == ["eu.anthropic.claude-haiku-4-5-20251001-v1:0"]


@pytest.mark.parametrize(("region", "expected"), [
    ("us-east-2", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("eu-west-3", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("ap-northeast-1", "apac.anthropic.claude-haiku-4-5-20251001-v1:0"),
])
def test_the_default_enhancer_follows_the_regions_geography(region: str, expected: str) -> None:
    assert model_for_region(DEFAULT_ENHANCER_MODEL, region) == expected
    assert region_problem(expected, region) is None
    for refused in ("ca-central-1", "sa-east-1", "us-gov-west-1"):
        with pytest.raises(ValueError, match=f"{refused} has no geographic inference profile"):
            model_for_region(DEFAULT_ENHANCER_MODEL, refused)


def test_validation_error_is_not_retried(fake: FakeBedrock) -> None:
    fake.script(error(400, "ValidationException", "Malformed input request"))
    with pytest.raises(JobFailed, match="Malformed input request") as info:
        editor().edit("inpaint", picture(), {"prompt": "a cushion"}, {})
    assert not isinstance(info.value, TransientError)
    assert len(fake.requests) == 1


def test_missing_credentials_mean_backend_unavailable(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BackendUnavailable, match="credentials"):
        editor().edit("upscale-fast", picture(), {}, {})
    assert fake.requests == []


# --- input limits --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["upscale-creative", "upscale-conservative"])
def test_upscaler_rejects_tiny_input(fake: FakeBedrock, tool: str) -> None:
    with pytest.raises(InputRejected, match=r"50x50 px.*at least 64"):
        editor().edit(tool, picture((50, 50)), {"prompt": "a sofa"}, {})
    assert fake.requests == []


@pytest.mark.parametrize("tool", ["upscale-creative", "upscale-conservative"])
def test_upscaler_downscales_large_input_and_says_so(fake: FakeBedrock, tool: str) -> None:
    out = editor().edit(tool, picture((1500, 1000)), {"prompt": "a sofa"}, {})
    sent = decode_once(fake.requests[0].body["image"])
    assert sent.width * sent.height <= 1_048_576
    assert sent.width >= 1250 and abs(sent.width / sent.height - 1.5) < 0.01
    assert out.extra["resized_from"] == [1500, 1000]
    assert out.extra["sent_size"] == list(sent.size)
    assert "downscaled from 1500x1000" in out.note and "1 MP" in out.note


def test_mask_follows_a_downscaled_image(fake: FakeBedrock) -> None:
    big = picture((4200, 2400))  # 10.1 MP: over the general limit
    out = editor().edit("inpaint", big, {"prompt": "a cushion"}, {"mask": picture((4200, 2400), mode="L")})
    body = fake.requests[0].body
    assert decode_once(body["image"]).size == decode_once(body["mask"]).size == tuple(out.extra["sent_size"])


@pytest.mark.parametrize(("params", "message"), [
    ({"left": 2001}, r"left=2001 is outside 0\.\.2000"),
    ({"left": 0, "up": 0}, "at least one of left, right, up, down"),
    ({"prompt": "wider"}, "at least one of left, right, up, down"),
    ({"left": 10.5}, "must be an integer"),
])
def test_outpaint_limits(fake: FakeBedrock, params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputRejected, match=message):
        editor().edit("outpaint", picture(), params, {})
    assert fake.requests == []


@pytest.mark.parametrize(("tool", "params", "refs", "message"), [
    ("upscale-creative", {"prompt": "x", "creativity": 0.9}, {}, r"creativity=0\.9 is outside 0\.1\.\.0\.35"),
    ("remove-background", {"prompt": "x"}, {}, "'prompt' is not a field of this tool"),
    ("erase-object", {}, {}, "missing required field.*mask"),
    ("erase-object", {"mask": "sofa-mask"}, {}, "'mask' is an image field"),
    ("style-transfer", {}, {"style_image": picture(), "mask": picture()}, "'mask' is not an image field"),
    ("style-guide", {"prompt": "x", "aspect_ratio": "7:3"}, {}, "aspect_ratio='7:3' is not one of"),
    ("sketch", {"prompt": "x"}, {}, None),  # control: valid, to show the cases above fail for their stated reason
    ("no-such-tool", {}, {}, "unknown edit tool 'no-such-tool'"),
])
def test_parameters_are_checked_before_sending(fake: FakeBedrock, tool: str, params: dict[str, Any],
                                               refs: dict[str, Image.Image], message: str | None) -> None:
    if message is None:
        editor().edit(tool, picture(), params, refs)
        assert len(fake.requests) == 1
        return
    with pytest.raises(InputRejected, match=message):
        editor().edit(tool, picture(), params, refs)
    assert fake.requests == []


def test_every_tool_rejects_tiny_input(fake: FakeBedrock) -> None:
    for tool in EDIT_TOOLS:
        with pytest.raises(InputRejected, match="at least"):
            editor().edit(tool, picture((20, 300)), all_params(tool), all_refs(tool))
    assert fake.requests == []


# --- prompt enhancement --------------------------------------------------------------------------------------


def test_converse_request_shape_and_parsing(fake: FakeBedrock) -> None:
    fake.script(converse_ok("A honeybee lands on a violet flower,\n\nthe camera slowly pushes in."))
    enhancer = BedrockEnhancer(**FAST)
    text = enhancer.enhance("A bee on a flower.")

    [req] = fake.requests
    assert req.operation == "converse" and req.model_id == DEFAULT_ENHANCER_MODEL
    assert req.raw_path == f"/model/{quote(DEFAULT_ENHANCER_MODEL, safe='')}/converse"
    body = req.body
    assert body["system"] == [{"text": SYSTEM_PROMPT}]
    assert "<Role>" in SYSTEM_PROMPT and "<Task>" in SYSTEM_PROMPT and "1 paragraph" in SYSTEM_PROMPT
    assert body["messages"] == [{"role": "user", "content": [{"text": "<Prompt>\nA bee on a flower.\n</Prompt>"}]}]
    assert body["inferenceConfig"]["temperature"] == 0.1
    assert 0 < body["inferenceConfig"]["maxTokens"] <= 1024
    assert set(body) == {"system", "messages", "inferenceConfig"}  # modelId travels in the URL

    assert text == "A honeybee lands on a violet flower, the camera slowly pushes in."
    assert enhancer.last_usage == {"inputTokens": 180, "outputTokens": 120}
    assert signed_region(req.headers) == "us-west-2"


def test_enhancer_identity_and_model_choice(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    assert BedrockEnhancer().identity() == f"bedrock:{DEFAULT_ENHANCER_MODEL}:{PROMPT_TEMPLATE_VERSION}"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the enhancer honours standard region configuration
    other = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
    enhancer = BedrockEnhancer(model_id=other, **FAST)
    enhancer.enhance("A sofa.")
    assert enhancer.identity().startswith(f"bedrock:{other}:")
    assert fake.requests[0].model_id == other and signed_region(fake.requests[0].headers) == "eu-west-1"


def test_enhancer_retries_throttling(fake: FakeBedrock) -> None:
    fake.script(throttle(), converse_ok("Enhanced."))
    assert BedrockEnhancer(**FAST).enhance("A sofa.") == "Enhanced."
    assert len(fake.requests) == 2


def test_enhancer_refusals_and_empty_answers(fake: FakeBedrock) -> None:
    fake.script(converse_ok("", stop_reason="guardrail_intervened"), converse_ok("  "))
    with pytest.raises(ContentFiltered, match="guardrail_intervened"):
        BedrockEnhancer(**FAST).enhance("A sofa.")
    with pytest.raises(JobFailed, match="no text"):
        BedrockEnhancer(**FAST).enhance("A sofa.")
    with pytest.raises(InputRejected):
        BedrockEnhancer(**FAST).enhance("   ")
    assert len(fake.requests) == 2


# --- no client at import -------------------------------------------------------------------------------------


def test_import_and_construction_make_no_client_and_no_connection(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import socket
        import botocore.session

        def forbidden(*args, **kwargs):
            raise AssertionError("a client or a connection was made")

        botocore.session.Session.create_client = forbidden
        socket.socket.connect = forbidden
        socket.create_connection = forbidden

        import pipeline.backends.bedrock as bedrock
        enhancer = bedrock.BedrockEnhancer()
        editor = bedrock.BedrockImageEditor()
        print(enhancer.identity(), editor.identity("inpaint"))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert "bedrock:us.stability.stable-image-inpaint-v1:0" in done.stdout


# --- pricing -------------------------------------------------------------------------------------------------


def test_pricing_covers_every_tool_and_scales_sensibly() -> None:
    assert set(pricing.IMAGE_EDIT_PRICES) == set(EDIT_TOOLS)
    assert pricing.image_edit_cost("remove-background") == 0.07
    assert all(pricing.image_edit_cost(t) > 0 for t in EDIT_TOOLS)
    assert 0 < pricing.enhance_cost(40) < pricing.enhance_cost(400) < 0.01
    assert pricing.clip_gpu_seconds("cogvideox-5b", 49, 50) == 180.0
    assert pricing.clip_gpu_seconds("cogvideox-5b", 49, 50, gpu="h100") == 90.0
    assert pricing.clip_gpu_seconds("cogvideox1.5-5b", 81, 50, gpu="h100") == 550.0
    assert pricing.clip_gpu_seconds("cogvideox-5b", 49, 25) == 90.0
    assert pricing.clip_gpu_seconds("cogvideox-5b", 25, 50) < 180.0
    g5 = pricing.clip_cost("cogvideox-5b", 49, 50, "ml.g5.4xlarge")
    g5_hourly = pricing.SAGEMAKER_INSTANCES["ml.g5.4xlarge"].hourly
    assert g5 == pytest.approx(180 * pricing.GPU_SPEED["a10g"] / 3600 * g5_hourly)
    p5_hourly = pricing.SAGEMAKER_INSTANCES["ml.p5.48xlarge"].hourly  # H100's published time, whole instance
    assert pricing.clip_cost("cogvideox-5b", 49, 50, "ml.p5.48xlarge") == pytest.approx(90 / 3600 * p5_hourly)
    assert pricing.clip_cost("cogvideox-5b", 49, 50, "ml.p5.48xlarge", clips_in_parallel=8) == pytest.approx(
        90 / 3600 * p5_hourly / 8)
    with pytest.raises(ValueError, match="ml.nope"):
        pricing.clip_cost("cogvideox-5b", 49, 50, "ml.nope")
    assert pricing.orchestration_cost(transitions=1000) == pytest.approx(0.025)
