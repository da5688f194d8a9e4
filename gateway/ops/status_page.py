"""The migration status page: one HTML table an operator can read at a glance.

``render_status(data)`` turns a plain dict (shape below, produced from the
gateway's stats) into a complete HTML5 page: inline CSS, no scripts, no
external assets, so it renders the same from an air-gapped admin port. Every
string that came from data — prefixes, notes, diff samples — is escaped here;
callers pass raw text (diff samples already redacted by ``gateway.diff``).

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

from html import escape
from typing import Iterable, Mapping, NotRequired, TypedDict

BACKENDS = ("go", "python")
SHORT = {"go": "go", "python": "py", "python (shadow)": "py*"}  # py*: explained in the footer
DASH = "—"


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


# -- the page ------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa;
  --go: #2f6fde; --py: #1f9d55; --shadow: #7b4bc4; --canary: #c77c02; --bad: #c53030; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 24px; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
header { display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 0; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 14px; margin: 18px 0 6px; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.meta { color: var(--muted); }
.meta code { color: var(--ink); }
.error { background: #fff5f5; border: 1px solid #feb2b2; color: #742a2a; padding: 10px 14px;
  border-radius: 6px; margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line);
  border-radius: 8px; overflow: hidden; }
th, td { padding: 8px 9px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
th { background: #eef1f5; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.prefix { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 600; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.tag { font: 11px system-ui, sans-serif; color: var(--muted); border: 1px solid var(--line);
  border-radius: 4px; padding: 0 4px; margin-left: 6px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff; font-weight: 600;
  font-size: 12px; white-space: nowrap; }
.badge.go { background: var(--go); } .badge.python { background: var(--py); }
.badge.shadow { background: var(--shadow); } .badge.canary { background: var(--canary); }
.badge.unknown { background: var(--muted); }
.bar { display: flex; width: 96px; height: 8px; border-radius: 4px; overflow: hidden; background: var(--line);
  margin-bottom: 4px; }
.bar .go { background: var(--go); } .bar .python { background: var(--py); }
.split { display: block; }
.split .k { display: inline-block; min-width: 22px; margin-right: 4px; color: var(--muted); }
.good { color: var(--py); } .warn { color: var(--canary); } .bad { color: var(--bad); font-weight: 600; }
.dim { color: var(--muted); }
td.notes { min-width: 190px; }
.scroll { overflow-x: auto; }  /* a narrow window scrolls the table instead of clipping it */
.bad .k { font-weight: normal; }
ul.notes { margin: 0; padding-left: 16px; } ul.notes li { margin: 0 0 2px; }
table.diffs { table-layout: fixed; }
table.diffs th:nth-child(1) { width: 28%; } table.diffs th:nth-child(2) { width: 80px; }
table.diffs td.field { font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
pre { margin: 0; padding: 8px 10px; background: #1f2933; color: #e4e7eb; border-radius: 6px;
  font: 12px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; word-break: break-all; }
footer { margin-top: 24px; color: var(--muted); font-size: 12px; }
"""

_COLUMNS = ("Prefix", "Methods", "State", "Traffic (go / py)", "Parity", "Error rate",
            "p50", "p99", "Last change", "Notes")


def render_status(data: StatusData | Mapping, *, refresh_s: int | None = None) -> str:
    """The whole page. ``refresh_s`` adds a meta refresh (still no JavaScript)."""
    routes = list(data.get("routes") or [])
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n' if refresh_s else ""
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        refresh,
        "<title>Migration status</title>\n<style>", _CSS, "</style>\n</head>\n<body>\n",
        _header(data, routes),
        _config_error(data.get("config_error")),
        _routes_table(routes),
        _differences(routes),
        "<footer>Parity: share of shadowed requests whose Go and Python answers matched after ignored "
        "paths and Go-vs-Go noise. Latency is measured at the gateway per backend; py* = Python shadow "
        "replays (measured, never served).</footer>\n",
        "</body>\n</html>\n",
    ]
    return "".join(parts)


def _header(data: Mapping, routes: list[Mapping]) -> str:
    counts: dict[str, int] = {}
    for r in routes:
        counts[str(r.get("state", "?"))] = counts.get(str(r.get("state", "?")), 0) + 1
    summary = ", ".join(f"{n} {escape(s)}" for s, n in counts.items()) or "no routes"
    return (
        "<header><h1>Migration status</h1>"
        f'<span class="meta">{len(routes)} route{"s" if len(routes) != 1 else ""}: {summary}</span>'
        f'<span class="meta">table <code>{escape(str(data.get("table_version") or DASH))}</code></span>'
        f'<span class="meta">generated {escape(str(data.get("generated_at") or DASH))}</span>'
        "</header>\n"
    )


def _config_error(error: object) -> str:
    if not error:
        return ""
    return (f'<div class="error" role="alert"><strong>routes.yaml was rejected</strong> — still serving the '
            f"last good table. {escape(str(error))}</div>\n")


