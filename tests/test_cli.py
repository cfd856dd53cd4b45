"""CLI surface: plan output and JSON, enhance, and the README staying true to the catalog and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import catalog
from pipeline.cli import build_parser, main
from pipeline.manifest.schema import build_schema

README = Path(__file__).resolve().parents[1] / "README.md"


def test_plan_text_lists_stages_jobs_and_cost(example_manifest: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(example_manifest), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "campaign spring-sofa-launch: 14 job(s), 0 already in" in out
    for stage in ("stage 1", "stage 2", "stage 3", "stage 4"):
        assert stage in out
    assert "to run  clip:teaser/02" in out and "after image:sofa-navy" in out
    assert "estimated cloud cost if run on AWS: $" in out


def test_plan_json_is_machine_readable(example_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(example_manifest), "--json", "--out", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["plan"]["jobs"]) == 14 and not any(doc["cached"].values())
    assert doc["cost"]["total_usd"] > 0
    image_items = [i for i in doc["cost"]["items"] if i["what"].startswith("image edit")]
    assert sum(i["count"] for i in image_items) == 6  # six edit steps in the example


def test_enhance_passthrough_reports_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", "A bee on a flower."]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "A bee on a flower."
    assert "[passthrough: ~" in captured.err and "/226 tokens" in captured.err


def test_status_without_configuration_is_a_clear_error(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMPAIGN_STATE_MACHINE_ARN", raising=False)
    assert main(["status", "--state-machine-arn", ""]) == 2  # a usage error, as argparse's own
    assert "CAMPAIGN_STATE_MACHINE_ARN" in capsys.readouterr().err


def test_readme_documents_every_tool_field_key_model_and_command() -> None:
    text = README.read_text()
    for name, tool in catalog.EDIT_TOOLS.items():
        assert f"`{name}`" in text, name
        for field in tool.fields:
            assert f"`{field}`" in text, (name, field)
    schema = build_schema()
    for key in schema["properties"]:
        assert f"`{key}`" in text, key
    for key in schema["$defs"]["video"]["properties"]:
        assert f"`{key}`" in text, key
    for key in schema["$defs"]["shot"]["properties"]:
        assert f"`{key}`" in text, key
    for model in catalog.VIDEO_MODELS:
        assert f"`{model}`" in text
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"campaign {command}" in text, command
    assert "make demo" in text and "make test" in text
