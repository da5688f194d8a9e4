"""gateway.status_page: the HTML an operator reads, checked as text and in a real browser."""
from __future__ import annotations

import copy
import struct
import threading
import zlib
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from gateway.ops.status_page import humanise_age, percent, render_status

from .browser import dump_dom, screenshot

USERS = {
    "prefix": "/users", "methods": None, "state": "canary", "canary_percent": 25,
    "share": {"go": 0.75, "python": 0.25},
    "parity": {"shadowed": 120, "matched": 118, "rate": 0.983},
    "backends": {"go": {"requests": 90, "error_rate": 0.0, "p50_ms": 3.1, "p99_ms": 9.8},
                 "python": {"requests": 30, "error_rate": 0.033, "p50_ms": 2.0, "p99_ms": 7.5}},
    "last_change_s": 180.0, "notes": ["auto-rollback armed: error rate +5%, p99 ×1.5, min 100 requests"],
    "top_differences": [{"field": "body:$.Name", "count": 2, "sample": '@ body:$.Name\n- go:     "a"\n+ python: "b"'}],
}

DATA = {
    "generated_at": "2026-11-27T17:00:00Z", "table_version": "abc123def456", "config_error": None,
    "routes": [
        USERS,
        {"prefix": "/api-keys", "methods": ["GET", "POST"], "state": "shadow",
         "share": {"go": 1.0, "python": 0.0},
         "parity": {"shadowed": 400, "matched": 352, "rate": 0.88, "dropped": 3, "python_errors": 0},
         "backends": {"go": {"requests": 400, "error_rate": 0.0025, "p50_ms": 4.2, "p99_ms": 21.0},
                      "python (shadow)": {"requests": 400, "error_rate": 0.01, "p50_ms": 6.0, "p99_ms": 180.0}},
         "last_change_s": 7200.0, "notes": [],
         "top_differences": [
             {"field": "body:$[*].CreatedAt", "count": 40,
              "sample": '@ body:$[*].CreatedAt\n- go:     "2026-11-27T16:59:01Z"\n+ python: "2026-11-27T16:59:01.000Z"'},
             {"field": "body:$[*].Key", "count": 8,
              "sample": '@ body:$[*].Key\n- go:     "<redacted len=32>"\n+ python: <missing>'},
         ]},
        {"prefix": "/auth", "methods": None, "state": "python", "share": {"go": 0.0, "python": 1.0},
         "parity": None,
         "backends": {"python": {"requests": 1200, "error_rate": 0.0, "p50_ms": 1.2, "p99_ms": 4.0}},
         "last_change_s": 3 * 86400.0,
         "notes": ["auto-rolled back at 2026-11-25T10:04Z because python p99 41 ms > go 12 ms ×2; re-enabled by ops"]},
        {"prefix": "/llm", "methods": ["POST"], "state": "go (rolled back)", "canary_percent": None,
         "share": {"go": 0.9, "python": 0.1}, "parity": None,
         "backends": {"go": {"requests": 900, "error_rate": 0.001, "p50_ms": 120.0, "p99_ms": 900.0},
                      "python": {"requests": 100, "error_rate": 0.09, "p50_ms": 130.0, "p99_ms": 2400.0}},
         "last_change_s": 95.0,
         "notes": ["automatically rolled back to go at 16:58:25 UTC: python 5xx rate 9.0% > go 0.1% + 5%"]},
        {"prefix": "/otel", "methods": None, "state": "go", "share": {"go": 0.0, "python": 0.0},
         "parity": None, "backends": {}, "last_change_s": None, "notes": []},
        {"prefix": "(default)", "methods": None, "state": "go", "share": {"go": 1.0, "python": 0.0},
         "parity": None, "backends": {"go": {"requests": 5000, "error_rate": 0.0004, "p50_ms": 2.4, "p99_ms": 15.3}},
         "last_change_s": None, "notes": []},
    ],
}
PREFIXES = [r["prefix"] for r in DATA["routes"]]


