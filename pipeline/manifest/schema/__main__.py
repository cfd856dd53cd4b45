"""Rewrite campaign.schema.json from the catalog."""

from __future__ import annotations

from pipeline.manifest.schema import SCHEMA_PATH, render_schema

SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
print(f"wrote {SCHEMA_PATH}")
