"""Manifest variables: each image or video that uses `{name}` / `{name.field}` is expanded once per
combination of the `variables:` it uses, at load time, before validation (DESIGN "The manifest").

The expanded document keeps the template's positions: a problem found in an expanded item is reported at the
template's own line and column, with the combination that caused it (`ExpandedSource.problem`).
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from pipeline.errors import ManifestInvalid, Problem
from pipeline.manifest.data_files import DataTable, Reader, load_table
from pipeline.manifest.schema import ID_PATTERN, MAX_TEMPLATE_ID_CHARS, TEMPLATE_ID_PATTERN, VARIABLE_NAME, load_schema
from pipeline.manifest.yamlsrc import Path, Source, format_path

# One image job, one video job and one clip job per shot: a manifest may expand to at most this many
# (prompt enhancements, at most one per shot and shared between equal prompts, are not counted).
MAX_EXPANDED_JOBS = 10_000
SECTIONS = ("images", "videos")

# `{{` and `}}` are literal braces; `{...}` is a placeholder; a lone brace is a mistake worth reporting.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(rf"({VARIABLE_NAME})(?:\.({VARIABLE_NAME}))?")
_NAME = re.compile(VARIABLE_NAME)
_STRICT_ID = re.compile(ID_PATTERN)
_TEMPLATE_ID = re.compile(TEMPLATE_ID_PATTERN)


@dataclass(frozen=True)
class Variant:
    """Where an expanded image or video came from: its template's id as written and the values chosen."""

    template: str
    combination: tuple[tuple[str, str], ...]  # (variable, value id), in the order `variables:` lists them

    def label(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.combination)

    def to_json(self) -> dict[str, Any]:
        return {"template": self.template, "combination": dict(self.combination)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Variant:
        return cls(template=str(d["template"]), combination=tuple((str(k), str(v)) for k, v in d["combination"].items()))


@dataclass(frozen=True)
class _Value:
    """One value of a variable: a scalar, or a small mapping whose `id` names it."""

    id: str
    fields: dict[str, str]  # text of each field (a scalar's only field is its id)
    is_mapping: bool


@dataclass
class ExpandedSource(Source):
    """The manifest after expansion. Paths into expanded items resolve to their template's position, and
    problems there name the combination; `template` is the document as written."""

    template: Source | None = None
    origins: dict[tuple[str, int], tuple[int, Variant | None]] = field(default_factory=dict)
    variant_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    stems: dict[Problem, tuple[str, str, tuple[str, int]]] = field(default_factory=dict)
    left_out: frozenset[tuple[str, int]] = frozenset()  # templates with variable problems, not expanded

    def _template_path(self, path: Path) -> tuple[Path, Variant | None, tuple[str, int] | None]:
        if len(path) >= 2 and isinstance(path[0], str) and isinstance(path[1], int):
            origin = self.origins.get((path[0], path[1]))
            if origin is not None:
                return (path[0], origin[0]) + tuple(path[2:]), origin[1], (path[0], origin[0])
        return tuple(path), None, None

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        return super().where(self._template_path(path)[0], key=key)

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        tpath, variant, template = self._template_path(path)
        if variant is None or not variant.combination or template is None:
            line, col = super().where(tpath, key=key)
            return Problem(self.file, line, col, format_path(tpath), message)
        return self.in_template(tpath, message, label=variant.label(), template=template, key=key)

    def in_template(self, tpath: Path, message: str, *, label: str, template: tuple[str, int],
                    key: bool = False) -> Problem:
        """A problem at a template's own position, caused by one combination (`label`)."""
        line, col = super().where(tpath, key=key)
        found = Problem(self.file, line, col, format_path(tpath), f"{message} (with {label})")
        self.stems[found] = (message, label, template)
        return found


@dataclass(frozen=True)
class TemplateGroup:
    """The expansion of one template: which kind of item, and the ids it became, in expansion order."""

    kind: str  # "image" | "video"
    template: str
    variables: tuple[str, ...]
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "template": self.template, "variables": list(self.variables),
                "count": len(self.ids), "ids": list(self.ids)}


def group_by_template(items: Iterable[tuple[str, str, Variant | None]]) -> list[TemplateGroup]:
    """(kind, id, variant) per image or video -> one group per template, in first-seen order; items that were
    not expanded from a template are left out."""
    groups: dict[tuple[str, str], list[tuple[str, Variant]]] = {}
    for kind, item_id, variant in items:
        if variant is not None:
            groups.setdefault((kind, variant.template), []).append((item_id, variant))
    return [TemplateGroup(kind=kind, template=template, variables=tuple(n for n, _ in members[0][1].combination),
                          ids=tuple(i for i, _ in members))
            for (kind, template), members in groups.items()]


