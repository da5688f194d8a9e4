"""The migration status page: one HTML table an operator can read at a glance.

``render_status(data)`` turns a plain dict (shape below, produced from the
gateway's stats) into a complete HTML5 page: inline CSS, no scripts, no
external assets, so it renders the same from an air-gapped admin port.

The markup is the Jinja2 template ``templates/status.html``, autoescaped:
every string that came from data — prefixes, notes, diff samples — is escaped
by Jinja2, so callers pass raw text (diff samples already redacted by
``gateway.diff``). This module turns the data into a view of plain values
(which backend line is red, which colour a badge takes, what a missing number
reads as), so the template holds markup only.

Input shape (``StatusData``)::

    {"generated_at": "2026-11-27T17:00:00Z",   # when the stats were read
     "table_version": "abc123def456",          # the route table being served
     "config_error": None | "why routes.yaml was rejected (last good table kept)",
     "routes": [RouteStatus, ...]}              # in display order, default route included

    RouteStatus = {
     "prefix": "/users",               # "/" or "is_default": True gets a "default" tag
     "methods": None | ["GET", ...],   # None = every method
     "state": "go" | "python" | "shadow" | "canary" | "go (rolled back)",  # colour from the first word
     "canary_percent": 25,             # canary only
     "share": {"go": 0.75, "python": 0.25},          # fraction of served requests
     "parity": None | {"shadowed": 120, "matched": 118, "rate": 0.983,
                       "dropped": 0, "python_errors": 0},           # the last two optional
     "backends": {"go": BackendStats, "python": BackendStats,      # any may be absent;
                  "python (shadow)": BackendStats},                # extra keys get a line each
     "last_change_s": 180.0 | None,    # seconds since the route's state changed; None = never
     "notes": ["auto-rolled back at … because …"],
     "top_differences": [{"field": "body:$.Name", "count": 2, "sample": "- go: …\\n+ python: …"}]}

    BackendStats = {"requests": 90, "error_rate": 0.0, "p50_ms": 3.1, "p99_ms": 9.8}

Missing optional keys render as "—" rather than failing: a half-filled row is
still worth showing during an incident.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from jinja2 import Environment, PackageLoader, StrictUndefined

BACKENDS = ("go", "python")
SHORT = {"go": "go", "python": "py", "python (shadow)": "py*"}  # py*: explained in the footer
DASH = "—"
BADGES = ("go", "python", "shadow", "canary")
COLUMNS = ("Prefix", "Methods", "State", "Traffic (go / py)", "Parity", "Error rate",
           "p50", "p99", "Last change", "Notes")


class BackendStats(TypedDict):
    requests: int
    error_rate: float | None  # 5xx + upstream errors / requests, 0..1
    p50_ms: float | None
    p99_ms: float | None


class Parity(TypedDict):
    shadowed: int  # replays compared
    matched: int  # replays with no difference left after noise
    rate: float | None  # matched / shadowed, 0..1
    dropped: NotRequired[int]  # replays skipped because the queue was full
    python_errors: NotRequired[int]  # replays where Python raised or timed out


class TopDifference(TypedDict):
    field: str  # gateway.diff.Difference.field
    count: int
    sample: str  # a render_diff() block, already redacted


class RouteStatus(TypedDict):
    prefix: str
    methods: list[str] | None
    state: str
    canary_percent: NotRequired[float | None]
    is_default: NotRequired[bool]
    share: NotRequired[dict[str, float]]
    parity: NotRequired[Parity | None]
    backends: NotRequired[dict[str, BackendStats]]
    last_change_s: NotRequired[float | None]
    notes: NotRequired[list[str]]
    top_differences: NotRequired[list[TopDifference]]


class StatusData(TypedDict):
    generated_at: str
    table_version: str
    config_error: str | None
    routes: list[RouteStatus]


# -- small formatters (public: the CLI can print the same words) ---------------


def humanise_age(seconds: float | None) -> str:
    """180 → "3 min ago"; None → "never"."""
    if seconds is None:
        return "never"
    s = max(0.0, float(seconds))
    if s < 10:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if s >= size:
            n = int(s // size)
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"
    return f"{int(s)} s ago"


def percent(fraction: float | None, digits: int = 1) -> str:
    """0.983 → "98.3%", 0.25 → "25%", None → "—"."""
    if fraction is None:
        return DASH
    text = f"{fraction * 100:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{fraction * 100:.0f}"
    return f"{text}%"


def millis(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def state_label(route: Mapping) -> str:
    state = str(route.get("state", "?"))
    if state == "canary":
        return f"canary {percent((route.get('canary_percent') or 0) / 100)}"
    return state


# -- the view the template renders ---------------------------------------------


@dataclass(frozen=True)
class BackendLine:
    """One backend's number in a per-backend cell."""

    label: str  # go, py, py* (SHORT)
    text: str  # formatted, or "—"
    worse: bool  # Python clearly worse than Go: shown red


@dataclass(frozen=True)
class Traffic:
    go: float  # share of served requests, 0..1
    python: float

    @property
    def idle(self) -> bool:
        return self.go + self.python <= 0


@dataclass(frozen=True)
class ParityView:
    rate: float
    css: str  # good / warn / bad
    matched: int
    shadowed: int
    warnings: list[str]  # "3 dropped", "1 python errors"


@dataclass(frozen=True)
class DifferenceView:
    field: str
    count: int
    sample: str


