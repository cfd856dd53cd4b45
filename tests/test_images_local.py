"""The local image-edit backend: real geometry and real pixel properties for the classical tools, honest placeholders."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.backends.images_local import LocalImageEditor
from pipeline.catalog import EDIT_TOOLS
from pipeline.errors import InputRejected

W, H = 320, 240
# The red "product" in the middle of the frame.
OBJ_X0, OBJ_X1, OBJ_Y0, OBJ_Y1 = W // 3, 2 * W // 3, H // 4, 3 * H // 4
OBJECT_RGB = (200, 40, 40)
PLACEHOLDERS = {"sketch", "structure", "style-guide", "search-replace"}


def background(w: int = W, h: int = H) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([60 + 120 * x / w, 80 + 100 * y / h, 150 - 60 * x / w]).astype(np.uint8)


def scene(w: int = W, h: int = H) -> np.ndarray:
    img = background(w, h)
    img[h // 4:3 * h // 4, w // 3:2 * w // 3] = OBJECT_RGB
    return img


def object_mask(w: int = W, h: int = H) -> Image.Image:
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4:3 * h // 4, w // 3:2 * w // 3] = 255
    return Image.fromarray(mask)


def lab_mean(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(axis=0)


STYLE = Image.fromarray(np.full((64, 96, 3), (20, 40, 120), np.uint8))

# A valid request for every tool (params, refs), as the manifest would give it.
REQUESTS: dict[str, tuple[dict[str, Any], dict[str, Image.Image]]] = {
    "erase-object": ({"grow_mask": 5, "seed": 7}, {"mask": object_mask()}),
    "remove-background": ({"output_format": "png"}, {}),
    "search-recolor": ({"prompt": "navy blue velvet", "select_prompt": "sofa"}, {}),
    "search-replace": ({"prompt": "a leather armchair", "search_prompt": "sofa"}, {}),
    "inpaint": ({"prompt": "a wooden floor"}, {"mask": object_mask()}),
    "outpaint": ({"left": 16, "right": 40, "up": 8, "down": 0, "creativity": 0.5}, {}),
    "upscale-creative": ({"prompt": "a sofa", "creativity": 0.3}, {}),
    "upscale-conservative": ({"prompt": "a sofa", "creativity": 0.35}, {}),
    "upscale-fast": ({}, {}),
    "sketch": ({"prompt": "a sofa", "control_strength": 0.7}, {}),
    "structure": ({"prompt": "a sofa", "control_strength": 0.7}, {}),
    "style-guide": ({"prompt": "a sofa", "aspect_ratio": "16:9", "fidelity": 0.5}, {}),
    "style-transfer": ({"style_strength": 0.8}, {"style_image": STYLE}),
}


@pytest.fixture(scope="module")
def editor() -> LocalImageEditor:
    return LocalImageEditor()


def run(editor: LocalImageEditor, tool: str, image: Image.Image | None = None, **overrides: Any):
    params, refs = REQUESTS[tool]
    return editor.edit(tool, image if image is not None else Image.fromarray(scene()), {**params, **overrides}, refs)


# --- every tool ----------------------------------------------------------------------------------------


def test_every_catalog_tool_has_a_request_here() -> None:
    assert set(REQUESTS) == set(EDIT_TOOLS)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("tool", sorted(EDIT_TOOLS))
def test_every_tool_runs_and_says_what_it_is(editor: LocalImageEditor, tool: str, mode: str) -> None:
    outcome = run(editor, tool, Image.fromarray(scene()).convert(mode))
    assert outcome.backend == "local"
    assert outcome.placeholder is (tool in PLACEHOLDERS)
    assert outcome.note and outcome.note.endswith(".")
    assert outcome.image.mode in ("RGB", "RGBA")
    assert editor.identity(tool) == f"local:{tool}:v1"
    assert editor.name == "local"


@pytest.mark.parametrize("tool", sorted(EDIT_TOOLS))
def test_same_input_same_pixels(editor: LocalImageEditor, tool: str) -> None:
    first, second = run(editor, tool), run(editor, tool)
    assert first.image.size == second.image.size
    assert first.image.tobytes() == second.image.tobytes()


@pytest.mark.parametrize("tool", sorted(PLACEHOLDERS))
def test_placeholders_are_labelled_in_the_image(editor: LocalImageEditor, tool: str) -> None:
    corner = np.asarray(run(editor, tool).image.convert("RGB"))[:4, :40]
    assert (corner == 0).all(axis=-1).mean() > 0.5  # the black label box


def test_input_image_is_not_modified(editor: LocalImageEditor) -> None:
    image = Image.fromarray(scene()).convert("RGBA")
    before = image.tobytes()
    for tool in EDIT_TOOLS:
        run(editor, tool, image)
    assert image.tobytes() == before


def test_greyscale_and_palette_inputs_are_accepted(editor: LocalImageEditor) -> None:
    for mode in ("L", "P"):
        out = run(editor, "upscale-fast", Image.fromarray(scene()).convert(mode)).image
        assert out.mode == "RGB" and out.size == (4 * W, 4 * H)


# --- geometry ------------------------------------------------------------------------------------------


def test_upscale_fast_is_exactly_4x(editor: LocalImageEditor) -> None:
    for size in ((W, H), (97, 61)):
        out = run(editor, "upscale-fast", Image.fromarray(scene(*size))).image
        assert out.size == (4 * size[0], 4 * size[1])


@pytest.mark.parametrize("tool", ["upscale-conservative", "upscale-creative"])
def test_about_4k_upscalers_are_4x_capped_at_4_megapixels(editor: LocalImageEditor, tool: str) -> None:
    assert run(editor, tool).image.size == (4 * W, 4 * H)  # 1.2 MP: under the cap
    big = run(editor, tool, Image.fromarray(scene(640, 480))).image
    assert big.width * big.height <= 4 * 1024 * 1024
    assert big.width * big.height > 3.9 * 1024 * 1024
    assert abs(big.width / big.height - 640 / 480) < 0.01


def test_outpaint_adds_exactly_the_pixels_asked_and_keeps_the_original(editor: LocalImageEditor) -> None:
    original = scene()
    outcome = run(editor, "outpaint", Image.fromarray(original), left=30, right=0, up=12, down=50)
    out = np.asarray(outcome.image)
    assert outcome.image.size == (W + 30, H + 12 + 50)
    assert np.array_equal(out[12:12 + H, 30:30 + W], original)
    # The extension continues the edge: the first new column is close to the original's first column.
    assert np.abs(out[12:12 + H, 29].astype(int) - original[:, 0]).mean() < 4
    assert "left 30" in outcome.note


def test_outpaint_keeps_alpha(editor: LocalImageEditor) -> None:
    out = run(editor, "outpaint", Image.fromarray(scene()).convert("RGBA"), down=20).image
    assert out.mode == "RGBA" and out.size == (W + 16 + 40, H + 8 + 20)


def test_style_guide_honours_aspect_ratio(editor: LocalImageEditor) -> None:
    for ratio, expected in (("16:9", 16 / 9), ("9:16", 9 / 16), ("1:1", 1.0)):
        out = run(editor, "style-guide", aspect_ratio=ratio).image
        assert abs(out.width / out.height - expected) < 0.02
    params = {k: v for k, v in REQUESTS["style-guide"][0].items() if k != "aspect_ratio"}
    assert editor.edit("style-guide", Image.fromarray(scene()), params, {}).image.size == (W, H)


# --- pixels ---------------------------------------------------------------------------------------------


def test_remove_background_cuts_out_the_object(editor: LocalImageEditor) -> None:
    outcome = run(editor, "remove-background", Image.fromarray(scene(640, 480)))
    assert outcome.image.mode == "RGBA" and outcome.image.size == (640, 480)
    alpha = np.asarray(outcome.image)[..., 3]
    for y, x in ((0, 0), (0, 639), (479, 0), (479, 639), (5, 320), (240, 20)):
        assert alpha[y, x] < 10, (y, x)
    assert alpha[200:280, 280:360].min() > 245
    # The cut follows the object's edge.
    truth = np.zeros((480, 640), bool)
    truth[120:360, 213:426] = True
    assert np.logical_xor(alpha > 127, truth).mean() < 0.01


def test_erase_object_fills_with_the_surrounding_background(editor: LocalImageEditor) -> None:
    original = scene()
    out = np.asarray(run(editor, "erase-object", Image.fromarray(original)).image).astype(int)
    area = (slice(OBJ_Y0, OBJ_Y1), slice(OBJ_X0, OBJ_X1))
    assert np.abs(out[area] - background()[area]).mean() < 6
    assert np.abs(out[area] - OBJECT_RGB).mean() > 60
    # Beyond the grown mask nothing changes.
    assert np.array_equal(out[:OBJ_Y0 - 8], original[:OBJ_Y0 - 8])


def test_grow_mask_widens_the_erased_area(editor: LocalImageEditor) -> None:
    original = scene()
    image = Image.fromarray(original)
    changed = [
        int((np.asarray(run(editor, "erase-object", image, grow_mask=g).image) != original).any(axis=-1).sum())
        for g in (0, 10)
    ]
    assert changed[1] > changed[0] > 0


def test_inpaint_uses_the_alpha_channel_when_there_is_no_mask(editor: LocalImageEditor) -> None:
    rgba = np.dstack([scene(), np.full((H, W), 255, np.uint8)])
    rgba[OBJ_Y0:OBJ_Y1, OBJ_X0:OBJ_X1, 3] = 0
    params, _ = REQUESTS["inpaint"]
    outcome = LocalImageEditor().edit("inpaint", Image.fromarray(rgba), params, {})
    out = np.asarray(outcome.image).astype(int)
    assert outcome.image.mode == "RGB"
    assert np.abs(out[OBJ_Y0:OBJ_Y1, OBJ_X0:OBJ_X1] - background()[OBJ_Y0:OBJ_Y1, OBJ_X0:OBJ_X1]).mean() < 6
    assert "alpha" in outcome.note


def test_a_mask_of_another_size_is_resized(editor: LocalImageEditor) -> None:
    params, _ = REQUESTS["erase-object"]
    image = Image.fromarray(scene())
    small = editor.edit("erase-object", image, params, {"mask": object_mask().resize((W // 2, H // 2), Image.Resampling.NEAREST)})
    full = editor.edit("erase-object", image, params, {"mask": object_mask()})
    assert small.image.size == (W, H)
    assert f"{W // 2}x{H // 2} to {W}x{H}" in small.note
    diff = np.abs(np.asarray(small.image).astype(int) - np.asarray(full.image)).mean()
    assert diff < 1


def test_style_transfer_moves_colour_toward_the_style(editor: LocalImageEditor) -> None:
    image = Image.fromarray(scene())
    target = lab_mean(STYLE)
    distances = [
        np.linalg.norm(lab_mean(run(editor, "style-transfer", image, style_strength=s).image) - target)
        for s in (0.0, 0.5, 1.0)
    ]
    assert distances[0] == pytest.approx(np.linalg.norm(lab_mean(image) - target), abs=1.0)
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 2


def test_search_recolor_turns_the_subject_navy_and_leaves_the_background(editor: LocalImageEditor) -> None:
    original = scene()
    outcome = run(editor, "search-recolor", Image.fromarray(original))
    out = np.asarray(outcome.image)
    inner = (slice(OBJ_Y0 + 10, OBJ_Y1 - 10), slice(OBJ_X0 + 10, OBJ_X1 - 10))
    r, g, b = out[inner].reshape(-1, 3).mean(axis=0)
    assert b > r + 20 and b > g and r + g + b < 250  # dark blue, was bright red
    assert np.array_equal(out[:OBJ_Y0 - 10], original[:OBJ_Y0 - 10])
    assert "navy" in outcome.note and "select_prompt" in outcome.note


def test_search_recolor_falls_back_to_a_hue_from_the_prompt(editor: LocalImageEditor) -> None:
    first = run(editor, "search-recolor", prompt="something xyzzy")
    second = run(editor, "search-recolor", prompt="something xyzzy")
    assert "hue" in first.note
    assert first.image.tobytes() == second.image.tobytes()
    assert first.extra["target_rgb"] != run(editor, "search-recolor", prompt="another plugh").extra["target_rgb"]


# --- rejections ------------------------------------------------------------------------------------------


def test_unknown_tool_is_rejected_with_its_name(editor: LocalImageEditor) -> None:
    with pytest.raises(InputRejected, match="paint-it-black"):
        editor.edit("paint-it-black", Image.fromarray(scene()), {}, {})
    with pytest.raises(InputRejected, match="paint-it-black"):
        editor.identity("paint-it-black")


@pytest.mark.parametrize(
    ("tool", "params", "refs", "match"),
    [
        ("erase-object", {"grow_mask": 21}, {"mask": object_mask()}, "grow_mask=21"),
        ("erase-object", {"grow": 3}, {"mask": object_mask()}, "'grow'"),
        ("erase-object", {"mask": "sofa-mask"}, {}, "refs"),
        ("erase-object", {}, {}, "mask"),
        ("erase-object", {}, {"mask": Image.new("L", (W, H), 0)}, "selects nothing"),
        ("upscale-fast", {}, {"mask": object_mask()}, "'mask'"),
        ("outpaint", {"prompt": "more room"}, {}, "at least one of"),
        ("outpaint", {"left": 10.5}, {}, "integer"),
        ("style-guide", {"prompt": "x", "aspect_ratio": "7:3"}, {}, "7:3"),
        ("style-transfer", {}, {}, "style_image"),
        ("inpaint", {"prompt": "x"}, {}, "mask"),
    ],
)
def test_bad_requests_are_rejected_with_the_value(
    editor: LocalImageEditor, tool: str, params: dict[str, Any], refs: dict[str, Image.Image], match: str
) -> None:
    with pytest.raises(InputRejected, match=match):
        editor.edit(tool, Image.fromarray(scene()), params, refs)
