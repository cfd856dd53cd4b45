"""Data merge: `variables: {product: {from: products.csv}}` (CSV with or without BOM, XLSX, JSON), errors located
in the data file, `where:` and `id_field:`, and content keys that follow only the rows an item uses."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main
from pipeline.errors import ManifestInvalid
from pipeline.manifest.campaign import load_manifest
from pipeline.manifest.variables import MAX_EXPANDED_JOBS

ROWS = [
    {"id": "navy", "fabric": "navy blue velvet", "market": "de", "price": "899"},
    {"id": "mustard", "fabric": "mustard yellow linen", "market": "fr", "price": "749"},
    {"id": "sage", "fabric": "sage green cord", "market": "de", "price": "1099.5"},
]

MANIFEST = """\
    campaign: data-merge
    variables:
      product: {{from: {source}{extra}}}
    defaults:
      enhance: false
      video: {{frames: 9}}
    videos:
      - id: teaser-{{product}}
        shots:
          - prompt: A {{product.fabric}} sofa in a sunlit loft
            caption: "{{product.fabric}}"
    """


def write_csv(path: Path, rows: list[dict[str, str]], *, bom: bool = False) -> Path:
    lines = [",".join(rows[0])] + [",".join(_csv_cell(v) for v in r.values()) for r in rows]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\r\n".join(lines) + "\r\n").encode())
    return path


def _csv_cell(v: str) -> str:
    return f'"{v}"' if "," in v or '"' in v else v


def write_xlsx(path: Path, rows: list[dict[str, str]], *, sheet: str = "Products") -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Notes"  # the first sheet is not the products: `sheet:` picks them
    book.active.append(["nothing to see here"])
    ws = book.create_sheet(sheet)
    ws.append(list(rows[0]))
    for r in rows:  # numbers as numbers, the way a spreadsheet keeps them
        ws.append([float(v) if k == "price" else v for k, v in r.items()])
    book.save(path)
    return path


def manifest(write_campaign: Callable[..., Path], source: str, extra: str = "") -> Path:
    return write_campaign(MANIFEST.format(source=source, extra=extra))


def plan_keys(path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["plan", str(path), "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    return {j["id"]: j["key"] for j in doc["plan"]["jobs"]}


def problem_lines(err: ManifestInvalid) -> list[str]:
    """The problems as validate prints them, less the note that more may follow (see errors())."""
    return [str(p) for p in err.problems if not str(p).endswith("so more problems may follow")]


def errors(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # Where a data file stops a template from expanding, validate adds one note at `variables` that the template's
    # own placeholder values are checked once that is fixed (more may follow): the data file's problems are the rest.
    lines = captured.out.splitlines()
    return [line for line in lines if not line.endswith("so more problems may follow")]


def test_csv_bom_xlsx_and_json_give_the_same_plan(write_campaign: Callable[..., Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "products.csv", ROWS)
    write_csv(tmp_path / "products-bom.csv", ROWS, bom=True)
    write_xlsx(tmp_path / "products.xlsx", ROWS)
    (tmp_path / "products.json").write_text(json.dumps(
        [{**r, "price": float(r["price"])} for r in ROWS], indent=2), encoding="utf-8")

    c = load_manifest(manifest(write_campaign, "products.csv"))
    assert [v.id for v in c.videos] == ["teaser-navy", "teaser-mustard", "teaser-sage"]
    assert c.videos[1].shots[0].prompt == "A mustard yellow linen sofa in a sunlit loft"
    assert c.videos[1].variant is not None and c.videos[1].variant.combination == (("product", "mustard"),)
    assert c.raw["variables"] == {"product": {"from": "products.csv"}}  # what submit uploads: the reference

    csv_keys = plan_keys(manifest(write_campaign, "products.csv"), tmp_path / "o", capsys)
    assert len(csv_keys) == 6  # a clip and a video per row
    for source, extra in (("products-bom.csv", ""), ("products.xlsx", ", sheet: Products"), ("products.json", "")):
        assert plan_keys(manifest(write_campaign, source, extra), tmp_path / "o", capsys) == csv_keys, source


def test_changing_one_row_changes_only_that_rows_keys(write_campaign: Callable[..., Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "products.csv", ROWS)
    path = manifest(write_campaign, "products.csv")
    before = plan_keys(path, tmp_path / "o", capsys)
    # a column no template reads changes nothing; a field the sage row's prompt uses changes sage's jobs only
    write_csv(tmp_path / "products.csv", [{**r, "price": "1"} for r in ROWS])
    assert plan_keys(path, tmp_path / "o", capsys) == before
    write_csv(tmp_path / "products.csv", [r if r["id"] != "sage" else {**r, "fabric": "olive wool"} for r in ROWS])
    after = plan_keys(path, tmp_path / "o", capsys)
    changed = sorted(j for j in before if before[j] != after[j])
    assert changed and all("sage" in j for j in changed)
    assert sorted(j for j in before if "sage" in j) == changed


def test_where_and_id_field_pick_rows(write_campaign: Callable[..., Path], tmp_path: Path) -> None:
    rows = [{"sku": r["id"], **{k: v for k, v in r.items() if k != "id"}} for r in ROWS]
    write_csv(tmp_path / "skus.csv", rows)
    c = load_manifest(manifest(write_campaign, "skus.csv", ", id_field: sku, where: {market: de}"))
    assert [v.id for v in c.videos] == ["teaser-navy", "teaser-sage"]
    write_csv(tmp_path / "products.csv", ROWS)
    c = load_manifest(manifest(write_campaign, "products.csv", ", where: {price: [749, 899]}"))
    assert [v.id for v in c.videos] == ["teaser-navy", "teaser-mustard"]  # numbers compare as the sheet's text


def test_data_file_errors_are_located_at_their_row_and_column(write_campaign: Callable[..., Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "products.csv").write_text(
        "fabric,id\n"
        "velvet,navy\n"
        "linen,navy\n"  # duplicate
        "cord,\n"  # empty id
        "=HYPERLINK(\"http://x\"),Navy Blue\n",  # unsafe id; the formula-looking cell is only text
        encoding="utf-8")
    path, data = manifest(write_campaign, "products.csv"), tmp_path / "products.csv"
    assert errors(path, capsys) == [
        f"{data}:3:2: error: id: duplicate id 'navy' (first at line 2)",
        f"{data}:4:2: error: id: empty id: every row needs one (it names the row's outputs)",
        f"{data}:5:2: error: id: id 'Navy Blue' is not file-name safe: use a-z, 0-9, '-' and '_', 1 to 63 "
        "characters, starting with a letter or digit",
    ]
    (tmp_path / "products.csv").write_text("fabric,name\nvelvet,navy\n", encoding="utf-8")
    assert errors(path, capsys) == [
        f"{data}:1:1: error: <document>: no 'id' column (columns: fabric, name); add one, or name the column "
        "that identifies a row with id_field:"]
    (tmp_path / "products.csv").write_text("id,fabric\nnavy,velvet,extra\n", encoding="utf-8")
    assert errors(path, capsys) == [f"{data}:2:3: error: <document>: this row has 3 fields, the header names 2"]


def test_a_field_the_sheet_lacks_is_located_at_the_template(write_campaign: Callable[..., Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "products.csv", ROWS)
    path = write_campaign(MANIFEST.format(source="products.csv", extra="").replace("product.fabric} sofa",
                                                                                   "product.fabrik} sofa"))
    assert errors(path, capsys) == [
        f"{path}:10:17: error: videos[0].shots[0].prompt: {{product.fabrik}}: products.csv has no column "
        "'fabrik'; did you mean 'fabric'? (columns: id, fabric, market, price)"]


def test_manifest_side_problems_name_the_file(write_campaign: Callable[..., Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_csv(tmp_path / "products.csv", ROWS)
    lines = errors(manifest(write_campaign, "missing.csv"), capsys)
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'campaign.yaml'}:3:19: error: variables.product.from: "
                                                   "data file 'missing.csv' not found")
    lines = errors(manifest(write_campaign, "products.csv", ", where: {markt: de}"), capsys)
    assert lines == [f"{tmp_path / 'campaign.yaml'}:3:41: error: variables.product.where.markt: products.csv has no "
                     "column 'markt'; did you mean 'market'? (columns: id, fabric, market, price)"]
    lines = errors(manifest(write_campaign, "products.csv", ", sheet: One"), capsys)
    assert lines == [f"{tmp_path / 'campaign.yaml'}:3:33: error: variables.product.sheet: sheet: only applies to an "
                     "XLSX data file"]
    (tmp_path / "outside.csv").write_text("id\na\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    lines = errors(write_campaign(MANIFEST.format(source="../outside.csv", extra=""), "sub/c.yaml"), capsys)
    assert len(lines) == 1 and "outside the manifest's folder" in lines[0]


def test_too_many_rows_is_refused_at_the_first_row_past_the_limit(write_campaign: Callable[..., Path],
                                                                  tmp_path: Path) -> None:
    body = "".join(f"p{i}\n" for i in range(MAX_EXPANDED_JOBS + 1))
    (tmp_path / "products.csv").write_text("id\n" + body, encoding="utf-8")
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(manifest(write_campaign, "products.csv"))
    assert problem_lines(exc.value) == [
        f"{tmp_path / 'products.csv'}:{MAX_EXPANDED_JOBS + 2}:1: error: <document>: more than {MAX_EXPANDED_JOBS} rows (the job "
        "limit): split the data file or narrow it with where:"]


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("bad.json", b'[{"id": "a"},\n {"id": }]', "bad.json:2:9: error: <document>: not valid JSON: Expecting value"),
    ("nested.json", b'[{"id": "a",\n  "tags": ["x"]}]',
     "nested.json:2:11: error: tags: row 1: tags is a list; a field is a string, number or boolean"),
    ("dup.json", b'[{"id": "a"},\n {"id": "a"}]', "dup.json:2:9: error: id: duplicate id 'a' (first at line 1)"),
    ("latin1.csv", "id\ncaf\xe9\n".encode("latin-1"),
     "latin1.csv:2:4: error: <document>: not UTF-8 text; save the sheet as CSV UTF-8"),
    ("fake.xlsx", b"id\na\n", "fake.xlsx:1:1: error: <document>: not a readable XLSX workbook (BadZipFile)"),
])
def test_unreadable_data_files_are_one_located_line(write_campaign: Callable[..., Path], tmp_path: Path,
                                                    name: str, content: bytes, expected: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestInvalid) as exc:
        load_manifest(manifest(write_campaign, name))
    assert problem_lines(exc.value) == [f"{tmp_path}/{expected}"]


@pytest.mark.slow
def test_a_20_row_sheet_in_three_formats_runs_and_one_changed_row_remakes_only_its_outputs(tmp_path: Path) -> None:
    """The issue's "Done when": 20 rows x 3 formats end to end on the preview backend, then one row edited."""
    rows = [{"id": f"p{i:02d}", "fabric": f"fabric {i}", "colour": f"colour {i}"} for i in range(20)]
    write_csv(tmp_path / "products.csv", rows)
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""\
        campaign: sheet-e2e
        variables:
          product: {from: products.csv}
        defaults: {enhance: false, video: {frames: 9}}
        videos:
          - id: ad-{product}
            formats: ["16:9", "9:16", "1:1"]
            captions: burn
            shots:
              - prompt: A {product.fabric} sofa
                caption: "{product.colour}"
        """), encoding="utf-8")
    out = tmp_path / "out"

    def run() -> tuple[dict[str, Any], Path]:
        assert main(["run", str(tmp_path / "c.yaml"), "--out", str(out), "--quiet", "--workers", "2"]) == 0
        latest = json.loads((out / "runs" / "sheet-e2e" / "latest.json").read_text())
        path = out / "runs" / "sheet-e2e" / latest["report"]
        return json.loads(path.read_text()), path.parent

    first, run_dir = run()
    assert first["status"] == "succeeded" and first["jobs"]["executed"] == 40  # a clip and a video per row
    assert sorted(v["id"] for v in first["videos"]) == [f"ad-p{i:02d}" for i in range(20)]
    for v in first["videos"]:
        assert [(f["format"], f["width"], f["height"]) for f in v["formats"]] == [
            ("16:9", 854, 480), ("9:16", 480, 854), ("1:1", 480, 480)]
        assert all((run_dir / f["path"]).read_bytes()[4:8] == b"ftyp" for f in v["formats"])
    assert next(v for v in first["videos"] if v["id"] == "ad-p07")["clips"][0]["prompt"] == "A fabric 7 sofa"

    rows[7]["fabric"] = "olive wool"
    write_csv(tmp_path / "products.csv", rows)
    second, _ = run()
    remade = sorted(r["job"] for r in second["job_results"] if r["status"] == "executed")
    assert remade == ["clip:ad-p07/01", "video:ad-p07"]
    assert second["jobs"] == {"total": 40, "executed": 2, "cached": 38, "failed": 0, "skipped": 0}
