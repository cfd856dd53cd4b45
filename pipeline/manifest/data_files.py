"""Data files behind `variables: {name: {from: products.csv}}`: CSV, XLSX and JSON rows become a variable's
values, every problem located at the data file's row and column (`products.csv:4:1: error: ...`).

A data file is user input like the manifest: its size, rows, columns and cells are bounded, and a cell that
looks like a formula (`=HYPERLINK(...)`) is text, never evaluated (XLSX cells are read as the values the sheet
last saved, not recomputed).
"""

from __future__ import annotations

import csv
import datetime
import difflib
import io
import json
import posixpath
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.errors import Problem, shown
from pipeline.manifest.inputs import outside_problem
from pipeline.manifest.schema import ID_PATTERN
from pipeline.manifest.yamlsrc import Path as DocPath
from pipeline.manifest.yamlsrc import Source

MAX_DATA_BYTES = 16 * 1024 * 1024  # a product sheet is KBs; far past this is a mistake or an attack
MAX_COLUMNS = 256
MAX_CELL_CHARS = 4000  # as long as a shot prompt may be (schema.MAX_SHOT_PROMPT_CHARS)
DATA_EXTENSIONS = (".csv", ".xlsx", ".json")
DEFAULT_ID_FIELD = "id"
_ID = re.compile(ID_PATTERN)

# Reads a data file's bytes by its location as written (`from:`); raises DataFileUnreadable with the reason.
Reader = Callable[[str], bytes]


class DataFileUnreadable(Exception):
    """A data file that cannot be read at all (missing, too large, outside the manifest's folder)."""


@dataclass(frozen=True)
class Row:
    id: str
    fields: dict[str, str]  # column -> text (the id column included)
    line: int  # the row's line in the data file (CSV line, XLSX row, JSON line of its object)


@dataclass(frozen=True)
class DataTable:
    name: str  # the file as errors name it (beside the manifest's own name)
    location: str  # as written in `from:`
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


def local_reader(base_dir: Path, *, allow_outside: Sequence[Path] = ()) -> Reader:
    """Data files resolve inside the manifest's folder (or an --allow-outside folder), like local assets."""

    def read(location: str) -> bytes:
        if "://" in location:
            raise DataFileUnreadable(f"data file {shown(location)}: s3:// data files are read by the cloud's Plan "
                                     "step; locally, give a path relative to the manifest")
        path = base_dir / location
        try:
            if not path.is_file():
                raise DataFileUnreadable(f"data file {shown(location)} not found (looked in {path})")
            bad = outside_problem(base_dir, location, allow_outside=allow_outside)
            if bad:
                raise DataFileUnreadable(bad.replace("asset file", "data file", 1))
            with open(path, "rb") as fh:
                return _bounded(fh.read(MAX_DATA_BYTES + 1), location)
        except OSError as exc:
            raise DataFileUnreadable(f"data file {shown(location)} cannot be read ({exc.strerror or exc})") from None

    return read


def _bounded(data: bytes, location: str) -> bytes:
    if len(data) > MAX_DATA_BYTES:
        raise DataFileUnreadable(f"data file {shown(location)} is larger than {MAX_DATA_BYTES // (1024 * 1024)} MiB")
    return data


def load_table(src: Source, path: DocPath, spec: dict[str, Any], *, reader: Reader, max_rows: int,
               problems: list[Problem]) -> DataTable | None:
    """Read the data file `spec` (`from`, `sheet`, `id_field`, `where`; shape checked by the schema) named at
    `path` of the manifest; None after a problem (appended to `problems`)."""
    location = str(spec["from"])
    suffix = PurePosixPath(location.lower()).suffix
    if suffix not in DATA_EXTENSIONS:
        problems.append(src.problem(path + ("from",), f"data file {shown(location)} must be CSV, XLSX or JSON "
                                    f"({', '.join(DATA_EXTENSIONS)})"))
        return None
    if "sheet" in spec and suffix != ".xlsx":
        problems.append(src.problem(path + ("sheet",), "sheet: only applies to an XLSX data file", key=True))
        return None
    try:
        data = reader(location)
    except DataFileUnreadable as exc:
        problems.append(src.problem(path + ("from",), str(exc)))
        return None
    name = location if "://" in location else posixpath.normpath(posixpath.join(posixpath.dirname(src.file), location))
    found: list[Problem] = []
    at = _Locator(name, found)
    if suffix == ".csv":
        header, records = _csv_rows(data, at, max_rows)
    elif suffix == ".xlsx":
        header, records = _xlsx_rows(data, spec.get("sheet"), at, max_rows)
    else:
        header, records = _json_rows(data, at, max_rows)
    table = None if header is None else _table(name, location, header, records, str(spec.get("id_field", DEFAULT_ID_FIELD)), at)
    if table is not None and not found and "where" in spec:
        table = _where(src, path + ("where",), table, spec["where"], found)
    problems.extend(found)
    return None if found else table


