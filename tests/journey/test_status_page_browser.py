"""The migration status page as a person sees it: rendered by headless Chromium."""
from __future__ import annotations

import struct
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.ops.status_page import render_status
from tests.support.browser import dump_dom, screenshot
from tests.support.gateway_proc import routes_yaml
from tests.support.status_samples import DATA, PREFIXES, hostile_data
from tests.support.waiting import until


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
    png = tmp_path / "status.png"
    dom = screenshot(served_page, png, width=1280, height=900)
    assert "<title>Migration status</title>" in dom
    body = dom.split('<table class="routes">')[1].split("</table>")[0]
    rows = body.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == len(PREFIXES)
    for row, prefix in zip(rows, PREFIXES):
        assert f'<td class="prefix">{prefix}' in row
    assert "<pre>@ body:$[*].Key" in dom

    data = png.read_bytes()
    width, height, pixels = png_rows(data, max_rows=420)  # header + route table
    assert (width, height) == (1280, 900)
    # Pixels counted by colour: the page is mostly a few flat colours, so the
    # closeness test runs once per distinct colour, not once per pixel.
    colours = Counter(px for row in pixels for px in row)
    assert len(colours) > 50, "the page looks blank"  # text antialiasing alone gives hundreds
    for name, colour in {"go": "#2f6fde", "python": "#1f9d55", "shadow": "#7b4bc4", "canary": "#c77c02"}.items():
        assert sum(n for px, n in colours.items() if near(px, colour)) > 100, f"no {name} badge colour on screen"


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


LIVE_ROUTES = """  - prefix: /_standin/echo/mirror
    to: shadow
    diff:
      ignore: ["$.headers", "$.raw_head", "$.dry_run_writes"]
  - prefix: /_standin/echo
    to: canary
    percent: 30
"""


def test_status_page_of_a_live_gateway_renders_in_headless_chromium(gateway_factory, standin, tmp_path):
    gw = gateway_factory(routes_yaml(standin.url, LIVE_ROUTES), env={"GATEWAY_SECRET": "s"})
    with httpx.Client(base_url=gw.url) as c:
        for tail in ("ok", "planted", "ok"):
            c.get(f"/_standin/echo/mirror/{tail}")
        for _ in range(5):
            httpx.get(gw.url + "/_standin/echo")

    def mirror_route() -> dict:
        routes = gw.admin_get("/_gateway/status.json").json()["routes"]
        return next(r for r in routes if r["prefix"] == "/_standin/echo/mirror")

    until(lambda: (r := mirror_route())["parity"] and r["parity"]["shadowed"] == 3)
    # The page is behind the admin token; a browser answers the 401's Basic
    # challenge with the URL's credentials (the token is the password), as a
    # person answers the login prompt.
    page = gw.url.replace("http://", f"http://admin:{gw.admin_token}@") + "/_gateway/status"
    assert "Migration status" not in dump_dom(gw.url + "/_gateway/status")  # no token, no page
    png = tmp_path / "status.png"
    dom = screenshot(page, png)
    assert "Migration status" in dom
    for text in ("/_standin/echo/mirror", "/_standin/echo", "(default)", "canary 30%", "body:$.body_len"):
        assert text in dom, text
    assert png.stat().st_size > 10_000
