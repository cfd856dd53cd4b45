"""Safe YAML loading that keeps where every key and value came from, and refuses hostile input early."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.errors import ManifestInvalid, Problem

MAX_BYTES = 1_048_576  # a manifest is a few KB; anything near this is a mistake or an attack
MAX_NODES = 100_000  # values after alias expansion: stops "billion laughs" before memory grows
MAX_DEPTH = 64

Path = tuple[str | int, ...]

try:  # the C composer is much faster on large input and keeps the same marks
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


@dataclass
class Source:
    """A loaded YAML document: plain data plus the position of every value and mapping key."""

    file: str
    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of `path`, falling back to the nearest parent that has one."""
        p = tuple(path)
        while True:
            if key and p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, format_path(path), message)


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _fail(file: str, line: int, col: int, message: str) -> ManifestInvalid:
    return ManifestInvalid([Problem(file, line, col, "", message)])


def load_text(text: str, file: str) -> Source:
    """Parse one YAML document from `text`; raise ManifestInvalid with a located message on any failure."""
    if "\x00" in text:
        raise _fail(file, 1, 1, "this is not a text file (it contains NUL bytes); a manifest is YAML text")
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        raise _fail(file, line, col, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise _fail(file, 1, 1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _fail(file, 1, 1, f"the document nests too deeply (more than {MAX_DEPTH} levels)") from None
    if node is None:
        raise _fail(file, 1, 1, "the manifest is empty; it needs at least `campaign:`")
    src = Source(file=file, data=None)
    budget = [MAX_NODES]
    src.data = _convert(node, (), src, budget, 0)
    if not isinstance(src.data, dict):
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        kind = type(src.data).__name__ if src.data is not None else "null"
        raise _fail(file, line, col, f"the manifest must be a mapping of keys (campaign:, videos:, ...), not a {kind}")
    return src


def load_file(path: str) -> Source:
    """Read and parse a manifest file, with the size and encoding checks done before parsing."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(path, 1, 1, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, 1, 1, "this is a directory, not a manifest file") from None
    except OSError as exc:
        raise _fail(path, 1, 1, f"cannot read the file: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise _fail(path, 1, 1, f"the file is larger than {MAX_BYTES // 1024} KiB; a manifest is a few KB of YAML")
    if not raw.strip():
        raise _fail(path, 1, 1, "the manifest is empty; it needs at least `campaign:`")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(path, line, col, "the file is not UTF-8 text (binary data?); a manifest is YAML text") from None
    return load_text(text, path)


def _convert(node: yaml.Node, path: Path, src: Source, budget: list[int], depth: int) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _fail(
            src.file, node.start_mark.line + 1, node.start_mark.column + 1,
            f"the document expands to more than {MAX_NODES} values (alias bomb?)",
        )
    if depth > MAX_DEPTH:
        raise _fail(src.file, node.start_mark.line + 1, node.start_mark.column + 1,
                    f"the document nests too deeply (more than {MAX_DEPTH} levels)")
    src.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _fail(src.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            "merge keys (<<) are not supported in manifests; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(src.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            "mapping keys must be plain strings")
            key = str(key_node.value)
            kpath = path + (key,)
            if key in out:
                raise _fail(src.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            f"duplicate key {key!r} in {format_path(path) or 'the document'}")
            src.keys[kpath] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, kpath, src, budget, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), src, budget, depth + 1) for i, item in enumerate(node.value)]
    return _scalar(node, src, path)


_constructor = yaml.SafeLoader("")


def _scalar(node: yaml.Node, src: Source, path: Path) -> Any:
    try:
        value = _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise _fail(src.file, node.start_mark.line + 1, node.start_mark.column + 1, f"invalid value: {exc}") from None
    # Dates and timestamps are not manifest types; keep the text so the schema can say what it expected.
    if not isinstance(value, (str, int, float, bool, type(None))):
        return str(node.value)
    if isinstance(value, float) and not math.isfinite(value):  # .nan / .inf compare false against every range
        raise ManifestInvalid([Problem(src.file, node.start_mark.line + 1, node.start_mark.column + 1,
                                       format_path(path), f"{node.value!r} is not a finite number")])
    return value