@dataclass(frozen=True)
class RowView:
    prefix: str
    is_default: bool
    methods: str | None  # None: every method
    state: str  # what the badge says
    badge: str  # its colour (CSS class)
    traffic: Traffic | None
    parity: ParityView | None
    error_rate: list[BackendLine] | None  # None: no backend has the number
    p50: list[BackendLine] | None
    p99: list[BackendLine] | None
    last_change: str
    notes: list[str]
    differences: list[DifferenceView]


def _row(r: Mapping) -> RowView:
    backends = r.get("backends") or {}
    methods = r.get("methods")
    return RowView(
        prefix=str(r.get("prefix", "?")),
        is_default=bool(r.get("is_default")) or r.get("prefix") == "/",
        methods=", ".join(methods) if methods else None,
        state=state_label(r),
        badge=_badge(r),
        traffic=_traffic(r.get("share")),
        parity=_parity(r.get("parity")),
        error_rate=_per_backend(backends, "error_rate", _error_rate, _worse_errors),
        p50=_per_backend(backends, "p50_ms", millis, None),
        p99=_per_backend(backends, "p99_ms", millis, _worse_latency),
        last_change=humanise_age(r.get("last_change_s")),
        notes=[str(n) for n in r.get("notes") or []],
        differences=[DifferenceView(str(d.get("field", "?")), int(d.get("count") or 0), str(d.get("sample") or ""))
                     for d in r.get("top_differences") or []],
    )


def _badge(r: Mapping) -> str:
    # "go (rolled back)" is still a go route: the colour follows the first word.
    first = str(r.get("state", "?")).split(" ", 1)[0]
    return first if first in BADGES else "unknown"


def _traffic(share: Mapping | None) -> Traffic | None:
    if not share:
        return None
    go, py = float(share.get("go") or 0), float(share.get("python") or 0)
    total = go + py
    return Traffic(go / total, py / total) if total > 0 else Traffic(0.0, 0.0)


def _parity(parity: Mapping | None) -> ParityView | None:
    if not parity or not parity.get("shadowed"):
        return None
    shadowed, matched = int(parity["shadowed"]), int(parity.get("matched") or 0)
    rate = parity.get("rate")
    if rate is None:
        rate = matched / shadowed
    css = "good" if rate >= 0.99 else "warn" if rate >= 0.95 else "bad"
    warnings = [f"{int(parity[k])} {label}"
                for k, label in (("python_errors", "python errors"), ("dropped", "dropped")) if parity.get(k)]
    return ParityView(rate, css, matched, shadowed, warnings)


def _error_rate(value: float | None) -> str:
    return percent(value, 2)  # 0.25% matters on a busy route; one digit would say 0.2%


def _worse_errors(go: float, py: float) -> bool:
    return py > go


def _worse_latency(go: float, py: float) -> bool:
    # A margin, so a p99 that wobbles by a millisecond doesn't light up red.
    return py > go * 1.5


def _backend_lines(backends: Mapping) -> list[str]:
    """Which backends get a line: go and python always (a missing one is "—",
    which is news on a canary), then any others the stats name ("python
    (shadow)"); a shadow route's idle python line gives way to its replays."""
    names = [b for b in BACKENDS] + [b for b in backends if b not in BACKENDS]
    if "python" not in backends and any(b.startswith("python") for b in backends):
        names.remove("python")
    return names


def _per_backend(backends: Mapping, key: str, fmt: Callable[[float | None], str],
                 worse: Callable[[float, float], bool] | None) -> list[BackendLine] | None:
    """One line per backend, go first; a Python line is marked worse when
    clearly worse than Go's. None when no backend has the number."""
    names = _backend_lines(backends)
    values = {b: (backends.get(b) or {}).get(key) for b in names}
    if all(v is None for v in values.values()):
        return None
    go = values.get("go")
    return [BackendLine(label=SHORT.get(b, b), text=fmt(v),
                        worse=bool(b != "go" and worse and v is not None and go is not None and worse(go, v)))
            for b, v in values.items()]


def _summary(routes: Sequence[Mapping]) -> str:
    """ "2 go, 1 shadow": how many routes are in each state, in table order."""
    counts: dict[str, int] = {}
    for r in routes:
        state = str(r.get("state", "?"))
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "no routes"


# -- the page ------------------------------------------------------------------

# Created once: Jinja2 compiles the template on first use and caches it.
# autoescape=True escapes every value in every template this loader finds,
# whatever its file name; StrictUndefined turns a misspelt name in the
# template into an error in the tests instead of a silently empty cell.
_ENV = Environment(
    loader=PackageLoader("gateway.ops", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["percent"] = percent
_ENV.globals.update(DASH=DASH, COLUMNS=COLUMNS)


def render_status(data: StatusData | Mapping, *, refresh_s: int | None = None) -> str:
    """The whole page. ``refresh_s`` adds a meta refresh (still no JavaScript)."""
    routes = list(data.get("routes") or [])
    return _ENV.get_template("status.html").render(
        refresh_s=int(refresh_s) if refresh_s else None,
        summary=_summary(routes),
        table_version=str(data.get("table_version") or DASH),
        generated_at=str(data.get("generated_at") or DASH),
        config_error=str(data["config_error"]) if data.get("config_error") else None,
        routes=[_row(r) for r in routes],
    )
