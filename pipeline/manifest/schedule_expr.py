"""EventBridge Scheduler expressions (`schedule:` in a manifest): rate(), cron() and at(), checked before a
schedule is ever created."""

from __future__ import annotations

import re

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_AT = re.compile(r"^at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)$")
_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAYS = "SUN|MON|TUE|WED|THU|FRI|SAT"


def schedule_problem(expr: str) -> str | None:
    """None when `expr` is a valid EventBridge Scheduler expression, else what is wrong with it."""
    if expr.startswith("rate("):
        m = _RATE.match(expr)
        if not m:
            return f"{expr!r}: a rate is rate(VALUE UNIT) with UNIT minute(s), hour(s) or day(s), e.g. rate(1 day)"
        n, unit = int(m.group(1)), m.group(2)
        if n < 1:
            return f"{expr!r}: the rate must be at least 1"
        if (n == 1) != (not unit.endswith("s")):
            return f"{expr!r}: write '1 {unit.rstrip('s')}' or 'N {unit.rstrip('s')}s'"
        return None
    if expr.startswith("at("):
        m = _AT.match(expr)
        if not m:
            return f"{expr!r}: a one-time schedule is at(yyyy-mm-ddThh:mm:ss)"
        y, mo, d, h, mi, s = map(int, m.groups())
        import datetime as _dt

        try:
            _dt.datetime(y, mo, d, h, mi, s)
        except ValueError as exc:
            return f"{expr!r}: {exc}"
        return None
    if expr.startswith("cron(") and expr.endswith(")"):
        return _cron_problem(expr, expr[5:-1].split())
    return f"{expr!r} must be cron(...), rate(...) or at(...)"


def _cron_problem(expr: str, parts: list[str]) -> str | None:
    if len(parts) != 6:
        return f"{expr!r}: a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), found {len(parts)}"
    minutes, hours, dom, month, dow, year = parts
    fields = [
        ("minutes", minutes, 0, 59, ""), ("hours", hours, 0, 23, ""), ("day-of-month", dom, 1, 31, ""),
        ("month", month, 1, 12, _MONTHS), ("day-of-week", dow, 1, 7, _DAYS), ("year", year, 1970, 2199, ""),
    ]
    for name, value, lo, hi, names in fields:
        msg = _cron_field_problem(value, lo, hi, names, allow_q=name in ("day-of-month", "day-of-week"),
                                  extra=name in ("day-of-month", "day-of-week"))
        if msg:
            return f"{expr!r}: {name} field {value!r}: {msg}"
    if (dom == "?") == (dow == "?"):
        return f"{expr!r}: exactly one of day-of-month and day-of-week must be '?'"
    return None


def _cron_field_problem(value: str, lo: int, hi: int, names: str, *, allow_q: bool, extra: bool) -> str | None:
    if value == "?":
        return None if allow_q else "'?' is only allowed in day-of-month or day-of-week"
    if value == "*":
        return None
    if extra and re.fullmatch(r"L|LW|\d{1,2}W|\d#[1-5]|[A-Z]{3}#[1-5]|\dL|[A-Z]{3}L", value):
        return None
    atom = rf"(\d+|{names})" if names else r"(\d+)"
    for item in value.split(","):
        m = re.fullmatch(rf"{atom}(?:-{atom})?(?:/(\d+))?|\*/(\d+)", item)
        if not m:
            return "not a number, range (a-b), list (a,b) or increment (a/b)"
        for tok in (m.group(1), m.group(2)):
            if tok and tok.isdigit() and not lo <= int(tok) <= hi:
                return f"{tok} is out of range {lo}-{hi}"
    return None


_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def min_interval_s(expr: str) -> int | None:
    """The shortest time between two runs of a valid rate() or cron() expression, in seconds (for cron, a lower
    bound: the closest two minutes of a day it may fire at); None for at() (it runs once)."""
    m = _RATE.match(expr)
    if m:
        return int(m.group(1)) * _UNIT_S[m.group(2).rstrip("s")]
    if not (expr.startswith("cron(") and expr.endswith(")")):
        return None
    parts = expr[5:-1].split()
    if len(parts) != 6:
        return None
    minutes, hours = _expand(parts[0], 59), _expand(parts[1], 23)
    if len(minutes) > 1:
        gap = min(b - a for a, b in zip(minutes, minutes[1:], strict=False))
        # the last minute of one hour to the first of the next, when two fired hours are neighbours
        if len(hours) > 1 and any((h + 1) % 24 in hours for h in hours):
            gap = min(gap, 60 - minutes[-1] + minutes[0])
        return gap * 60
    if len(hours) > 1:
        gaps = [b - a for a, b in zip(hours, hours[1:], strict=False)] + [24 - hours[-1] + hours[0]]
        return min(gaps) * 3600
    return 86400  # one minute of one hour: at most once a day


def _expand(field: str, hi: int) -> list[int]:
    """The values a minutes or hours field of a valid cron expression fires at."""
    out: set[int] = set()
    for item in field.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            lo, top = 0, hi
        elif "-" in base:
            lo, top = (int(x) for x in base.split("-", 1))
        else:
            lo = int(base)
            top = hi if step_text else lo
        out.update(range(lo, top + 1, max(step, 1)))
    return sorted(out)


# --- building the typed campaign ------------------------------------------------------------------
