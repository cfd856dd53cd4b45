"""The studio's Manifest page names the data file, its row (or JSON line) and column for a problem found in a
data file behind `variables: {x: {from: ...}}`, instead of a manifest line; the editor marks only the manifest's
own problems on its lines and still knows the text is invalid. Tested at the functions the page renders with."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest_text
from pipeline.studio.editor import editor_data, problem_markdown, problem_text
from pipeline.studio.plain import literal

MANIFEST = textwrap.dedent("""\
    campaign: sheet-check
    variables:
      product: {from: data/products.csv}
    videos:
      - id: teaser-{product}
        shots:
          - prompt: A {product.fabric} sofa
            frames: 10
    """)


def test_data_file_problems_name_the_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.csv").write_text("id,fabric\nnavy,velvet\nnavy,linen\n", encoding="utf-8")
    with pytest.raises(ManifestInvalid) as raised:
        load_manifest_text(MANIFEST, file="campaign.yaml", base_dir=tmp_path)
    problems = raised.value.problems
    shown = [problem_text(p, manifest_file="campaign.yaml") for p in problems]
    assert "data file data/products.csv, row 3, column 1 (id): duplicate id 'navy' (first at line 2)" in shown
    assert not any("data/products.csv" in s and s.startswith("line ") for s in shown)
    [dup] = [p for p in problems if p.file == "data/products.csv"]  # on the page: the file's name shown as typed
    assert problem_markdown(dup, manifest_file="campaign.yaml") == (
        f"data file {literal('data/products.csv')}, row 3, column 1 ({literal('id')}): "
        f"{literal(dup.message)}")

    (tmp_path / "data" / "products.csv").write_text("id,fabric\nnavy,velvet\n", encoding="utf-8")
    with pytest.raises(ManifestInvalid) as raised:  # the manifest's own problem (frames 10) keeps its line
        load_manifest_text(MANIFEST, file="campaign.yaml", base_dir=tmp_path)
    [manifest_problem] = raised.value.problems
    assert problem_text(manifest_problem, manifest_file="campaign.yaml").startswith(
        "line 8, column 17: videos[0].shots[0].frames: cogvideox-5b cannot make 10 frames")

    data = editor_data(text=MANIFEST, revision=0, problems=[*problems, manifest_problem], manifest_file="campaign.yaml")
    assert [(m["line"], m["col"]) for m in data["problems"]] == [(p.line, p.col) for p in problems if p.file == "campaign.yaml"] + [(8, 17)]  # no mark at the CSV's line 3
    assert data["elsewhere"] == sum(p.file != "campaign.yaml" for p in problems) == 1


def test_a_json_data_file_problem_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "products.json").write_text('[{"id": "a", "fabric": "x"},\n {"id": "a", "fabric": "y"}]',
                                                     encoding="utf-8")
    text = MANIFEST.replace("products.csv", "products.json").replace("            frames: 10\n", "")
    with pytest.raises(ManifestInvalid) as raised:
        load_manifest_text(text, file="campaign.yaml", base_dir=tmp_path)
    shown = [problem_text(p, manifest_file="campaign.yaml") for p in raised.value.problems]
    assert "data file data/products.json, line 2, column 9 (id): duplicate id 'a' (first at line 1)" in shown