class _Locator:
    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.name, self.problems = name, problems

    def __call__(self, line: int, col: int, column: str, message: str) -> None:
        self.problems.append(Problem(self.name, line, col, column, message))


# A record: its line, and per cell (text, line, column) in header order.
_Record = tuple[int, list[tuple[str, int, int]]]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def _too_many(at: _Locator, line: int, max_rows: int) -> None:
    at(line, 1, "", f"more than {max_rows} rows (the job limit): split the data file or narrow it with where:")


def _csv_rows(data: bytes, at: _Locator, max_rows: int) -> tuple[list[str] | None, list[_Record]]:
    try:
        text = data.decode("utf-8-sig")  # Excel writes "CSV UTF-8" with a byte order mark
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        at(line, exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1, "", "not UTF-8 text; save the sheet as CSV UTF-8")
        return None, []
    if "\x00" in text:
        at(1, 1, "", "this is not a text file (it contains NUL bytes)")
        return None, []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[_Record] = []
    end = 0
    try:
        for fields in reader:
            line, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue  # blank lines separate nothing
            if header is None:
                header = fields
                continue
            if len(records) >= max_rows:
                _too_many(at, line, max_rows)
                return None, []
            records.append((line, [(f, line, c) for c, f in enumerate(fields, 1)]))
    except csv.Error as exc:
        at(reader.line_num, 1, "", f"not valid CSV: {exc}")
        return None, []
    if header is None:
        at(1, 1, "", "the data file is empty: the first row names the fields (one of them `id`)")
    return header, records


def _xlsx_rows(data: bytes, sheet: Any, at: _Locator, max_rows: int) -> tuple[list[str] | None, list[_Record]]:
    import openpyxl  # imported here: only XLSX data files need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        at(1, 1, "", f"not a readable XLSX workbook ({type(exc).__name__})")
        return None, []
    try:
        if sheet is None:
            ws = book.worksheets[0]
        elif str(sheet) in book.sheetnames:
            ws = book[str(sheet)]
        else:
            at(1, 1, "", f"no sheet {shown(str(sheet))} (sheets: {', '.join(book.sheetnames)})")
            return None, []
        header: list[str] | None = None
        records: list[_Record] = []
        for r, values in enumerate(ws.iter_rows(values_only=True), 1):
            cells = [_cell(v) for v in values]
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = cells
                continue
            if len(records) >= max_rows:
                _too_many(at, r, max_rows)
                return None, []
            records.append((r, [(c, r, i) for i, c in enumerate(cells, 1)]))
        if header is None:
            at(1, 1, "", "the sheet is empty: the first row names the fields (one of them `id`)")
        return header, records
    finally:
        book.close()


def _json_rows(data: bytes, at: _Locator, max_rows: int) -> tuple[list[str] | None, list[_Record]]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        at(1, 1, "", "not UTF-8 text")
        return None, []
    except json.JSONDecodeError as exc:
        at(exc.lineno, exc.colno, "", f"not valid JSON: {exc.msg}")
        return None, []
    if not isinstance(doc, list) or not all(isinstance(x, dict) for x in doc):
        at(1, 1, "", "a JSON data file is a list of objects, one per row: [{\"id\": \"navy\", ...}, ...]")
        return None, []
    if len(doc) > max_rows:
        _too_many(at, 1, max_rows)
        return None, []
    marks = _json_marks(data, len(doc))
    header: list[str] = []
    for obj in doc:
        header += [k for k in obj if k not in header]
    records: list[_Record] = []
    for i, obj in enumerate(doc):
        line, col, keys = marks[i] if i < len(marks) else (1, 1, {})
        cells = []
        for c, name in enumerate(header, 1):
            value = obj.get(name)
            if isinstance(value, (dict, list)):
                at(*keys.get(name, (line, col)), name, f"row {i + 1}: {name} is a {type(value).__name__}; a field is "
                   "a string, number or boolean")
                return None, []
            cells.append((_cell(value), *keys.get(name, (line, c))))
        records.append((line, cells))
    return header, records