def data_with(**route_changes) -> dict:
    d = copy.deepcopy(DATA)
    d["routes"][0].update(route_changes)
    return d


class Parsed(HTMLParser):
    """The page as an HTML tokenizer reads it: the elements it opens, and its
    text with character references resolved. What a reader sees, whichever
    spelling the escaper picked (&quot; or &#34;)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.texts: list[str] = []
        self.pres: list[str] = []  # the text of each <pre>
        self._pre: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._pre is not None:
            self._pre.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


# -- unit tests --------------------------------------------------------------------


def test_is_a_complete_html5_page_without_scripts_or_external_assets():
    html = render_status(DATA)
    assert html.startswith("<!DOCTYPE html>")
    assert "<title>Migration status</title>" in html
    assert '<meta charset="utf-8">' in html
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html and "src=" not in html


def test_one_row_per_route_with_prefix_and_default_tag():
    html = render_status(DATA)
    assert html.count('<td class="prefix">') == len(PREFIXES)
    for prefix in PREFIXES:
        assert f'<td class="prefix">{prefix}' in html
    assert '<td class="prefix">(default)</td>' in html
    assert '<td class="prefix">/<span class="tag">default</span>' in render_status(data_with(prefix="/"))
    assert '<span class="tag">default</span>' in render_status(data_with(is_default=True))


def test_badges_per_state():
    html = render_status(DATA)
    assert '<span class="badge canary">canary 25%</span>' in html
    assert '<span class="badge shadow">shadow</span>' in html
    assert '<span class="badge python">python</span>' in html
    assert '<span class="badge go">go</span>' in html
    assert '<span class="badge go">go (rolled back)</span>' in html  # colour from the first word
    odd = render_status(data_with(state="paused"))
    assert '<span class="badge unknown">paused</span>' in odd


def test_canary_percent_with_fraction():
    assert "canary 2.5%" in render_status(data_with(canary_percent=2.5))


def test_traffic_share_and_parity():
    html = render_status(DATA)
    assert "75% / 25%" in html
    assert "98.3%" in html and "118/120 shadowed" in html
    assert '<span class="bad">88%</span>' in html  # low parity stands out


def test_parity_dash_when_nothing_shadowed():
    for parity in (None, {"shadowed": 0, "matched": 0, "rate": None}):
        html = render_status(data_with(parity=parity))
        row = html.split('<td class="prefix">/users')[1].split("</tr>")[0]
        assert '<td class="num">—</td>' in row
    html = render_status(data_with(parity={"shadowed": 10, "matched": 5}))  # rate derived
    assert "50%" in html


def test_backend_columns_and_python_worse_than_go():
    html = render_status(DATA)
    llm = html.split('<td class="prefix">/llm')[1].split("</tr>")[0]
    assert '<span class="k">go</span>0.1%' in llm
    assert '<span class="split bad"><span class="k">py</span>9%' in llm  # errors up
    assert '<span class="split bad"><span class="k">py</span>2400 ms' in llm  # p99 ×2.7


def test_shadow_replays_get_their_own_line():
    html = render_status(DATA)
    row = html.split('<td class="prefix">/api-keys')[1].split("</tr>")[0]
    assert '<span class="k">go</span>0.25%' in row
    assert '<span class="split bad"><span class="k">py*</span>180 ms' in row  # p99 ×8.6
    assert '<span class="k">py</span>' not in row  # idle in shadow mode: no empty line
    assert '<span class="split warn">3 dropped</span>' in row and "python errors" not in row
    users = html.split('<td class="prefix">/users')[1].split("</tr>")[0]
    assert '<span class="split"><span class="k">py</span>7.5 ms' in users  # faster: not marked


def test_missing_backend_stats_render_as_dash():
    html = render_status(DATA)
    otel = html.split('<td class="prefix">/otel')[1].split("</tr>")[0]
    assert otel.count("—") >= 4 and "no traffic" in otel
    auth = html.split('<td class="prefix">/auth')[1].split("</tr>")[0]
    assert '<span class="k">go</span>—' in auth


def test_minimal_route_does_not_fail():
    html = render_status({"routes": [{"prefix": "/x", "methods": None, "state": "go"}]})
    assert '<td class="prefix">/x</td>' in html and "never" in html


def test_empty_table_and_config_error_banner():
    html = render_status({"generated_at": "t", "table_version": "v", "config_error": "line 3: unknown key 'too'",
                          "routes": []})
    assert "No routes in the table." in html
    assert 'role="alert"' in html and "still serving the last good table. line 3: unknown key 'too'" in Parsed(html).text
    assert 'role="alert"' not in render_status(DATA)


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "never"), (0, "just now"), (9.9, "just now"), (45, "45 s ago"), (180, "3 min ago"),
     (3599, "59 min ago"), (3600, "1 h ago"), (7300, "2 h ago"), (86400, "1 day ago"), (3 * 86400, "3 days ago"),
     (-5, "just now")],
)
def test_humanised_times(seconds, text):
    assert humanise_age(seconds) == text


def test_humanised_times_in_rows():
    html = render_status(DATA)
    assert "3 min ago" in html and "1 min ago" in html and "2 h ago" in html and "3 days ago" in html and "never" in html


def test_percent_formatting():
    assert percent(0.983) == "98.3%" and percent(0.25) == "25%" and percent(1.0) == "100%"
    assert percent(None) == "—" and percent(0.0004, 2) == "0.04%"


# Scripts that would show, if they ran, by renaming the page (an alert()
# would instead hang headless Chromium until its timeout).
HOSTILE = '<script>document.title="pwned"</script>'


def hostile_data() -> dict:
    """Markup in every string the page shows."""
    d = data_with(
        prefix=f"/u{HOSTILE}<b>", methods=["GET<i>", HOSTILE], state=f"canary {HOSTILE}",
        notes=[HOSTILE, "a & b <img src=x onerror=document.title=1>"],
        backends={"go": {"requests": 1, "error_rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0},
                  f"python{HOSTILE}": {"requests": 1, "error_rate": 0.5, "p50_ms": 1.0, "p99_ms": 9.0}},
        top_differences=[{"field": f"body:$.{HOSTILE}", "count": 1,
                          "sample": f'- go:     "{HOSTILE}"\n+ python: "&amp; </pre><script>"'}])
    d["table_version"] = "<v>"
    d["generated_at"] = "&now"
    d["config_error"] = f"line 1: {HOSTILE}"
    return d


def defused(value):
    """``value`` with every <, > and & in its strings (keys too) made a letter."""
    if isinstance(value, str):
        return value.translate(str.maketrans("<>&", "lga"))
    if isinstance(value, dict):
        return {defused(k): defused(v) for k, v in value.items()}
    if isinstance(value, list):
        return [defused(v) for v in value]
    return value


def test_hostile_strings_show_as_text_and_never_as_markup():
    d = hostile_data()
    html = render_status(d)
    page = Parsed(html)
    # No element came from data: the same elements, in the same order, as the
    # page of the same data with the markup characters taken out.
    assert "<script" not in html.lower() and "<img" not in html
    assert page.tags == Parsed(render_status(defused(d))).tags
    # Each string reads exactly as given.
    text = page.text
    for shown in (f"/u{HOSTILE}<b>", f"GET<i>, {HOSTILE}", f"canary {HOSTILE}", HOSTILE,
                  "a & b <img src=x onerror=document.title=1>", f"python{HOSTILE}", f"body:$.{HOSTILE}",
                  "<v>", "&now", f"line 1: {HOSTILE}"):
        assert shown in text, shown
    assert d["routes"][0]["top_differences"][0]["sample"] in page.pres
    assert "&amp;amp;" in html  # "&amp;" in a diff reads as "&amp;", not as "&"
    assert "<h3>/u&lt;script&gt;" in html  # the section heading too


def test_top_differences_section():
    html = render_status(DATA)
    section = html.split("<h2>Top differences")[1]
    assert "<h3>/users</h3>" in section and "<h3>/api-keys</h3>" in section
    assert "<h3>/auth</h3>" not in section
    assert '<td class="field">body:$[*].CreatedAt</td><td class="num">40</td>' in section
    assert USERS["top_differences"][0]["sample"] in Parsed(section).pres  # line breaks and quotes as given
    no_diffs = copy.deepcopy(DATA)
    for r in no_diffs["routes"]:
        r.pop("top_differences", None)
    assert "Top differences" not in render_status(no_diffs)


def test_notes_and_refresh():
    html = render_status(DATA, refresh_s=15)
    assert "<li>auto-rollback armed: error rate +5%, p99 ×1.5, min 100 requests</li>" in html
    assert '<meta http-equiv="refresh" content="15">' in html
    assert "http-equiv" not in render_status(DATA)


# -- in a real browser -------------------------------------------------------------


@contextmanager
def serving(html: str) -> Iterator[str]:
    """``html`` on a loopback port, as the admin endpoint would serve it."""
    page = html.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/_gateway/status"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served_page() -> Iterator[str]:
    with serving(render_status(DATA)) as url:
        yield url


def png_rows(png: bytes, max_rows: int) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """(width, height, RGB pixels of the first max_rows rows): a stdlib PNG reader
    for 8-bit RGB/RGBA, non-interlaced — what Chromium writes."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
        elif kind == b"IDAT":
            idat.append(chunk)
    bpp = 3 if color == 2 else 4
    stride = width * bpp
    n = min(height, max_rows)
    raw = zlib.decompressobj().decompress(b"".join(idat), n * (stride + 1))
    prev, rows = bytearray(stride), []
    for y in range(n):
        filt, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + a) & 255
            elif filt == 2:
                line[i] = (line[i] + b) & 255
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def near(pixel: tuple[int, int, int], hex_colour: str, tolerance: int = 8) -> bool:
    want = bytes.fromhex(hex_colour.lstrip("#"))
    return all(abs(p - w) <= tolerance for p, w in zip(pixel, want))