def _routes_table(routes: list[Mapping]) -> str:
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in _COLUMNS)
    rows = "".join(_route_row(r) for r in routes) or (
        f'<tr><td colspan="{len(_COLUMNS)}" class="dim">No routes in the table.</td></tr>')
    return (f'<div class="scroll"><table class="routes">\n<thead><tr>{head}</tr></thead>\n'
            f'<tbody>\n{rows}</tbody>\n</table></div>\n')


def _route_row(r: Mapping) -> str:
    prefix = escape(str(r.get("prefix", "?")))
    if r.get("is_default") or r.get("prefix") == "/":
        prefix += '<span class="tag">default</span>'
    methods = r.get("methods")
    methods_text = escape(", ".join(methods)) if methods else '<span class="dim">all</span>'
    backends = r.get("backends") or {}
    cells = [
        f'<td class="prefix">{prefix}</td>',
        f"<td>{methods_text}</td>",
        f"<td>{_badge(r)}</td>",
        f'<td class="num">{_share(r.get("share"))}</td>',
        f'<td class="num">{_parity(r.get("parity"))}</td>',
        f'<td class="num">{_per_backend(backends, "error_rate", _error_rate, _worse_errors)}</td>',
        f'<td class="num">{_per_backend(backends, "p50_ms", millis, None)}</td>',
        f'<td class="num">{_per_backend(backends, "p99_ms", millis, _worse_latency)}</td>',
        f'<td class="num">{escape(humanise_age(r.get("last_change_s")))}</td>',
        f'<td class="notes">{_notes(r.get("notes") or [])}</td>',
    ]
    return "<tr>" + "".join(cells) + "</tr>\n"


def _badge(r: Mapping) -> str:
    # "go (rolled back)" is still a go route: the colour follows the first word.
    first = str(r.get("state", "?")).split(" ", 1)[0]
    css = first if first in ("go", "python", "shadow", "canary") else "unknown"
    return f'<span class="badge {css}">{escape(state_label(r))}</span>'


def _share(share: Mapping | None) -> str:
    if not share:
        return DASH
    go, py = float(share.get("go") or 0), float(share.get("python") or 0)
    total = go + py
    if total <= 0:
        return '<span class="dim">no traffic</span>'
    bar = (f'<div class="bar" title="go {percent(go / total, 0)} / python {percent(py / total, 0)}">'
           f'<div class="go" style="width:{go / total * 100:.1f}%"></div>'
           f'<div class="python" style="width:{py / total * 100:.1f}%"></div></div>')
    return f"{bar}{percent(go / total, 0)} / {percent(py / total, 0)}"


def _parity(parity: Mapping | None) -> str:
    if not parity or not parity.get("shadowed"):
        return DASH
    shadowed, matched = int(parity["shadowed"]), int(parity.get("matched") or 0)
    rate = parity.get("rate")
    if rate is None:
        rate = matched / shadowed
    css = "good" if rate >= 0.99 else "warn" if rate >= 0.95 else "bad"
    extra = "".join(
        f'<span class="split warn">{int(parity[k])} {label}</span>'
        for k, label in (("python_errors", "python errors"), ("dropped", "dropped"))
        if parity.get(k)
    )
    return (f'<span class="{css}">{percent(rate)}</span>'
            f'<span class="split dim">{matched}/{shadowed} shadowed</span>{extra}')


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


def _per_backend(backends: Mapping, key: str, fmt, worse) -> str:
    """One line per backend, go first; a Python line turns red when clearly
    worse than Go's."""
    names = _backend_lines(backends)
    values = {b: (backends.get(b) or {}).get(key) for b in names}
    if all(v is None for v in values.values()):
        return DASH
    go = values.get("go")
    lines = []
    for b in names:
        v = values[b]
        css = " bad" if b != "go" and worse and v is not None and go is not None and worse(go, v) else ""
        label = escape(SHORT.get(b, b))
        lines.append(f'<span class="split{css}"><span class="k">{label}</span>{escape(fmt(v))}</span>')
    return "".join(lines)


def _notes(notes: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(str(n))}</li>" for n in notes)
    return f'<ul class="notes">{items}</ul>' if items else ""


def _differences(routes: list[Mapping]) -> str:
    blocks = [_route_differences(r) for r in routes if r.get("top_differences")]
    if not blocks:
        return ""
    return "<section><h2>Top differences (shadowed requests)</h2>\n" + "".join(blocks) + "</section>\n"


def _route_differences(r: Mapping) -> str:
    rows = "".join(
        f'<tr><td class="field">{escape(str(d.get("field", "?")))}</td>'
        f'<td class="num">{int(d.get("count") or 0)}</td>'
        f'<td><pre>{escape(str(d.get("sample") or ""))}</pre></td></tr>\n'
        for d in r["top_differences"]
    )
    return (f'<h3>{escape(str(r.get("prefix", "?")))}</h3>\n'
            '<table class="diffs"><thead><tr><th scope="col">Field</th><th scope="col">Count</th>'
            f'<th scope="col">Sample</th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n')