def template_data(src: Source) -> Any:
    """The manifest as written (templates, not their expansion): what `campaign submit` uploads."""
    return src.template.data if isinstance(src, ExpandedSource) and src.template is not None else src.data


def variant_of(src: Source, section: str, index: int) -> Variant | None:
    if not isinstance(src, ExpandedSource):
        return None
    origin = src.origins.get((section, index))
    return origin[1] if origin else None


def collapse(src: Source, problems: list[Problem]) -> list[Problem]:
    """One line per template problem: the same message from many combinations names the first and counts the rest."""
    if not isinstance(src, ExpandedSource) or not src.stems:
        return problems
    groups: dict[tuple[Any, ...], list[Problem]] = {}
    order: list[tuple[Any, ...]] = []
    for p in problems:
        stem = src.stems.get(p)
        k: tuple[Any, ...] = (p.line, p.col, p.path, stem[0]) if stem else ("plain", p)
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(p)
    out = []
    for k in order:
        group = list(dict.fromkeys(groups[k]))
        first = group[0]
        stem = src.stems.get(first)
        if stem is None or len(group) == 1:
            out.append(first)
            continue
        message, label, template = stem
        total = src.variant_counts.get(template, 0)
        if len(group) == total:
            words = f"in all {total} combinations, e.g. {label}"
        else:
            words = f"with {label}, and {len(group) - 1} more combination(s)"
        out.append(Problem(first.file, first.line, first.col, first.path, f"{message} ({words})"))
    return out


# --- expansion ------------------------------------------------------------------------------------------------


def expand(src: Source, *, data_reader: Reader | None = None) -> tuple[Source, list[Problem]]:
    """The manifest with every templated image and video expanded, and the problems of expansion itself
    (placeholders, for_each, expanded ids). A manifest without `variables:` is taken literally. Raises
    ManifestInvalid at once when the expansion would pass MAX_EXPANDED_JOBS. `data_reader` reads the data
    files of `variables: {name: {from: file}}` (data_files.py); without one, such a variable is a problem."""
    data = src.data if isinstance(src.data, dict) else {}
    problems: list[Problem] = []
    if "variables" not in data:
        return src, _literal_problems(src, data)
    tables: dict[str, DataTable] = {}
    variables, usable = _variables(src, data.get("variables"), problems, reader=data_reader, tables=tables)

    # 1. What each item uses and which combinations it gets; items that cannot be expanded are left out
    #    (their problems are reported; checking them further would only repeat those).
    plans: dict[tuple[str, int], list[dict[str, _Value]] | None] = {}
    left_out: set[tuple[str, int]] = set()  # items with variable problems, not checked further (said once each)
    total = 0
    weights: list[tuple[int, str]] = []
    for section in SECTIONS:
        items = data.get(section)
        for t, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                plans[(section, t)] = [{}]
                continue
            if not usable:
                plans[(section, t)] = None if _uses_placeholders(item) else [{}]
                if plans[(section, t)] is None:
                    left_out.add((section, t))
                continue
            try:
                combos = _combinations(src, section, t, item, variables, problems, tables=tables)
                count = len(combos) if combos else 0
            except _TooMany as many:
                combos, count = None, many.count
            plans[(section, t)] = combos
            if combos is None and count == 0:
                left_out.add((section, t))
            shots = item.get("shots")
            weight = count * (1 + (len(shots) if section == "videos" and isinstance(shots, list) else 0))
            total += weight
            if weight:
                weights.append((weight, f"{section}[{t}] ({item.get('id')!s}: {count} variant(s))"))
    if total > MAX_EXPANDED_JOBS:  # said before anything is built, let alone run
        largest = ", ".join(w for _, w in sorted(weights, reverse=True)[:3])
        line, col = src.where(("variables",), key=True)
        raise ManifestInvalid([Problem(src.file, line, col, "variables",
                                       f"the manifest expands to {total} jobs (images, videos and shots), more than the "
                                       f"{MAX_EXPANDED_JOBS} allowed; largest: {largest}; split it into several manifests "
                                       "or narrow for_each")])

    # 2. Expand, keeping each new item's template index and combination.
    out = ExpandedSource(file=src.file, data=dict(data), values=src.values, keys=src.keys, template=src)
    for section in SECTIONS:
        items = data.get(section)
        if not isinstance(items, list):
            continue
        expanded: list[Any] = []
        seen: dict[str, int] = {}
        for t, item in enumerate(items):
            combos = plans.get((section, t))
            if combos is None:
                continue
            out.variant_counts[(section, t)] = len(combos)
            for combo in combos:
                made = _substitute_item(out, section, t, item, combo, problems) if isinstance(item, dict) else item
                if made is None:
                    left_out.add((section, t))
                    continue
                name = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else f"{section}[{t}]"
                variant = Variant(str(name), tuple((n, combo[n].id) for n in variables if n in combo)) if combo else None
                index = len(expanded)
                out.origins[(section, index)] = (t, variant)
                iid = made.get("id") if isinstance(made, dict) else None
                if isinstance(iid, str):
                    if iid in seen:
                        first_t, first_v = out.origins[(section, seen[iid])]
                        line, _ = src.where((section, first_t, "id"))
                        by = f" by {first_v.template} with {first_v.label()}" if first_v and first_v.combination else ""
                        problems.append(out.problem((section, index, "id"),
                                                    f"duplicate {section[:-1]} id {iid!r} (first made at line {line}{by})"))
                        del out.origins[(section, index)]
                        continue  # one item per id: later checks see no duplicate to report again
                    seen[iid] = index
                    problems.extend(_id_problem(out, (section, index, "id"), iid, expanded_from=combo))
                expanded.append(made)
        out.data[section] = expanded
    out.left_out = frozenset(left_out)
    if left_out:  # the later checks cannot run on what cannot be expanded: say so once, at the variables
        items = ", ".join(f"{section}[{t}]" for section, t in sorted(left_out))
        line, col = src.where(("variables",), key=True)
        problems.append(Problem(src.file, line, col, "variables",
                                f"{items} could not be expanded for every combination: their values that hold a "
                                "placeholder are checked once these problems are fixed, so more problems may follow"))
    return out, problems


