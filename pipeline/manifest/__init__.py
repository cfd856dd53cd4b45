"""Stage 1 of the flow: a manifest file becomes a typed, validated `Campaign` (or every problem, located).

campaign.py     the manifest model and `load_manifest` / `load_manifest_text` (every problem found at once)
yamlsrc.py      safe YAML that keeps the line and column of every key and value
schema/         the JSON Schema (generated from the catalog) and the limits it states
variables.py    `variables:` and the expansion of templated images and videos
model_rules.py  per-model shot rules (CogVideoX, Luma Ray2)
video_rules.py  formats, fit, captions and language of a video
inputs.py       asset files: inside their root, readable, of the kind they claim
image_files.py  image headers read before decoding (pixel limits)
schedule_expr.py EventBridge Scheduler expressions
formats.py, timeline.py, fonts.py   the contract's rules on sizes, frames and caption fonts, shared by later stages
"""

