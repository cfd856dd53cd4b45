"""The manifest's JSON Schema: built from the catalog, shipped as campaign.schema.json for editors.

`python -m pipeline.manifest.schema` rewrites the shipped file; a test checks that it matches the catalog.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pipeline import catalog
from pipeline.manifest.brand import brand_schema
from pipeline.manifest.credentials import credentials_schema
from pipeline.manifest.notify import notify_schema
from pipeline.manifest.voice_rules import (
    loudness_schema,
    shot_properties,
    translate_schema,
    video_properties,
    voice_schema,
)

SCHEMA_PATH = Path(__file__).with_name("campaign.schema.json")
SCHEMA_ID = "https://github.com/campaign-pipeline/campaign/pipeline/manifest/schema/campaign.schema.json"

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Variables (pipeline/manifest/variables.py): a name, and ids/references that may hold `{name}` / `{name.field}`
# placeholders; an expanded id is checked against ID_PATTERN.
VARIABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PLACEHOLDER = rf"\{{{VARIABLE_NAME}(?:\.{VARIABLE_NAME})?\}}"
TEMPLATE_ID_PATTERN = rf"^(?:[a-z0-9]|{_PLACEHOLDER})(?:[a-z0-9_-]|{_PLACEHOLDER})*$"
MAX_TEMPLATE_ID_CHARS = 200
CAMPAIGN_PATTERN = r"^[a-z0-9][a-z0-9-]{1,46}[a-z0-9]$"
MAX_SHOT_PROMPT_CHARS = 4000  # CogVideoX shots (manifest.py holds them to it); Ray2's limit is the catalog's
MAX_CROSSFADE_S = 10.0
MAX_BUDGET_USD = 1_000_000
APPROVAL_MODES = ("before-render",)
MAX_CAPTION_CHARS = 200
# Formats and captions (pipeline/manifest/formats.py holds their meaning; the names live here, the schema's one place)
FORMATS = ("16:9", "9:16", "1:1", "4:5")
FITS = ("crop", "blur-pad", "pad")
CAPTION_MODES = ("sidecar", "burn", "both")
# BCP 47 (`en`, `pt-BR`); `en_US`, the POSIX locale spelling, is accepted and written as `en-US`.
LANGUAGE_PATTERN = r"^(?:[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*|\{[A-Za-z_][A-Za-z0-9_.]*\})$"


def _tool_schema(tool: catalog.EditTool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": ["object", "null"],
        "description": f"{tool.summary} (Bedrock model {tool.model_id})",
        "additionalProperties": False,
        "properties": {name: spec.json_schema() for name, spec in tool.fields.items()},
    }
    if tool.required:
        body["required"] = list(tool.required)
        body["type"] = "object"
    if tool.any_of:
        body["anyOf"] = [{"required": [name]} for name in tool.any_of]
        body["type"] = "object"
    return body


def build_schema() -> dict[str, Any]:
    models = catalog.all_video_model_names()
    lo_steps, hi_steps = catalog.STEPS_RANGE
    lo_g, hi_g = catalog.GUIDANCE_RANGE
    video_settings = {
        "model": {"enum": models, "description": "video model from the registry (`campaign models list`): CogVideoX "
                                                 "(its I2V variant is used when a shot has `image`), Wan2.2 TI2V (text- "
                                                 f"and image-to-video in one), or {catalog.RAY2.name} (Luma Ray2 on Bedrock)"},
        "steps": {"type": "integer", "minimum": lo_steps, "maximum": hi_steps, "description": "denoising steps"},
        "guidance": {"type": "number", "minimum": lo_g, "maximum": hi_g, "description": "classifier-free guidance scale"},
        "seed": {"type": "integer", "minimum": 0, "maximum": catalog.VIDEO_SEED_MAX, "description": "generation seed"},
        "negative_prompt": {"type": "string", "maxLength": MAX_SHOT_PROMPT_CHARS},
        # Luma Ray2 only (manifest.py refuses them on a CogVideoX shot)
        "duration": {"enum": list(catalog.RAY2_DURATIONS_S), "description": f"{catalog.RAY2.name}: clip length in seconds"},
        "resolution": {"enum": list(catalog.RAY2_RESOLUTIONS), "description": f"{catalog.RAY2.name}: output resolution"},
        "aspect_ratio": {"enum": list(catalog.RAY2_ASPECT_RATIOS), "description": f"{catalog.RAY2.name}: output aspect ratio"},
        "loop": {"type": "boolean", "description": f"{catalog.RAY2.name}: whether the clip loops seamlessly"},
    }
    all_frames = sorted({f for m in catalog.VIDEO_MODELS.values() for f in m.frame_choices})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Campaign manifest",
        "description": "A batch of Stability image edits and CogVideoX, Wan2.2 or Luma Ray2 clips joined into videos.",
        "type": "object",
        "additionalProperties": False,
        "required": ["campaign"],
        "properties": {
            "campaign": {"type": "string", "pattern": CAMPAIGN_PATTERN,
                         "description": "names the run, its outputs and executions: a-z, 0-9 and '-', 3 to 48 characters"},
            "description": {"type": "string", "maxLength": 2000},
            "schedule": {"type": "string", "pattern": r"^(cron|rate|at)\(.*\)$",
                         "description": "EventBridge Scheduler expression: cron(...), rate(...) or at(...)"},
            "budget": {
                "type": "object", "additionalProperties": False, "required": ["max_usd"],
                "description": "spending limit: a run whose estimated cost for what is not cached exceeds it is "
                               "refused before any job starts",
                "properties": {"max_usd": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_BUDGET_USD,
                                           "description": "US dollars, on the cloud cost estimate of `campaign plan`"}},
            },
            "commercial": {"type": "boolean",
                           "description": "the outputs are for commercial use: every video model used must have a "
                                          "licence that allows it (`campaign models list` shows each licence)"},
            "approval": {"enum": list(APPROVAL_MODES),
                         "description": "before-render: stop after prompt enhancement and image edits until the run "
                                        "is approved (campaign approve), before any clip is rendered"},
            "credentials": credentials_schema(),
            "notify": notify_schema(),
            "brand": {**brand_schema(), "type": ["object", "string"], "minLength": 1, "maxLength": 1024,
                      "description": "the brand kit inline, or a YAML file beside the manifest that holds it"},
            "defaults": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "enhance": {"type": "boolean", "description": "prompt enhancement for every shot unless a shot says otherwise"},
                    "enhancer_model": {"type": "string", "minLength": 1, "maxLength": 200,
                                       "description": "Bedrock model or inference profile id for prompt enhancement"},
                    "video": {"type": "object", "additionalProperties": False,
                              "properties": {k: v for k, v in video_settings.items() if k != "negative_prompt"}
                              | {"frames": {"type": "integer", "minimum": min(all_frames), "maximum": max(all_frames),
                                             "description": "clip length in frames; each model has its own rule"}}},
                    "voice": {"$ref": "#/$defs/voice"},
                    "translate": translate_schema(),
                    "loudness": loudness_schema(),
                },
            },
            "assets": {
                "type": "object",
                "description": "input files: a path relative to the manifest, or s3://bucket/key",
                "propertyNames": {"pattern": ID_PATTERN},
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 1024},
            },
            "variables": {
                "type": "object",
                "description": "named lists of values; an image or video that uses {name} or {name.field} is made "
                               "once per combination of the variables it uses ({{ and }} are literal braces)",
                "additionalProperties": {
                    # a list of values, or a data file whose rows are the values (pipeline/manifest/data_files.py)
                    "type": ["array", "object"], "minItems": 1,
                    "required": ["from"], "additionalProperties": False,
                    "properties": {
                        "from": {"type": "string", "minLength": 1, "maxLength": 1024,
                                 "description": "a CSV, XLSX or JSON file beside the manifest (or s3:// in the "
                                                "cloud): one row per value, the header names the fields"},
                        "sheet": {"type": "string", "minLength": 1, "description": "XLSX: the sheet to read "
                                                                                   "(the first by default)"},
                        "id_field": {"type": "string", "minLength": 1,
                                     "description": "the column that names each row (`id` by default)"},
                        "where": {"type": "object", "minProperties": 1,
                                  "description": "keep only rows whose field equals the value (or one of the list)",
                                  "additionalProperties": {"type": ["string", "number", "boolean", "array"],
                                                           "items": {"type": ["string", "number", "boolean"]}}},
                    },
                    "items": {
                        "type": ["string", "number", "boolean", "object"],
                        "description": "a plain value, or a mapping whose `id` names it and whose other fields "
                                       "{name.field} reads",
                        "required": ["id"],
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                },
            },
            "images": {"type": "array", "items": {"$ref": "#/$defs/image"}},
            "videos": {"type": "array", "items": {"$ref": "#/$defs/video"}},
        },
        "$defs": {
            "id": {"type": "string", "pattern": TEMPLATE_ID_PATTERN, "maxLength": MAX_TEMPLATE_ID_CHARS,
                   "description": "a-z, 0-9, '-' and '_', 1 to 63 characters, starting with a letter or digit; "
                                  "may use {name} / {name.field} placeholders"},
            "ref": {"type": "string", "pattern": TEMPLATE_ID_PATTERN, "maxLength": MAX_TEMPLATE_ID_CHARS,
                    "description": "an asset id or an image id (placeholders allowed)"},
            "for_each": {
                "type": ["array", "object"],
                "description": "which combinations this item is made for: variable names ([market, product]), "
                               "variables narrowed to some values ({market: [de, fr]}), or explicit combinations "
                               "([{market: de, product: sofa}])",
            },
            "edit": {
                "type": "object",
                "description": "one Stability tool and its parameters, e.g. `upscale-fast: {}`",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"enum": list(catalog.EDIT_TOOLS)},
                "properties": {name: {"$ref": f"#/$defs/tool-{name}"} for name in catalog.EDIT_TOOLS},
            },
            **{f"tool-{name}": _tool_schema(tool) for name, tool in catalog.EDIT_TOOLS.items()},
            "image": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "from", "edits"],
                "properties": {
                    "id": {"$ref": "#/$defs/id"},
                    "for_each": {"$ref": "#/$defs/for_each"},
                    "from": {"$ref": "#/$defs/ref"},
                    "edits": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/edit"}},
                },
            },
            "shot": {
                "type": "object",
                "additionalProperties": False,
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1,
                               "maxLength": max(MAX_SHOT_PROMPT_CHARS, catalog.RAY2_PROMPT_MAX_CHARS)},
                    "image": {"$ref": "#/$defs/ref", "description": "start image: image-to-video"},
                    "enhance": {"type": "boolean"},
                    "frames": {"type": "integer", "minimum": min(all_frames), "maximum": max(all_frames),
                               "description": "clip length in frames: 8N+1 (N<=6) for CogVideoX 1.0, 16N+1 (N<=10) for 1.5"},
                    **{k: v for k, v in video_settings.items()},
                    "caption": {"type": "string", "minLength": 1, "maxLength": MAX_CAPTION_CHARS,
                                "description": "text shown for this shot's span: a WebVTT cue, burned in with "
                                               "`captions: burn` (placeholders allowed)"},
                    **shot_properties(),
                },
            },
            "video": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "shots"],
                "properties": {
                    "id": {"$ref": "#/$defs/id"},
                    "for_each": {"$ref": "#/$defs/for_each"},
                    "shots": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/shot"}},
                    "transition": {
                        "type": "object", "additionalProperties": False, "required": ["crossfade"],
                        "properties": {"crossfade": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_CROSSFADE_S,
                                                     "description": "seconds of overlap between neighbouring clips"}},
                    },
                    "continuity": {"enum": ["last-frame"],
                                   "description": "each shot after the first starts from the previous clip's last frame"},
                    "color_match": {"type": "boolean",
                                    "description": "with continuity: match each continued shot's start frame to the "
                                                   "first clip's colours, so the look does not drift"},
                    "audio": {
                        "type": "object", "additionalProperties": False, "required": ["asset"],
                        "properties": {
                            "asset": {"$ref": "#/$defs/ref"},
                            "fade_in": {"type": "number", "minimum": 0, "maximum": 60},
                            "fade_out": {"type": "number", "minimum": 0, "maximum": 60},
                            "volume": {"type": "number", "minimum": 0, "maximum": 4},
                        },
                    },
                    "title": {"$ref": "#/$defs/card"},
                    "end_card": {"$ref": "#/$defs/card"},
                    "brand": {"type": "boolean", "description": "false: this video without the campaign's brand kit"},
                    "formats": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(FORMATS)},
                                "description": "one delivered file per aspect ratio, made from the same clips "
                                               "(default: the clips' own shape)"},
                    "fit": {"enum": list(FITS), "description": "how clips fill a format of another shape: crop (around "
                                                              "the region of most detail and motion), blur-pad, pad"},
                    "captions": {"enum": list(CAPTION_MODES),
                                 "description": "shots' captions as a WebVTT sidecar file, burned into the picture, or both"},
                    "language": {"type": "string", "pattern": LANGUAGE_PATTERN,
                                 "description": "BCP 47 language of the captions (the <track> srclang), e.g. de or pt-BR"},
                    **video_properties(),
                },
            },
            "voice": voice_schema(),
            "card": {
                "type": "object", "additionalProperties": False, "required": ["text"],
                "description": "a text card before (title) or after (end_card) the shots",
                "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": 300},
                    "duration": {"type": "number", "exclusiveMinimum": 0, "maximum": 30},
                    "color": {"type": "string", "pattern": r"^#[0-9a-fA-F]{6}$"},
                    "text_color": {"type": "string", "pattern": r"^#[0-9a-fA-F]{6}$"},
                },
            },
        },
    }


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


@functools.cache
def load_schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return result