def _literal_problems(src: Source, data: dict[str, Any]) -> list[Problem]:
    """Without `variables:` nothing is expanded: a `for_each` or an id with braces is a mistake to report."""
    problems: list[Problem] = []
    for section in SECTIONS:
        items = data.get(section)
        for t, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            if "for_each" in item:
                problems.append(src.problem((section, t, "for_each"), "for_each needs a top-level `variables:` block"))
            if isinstance(item.get("id"), str):
                problems.extend(_id_problem(src, (section, t, "id"), item["id"], expanded_from=None))
    return problems


def _id_problem(src: Source, path: Path, iid: str, *, expanded_from: dict[str, _Value] | None) -> list[Problem]:
    """Ids the template pattern admits (placeholders) but that are not valid ids once expanded (or as written)."""
    if _STRICT_ID.match(iid) or not (_TEMPLATE_ID.match(iid) and len(iid) <= MAX_TEMPLATE_ID_CHARS):
        return []  # valid, or the schema already reports it
    what = "expanded id" if expanded_from else "id"
    hint = "" if expanded_from is not None else " (placeholders need a top-level `variables:` block)"
    return [src.problem(path, f"{what} {iid!r} is not a valid id: use a-z, 0-9, '-' and '_', 1 to 63 characters, "
                              f"starting with a letter or digit{hint}")]