def test_status_page_renders_in_headless_chromium(served_page: str, tmp_path: Path):
    dom = dump_dom(served_page)
    assert "<title>Migration status</title>" in dom
    body = dom.split('<table class="routes">')[1].split("</table>")[0]
    rows = body.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == len(PREFIXES)
    for row, prefix in zip(rows, PREFIXES):
        assert f'<td class="prefix">{prefix}' in row
    assert "<pre>@ body:$[*].Key" in dom

    png = tmp_path / "status.png"
    screenshot(served_page, png, width=1280, height=900)
    data = png.read_bytes()
    width, height, pixels = png_rows(data, max_rows=420)  # header + route table
    assert (width, height) == (1280, 900)
    colours = {px for row in pixels for px in row}
    assert len(colours) > 50, "the page looks blank"  # text antialiasing alone gives hundreds
    flat = [px for row in pixels for px in row]
    for name, colour in {"go": "#2f6fde", "python": "#1f9d55", "shadow": "#7b4bc4", "canary": "#c77c02"}.items():
        assert sum(near(px, colour) for px in flat) > 100, f"no {name} badge colour on screen"


def test_hostile_strings_stay_text_in_headless_chromium():
    with serving(render_status(hostile_data())) as url:
        dom = dump_dom(url)
    # The DOM Chromium built has no element from data (the serializer would
    # write one as a tag) and shows the strings as text.
    assert "<script" not in dom and "<img" not in dom and "<b>" not in dom
    assert dom.count('&lt;script&gt;document.title="pwned"&lt;/script&gt;') >= 8
    assert "<title>Migration status</title>" in dom  # nothing ran
    body = dom.split('<table class="routes">')[1].split("</table>")[0]
    assert len(body.split("<tbody>")[1].split("</tr>")[:-1]) == len(PREFIXES)  # no row broken up


def test_browser_helper_explains_a_missing_chromium_when_not_root(monkeypatch):
    from . import browser

    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)
    with pytest.raises(browser.BrowserUnavailable, match="apt-get install -y chromium"):
        browser.ensure_chromium()