def _json_marks(data: bytes, count: int) -> list[tuple[int, int, dict[str, tuple[int, int]]]]:
    """Where each object of a JSON list starts, and each of its keys (JSON is YAML: the composer keeps marks)."""
    try:
        node = yaml.compose(data.decode("utf-8-sig"), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []  # rows are then located at line 1; the values came from json.loads either way
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != count:
        return []
    out = []
    for item in node.value:
        keys = {}
        if isinstance(item, yaml.MappingNode):
            keys = {str(k.value): (v.start_mark.line + 1, v.start_mark.column + 1) for k, v in item.value}
        out.append((item.start_mark.line + 1, item.start_mark.column + 1, keys))
    return out


def _table(name: str, location: str, header: list[str], records: list[_Record], id_field: str,
           at: _Locator) -> DataTable | None:
    names = [h.strip() for h in header]
    if len(names) > MAX_COLUMNS:
        at(1, MAX_COLUMNS + 1, "", f"more than {MAX_COLUMNS} columns")
        return None
    seen: dict[str, int] = {}
    for c, h in enumerate(names, 1):
        if h and h in seen:
            at(1, c, h, f"duplicate column {shown(h)} (first is column {seen[h]})")
        seen.setdefault(h, c)
    if id_field not in seen:
        close = difflib.get_close_matches(id_field, list(seen), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        at(1, 1, "", f"no {id_field!r} column{hint} (columns: {', '.join(h for h in names if h)}); add one, or name "
           "the column that identifies a row with id_field:")
        return None
    id_col = seen[id_field]
    rows: list[Row] = []
    first: dict[str, int] = {}
    for line, cells in records:
        if len(cells) > len(names) and any(text.strip() for text, _, _ in cells[len(names):]):
            extra = cells[len(names)]
            at(extra[1], extra[2], "", f"this row has {len(cells)} fields, the header names {len(names)}")
            continue
        fields: dict[str, str] = {}
        for c, h in enumerate(names):
            text, cl, cc = cells[c] if c < len(cells) else ("", line, c + 1)
            if len(text) > MAX_CELL_CHARS:
                at(cl, cc, h, f"{h} is {len(text)} characters long; at most {MAX_CELL_CHARS}")
            if h:
                fields[h] = text
        id_text, il, ic = cells[id_col - 1] if id_col <= len(cells) else ("", line, id_col)
        rid = id_text.strip()
        if not rid:
            at(il, ic, id_field, f"empty {id_field}: every row needs one (it names the row's outputs)")
        elif not _ID.match(rid):
            at(il, ic, id_field, f"{id_field} {shown(rid)} is not file-name safe: use a-z, 0-9, '-' and '_', 1 to 63 "
               "characters, starting with a letter or digit")
        elif rid in first:
            at(il, ic, id_field, f"duplicate {id_field} {shown(rid)} (first at line {first[rid]})")
        else:
            first[rid] = il
            rows.append(Row(rid, {**fields, "id": rid}, line))
    return DataTable(name, location, tuple(h for h in names if h), tuple(rows))


def _where(src: Source, path: DocPath, table: DataTable, where: dict[str, Any], found: list[Problem]) -> DataTable | None:
    """Keep the rows whose fields equal the given value (or one of the listed values), compared as text."""
    wanted: dict[str, set[str]] = {}
    for field, value in where.items():
        if field not in table.columns:
            close = difflib.get_close_matches(field, list(table.columns), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            found.append(src.problem(path + (field,), f"{table.location} has no column {field!r}{hint} "
                                     f"(columns: {', '.join(table.columns)})", key=True))
            continue
        wanted[field] = {_cell(v) for v in (value if isinstance(value, list) else [value])}
    if found:
        return None
    rows = tuple(r for r in table.rows if all(r.fields.get(f) in vs for f, vs in wanted.items()))
    if not rows:
        found.append(src.problem(path, f"no row of {table.location} matches (of {len(table.rows)} rows)"))
        return None
    return DataTable(table.name, table.location, table.columns, rows)