def _variables(src: Source, block: Any, problems: list[Problem], *, reader: Reader | None = None,
               tables: dict[str, DataTable] | None = None) -> tuple[dict[str, list[_Value]], bool]:
    """The `variables:` block as values per name, and whether it is usable (the schema reports its shape).
    A data file's table is kept in `tables` (its columns decide which `{name.field}` exist)."""
    schema = load_schema()["properties"]["variables"]
    if not jsonschema.Draft202012Validator(schema).is_valid(block):
        return {}, False
    out: dict[str, list[_Value]] = {}
    ok = True
    for name, raw_values in block.items():
        if not _NAME.fullmatch(name):
            problems.append(src.problem(("variables", name), f"variable name {name!r} is not allowed: use letters, "
                                        "digits and '_', starting with a letter or '_'", key=True))
            ok = False
        if isinstance(raw_values, dict):  # `{from: products.csv}`: one value per row of the data file
            table = None
            if reader is None:
                problems.append(src.problem(("variables", name, "from"), "data files cannot be read here"))
            else:
                table = load_table(src, ("variables", name), raw_values, reader=reader, max_rows=MAX_EXPANDED_JOBS,
                                   problems=problems)
            if table is None:
                ok = False
                continue
            if tables is not None:
                tables[name] = table
            out[name] = [_Value(r.id, r.fields, True) for r in table.rows]
            continue
        values: list[_Value] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(raw_values):
            if isinstance(raw, dict):
                value = _Value(_text(raw["id"]), {k: _text(v) for k, v in raw.items()}, True)
            else:
                value = _Value(_text(raw), {}, False)
            if value.id in seen:
                problems.append(src.problem(("variables", name, i), f"{name} has the value {value.id!r} twice "
                                            f"(first at {name}[{seen[value.id]}]); values are told apart by their id"))
                ok = False
            seen.setdefault(value.id, i)
            values.append(value)
        out[name] = values
    return out, ok


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _strings(node: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Every text value under `node` (mapping keys are names, not text: they are never substituted)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            if not (path and len(path) == 2 and k == "for_each"):
                yield from _strings(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, path + (i,))


def _uses_placeholders(item: dict[str, Any]) -> bool:
    return "for_each" in item or any("{" in s or "}" in s for _, s in _strings(item, ("x", 0)))


def _placeholders(text: str) -> Iterator[tuple[str | None, str | None, str]]:
    """(variable, field, as written) per placeholder; variable None marks a malformed one."""
    for m in _TOKEN.finditer(text):
        token = m.group(0)
        if token in ("{{", "}}"):
            continue
        inner = m.group(1)
        p = _PLACEHOLDER.fullmatch(inner) if inner is not None else None
        if p is None:
            yield None, None, token
        else:
            yield p.group(1), p.group(2), token


def _combinations(src: Source, section: str, t: int, item: dict[str, Any], variables: dict[str, list[_Value]],
                  problems: list[Problem], *, tables: dict[str, DataTable] | None = None,
                  ) -> list[dict[str, _Value]] | None:
    """The combinations `item` is expanded for ([{}] when it uses no variable), or None after a problem."""
    tables = tables or {}
    used: list[str] = []
    bad = False
    for path, text in _strings(item, (section, t)):
        for name, fld, token in _placeholders(text):
            if name is None:
                problems.append(src.problem(path, f"{token!r} is not a placeholder: write {{name}} or {{name.field}} "
                                            "with a variable's name, and {{ or }} for a literal brace"))
                bad = True
            elif name not in variables:
                problems.append(src.problem(path, f"unknown variable {name!r} in {token}{_suggest(name, list(variables))}"
                                            f" (variables: {', '.join(variables)})"))
                bad = True
            else:
                if fld is not None and not any(v.is_mapping for v in variables[name]):
                    problems.append(src.problem(path, f"{token}: the values of {name} are plain values without fields; "
                                                f"write {{{name}}}"))
                    bad = True
                elif fld is not None and name in tables and fld not in tables[name].columns:
                    table = tables[name]  # located at the template, naming the data file that lacks the field
                    problems.append(src.problem(path, f"{token}: {table.location} has no column {fld!r}"
                                                f"{_suggest(fld, list(table.columns))} (columns: "
                                                f"{', '.join(table.columns)})"))
                    bad = True
                if name not in used:
                    used.append(name)
    if bad:
        return None
    for_each = item.get("for_each")
    if for_each is None:
        chosen = {n: variables[n] for n in variables if n in used}
        return _product(chosen)
    fpath = (section, t, "for_each")
    if isinstance(for_each, list) and all(isinstance(x, str) for x in for_each):  # a subset of the variables
        unknown = [n for n in for_each if n not in variables]
        missing = [n for n in used if n not in for_each]
        for n in unknown:
            problems.append(src.problem(fpath, f"unknown variable {n!r}{_suggest(n, list(variables))}"))
        if missing:
            problems.append(src.problem(fpath, f"the item uses {', '.join(missing)} but for_each does not list "
                                        f"{'it' if len(missing) == 1 else 'them'}"))
        if unknown or missing:
            return None
        return _product({n: variables[n] for n in variables if n in for_each})
    if isinstance(for_each, dict):  # some variables narrowed to some of their values
        chosen = {}
        for n in variables:
            if n in for_each:
                picked = _pick(src, fpath + (n,), n, for_each[n], variables[n], problems)
                if picked is None:
                    return None
                chosen[n] = [v for v in variables[n] if v in picked]  # the variable's own order, once each
            elif n in used:
                chosen[n] = variables[n]
        unknown = [n for n in for_each if n not in variables]
        for n in unknown:
            problems.append(src.problem(fpath + (n,), f"unknown variable {n!r}{_suggest(n, list(variables))}", key=True))
        return None if unknown else _product(chosen)
    if isinstance(for_each, list) and all(isinstance(x, dict) for x in for_each):  # explicit combinations
        combos: list[dict[str, _Value]] = []
        ok = True
        for i, entry in enumerate(for_each):
            combo: dict[str, _Value] = {}
            for n, raw in entry.items():
                if n not in variables:
                    problems.append(src.problem(fpath + (i, n), f"unknown variable {n!r}{_suggest(n, list(variables))}",
                                                key=True))
                    ok = False
                    continue
                picked = _pick(src, fpath + (i, n), n, [raw], variables[n], problems)
                if picked is None:
                    ok = False
                else:
                    combo[n] = picked[0]
            missing = [n for n in used if n not in entry]
            if missing:
                problems.append(src.problem(fpath + (i,), f"this combination does not give {', '.join(missing)}, "
                                            "which the item uses"))
                ok = False
            combos.append({n: combo[n] for n in variables if n in combo})
        keys = [tuple((n, v.id) for n, v in c.items()) for c in combos]
        for i, k in enumerate(keys):
            if k in keys[:i]:
                problems.append(src.problem(fpath + (i,), f"combination {dict(k)} is listed twice"))
                ok = False
        return combos if ok else None
    problems.append(src.problem(fpath, "for_each is a list of variable names ([market, product]), a mapping of "
                                "variables to some of their values ({market: [de, fr]}) or a list of combinations "
                                "([{market: de, product: sofa}, ...])"))
    return None


def _pick(src: Source, path: Path, name: str, wanted: Any, values: list[_Value],
          problems: list[Problem]) -> list[_Value] | None:
    by_id = {v.id: v for v in values}
    out = []
    for w in wanted if isinstance(wanted, list) else [wanted]:
        v = by_id.get(_text(w))
        if v is None:
            problems.append(src.problem(path, f"{name} has no value {_text(w)!r}{_suggest(_text(w), list(by_id))} "
                                        f"(values: {', '.join(by_id)})"))
            return None
        out.append(v)
    return out


class _TooMany(Exception):
    """A product of variables too large to enumerate: only its size is needed, to refuse it."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def _product(chosen: dict[str, list[_Value]]) -> list[dict[str, _Value]]:
    count = math.prod(len(v) for v in chosen.values())
    if count > MAX_EXPANDED_JOBS:
        raise _TooMany(count)
    names = list(chosen)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(chosen[n] for n in names))]


def _substitute_item(out: ExpandedSource, section: str, t: int, item: dict[str, Any], combo: dict[str, _Value],
                     problems: list[Problem]) -> dict[str, Any] | None:
    label = ", ".join(f"{n}={v.id}" for n, v in combo.items())
    failed = False

    def text(path: Path, s: str) -> str:
        nonlocal failed

        def one(m: re.Match[str]) -> str:
            nonlocal failed
            token = m.group(0)
            if token in ("{{", "}}"):
                return token[0]
            p = _PLACEHOLDER.fullmatch(m.group(1) or "")
            assert p is not None  # _combinations refused malformed placeholders
            value = combo[p.group(1)]
            fld = p.group(2)
            if fld is None:
                return value.id
            if fld not in value.fields:
                problems.append(out.in_template(
                    path, f"{token}: the {p.group(1)} value {value.id!r} has no field {fld!r}"
                          f"{_suggest(fld, list(value.fields))}; it has {', '.join(value.fields)}",
                    label=label, template=(section, t)))
                failed = True
                return token
            return value.fields[fld]

        return _TOKEN.sub(one, s)

    def walk(node: Any, path: Path) -> Any:
        if isinstance(node, str):
            return text(path, node)
        if isinstance(node, dict):
            return {k: walk(v, path + (k,)) for k, v in node.items() if not (len(path) == 2 and k == "for_each")}
        if isinstance(node, list):
            return [walk(v, path + (i,)) for i, v in enumerate(node)]
        return node

    made = walk(item, (section, t))
    return None if failed else made


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
