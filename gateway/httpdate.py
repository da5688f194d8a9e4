"""The ``Date`` header for answers the gateway makes itself (RFC 9110 §6.6.1).

uvicorn runs with ``date_header=False`` because a proxied answer carries the Go
backend's own Date, and a second one would contradict it. Everything else the
gateway answers (Python routes, its own 400/409/500/502/504, ``/_gateway/*``,
the CORS preflight) gets one here, only when the headers have none.

This runs for every request, so the IMF-fixdate text is built at most once a
second and reused in between.
"""
from __future__ import annotations

import time
from email.utils import formatdate

from .context import RawHeaders

_cache: tuple[int, bytes] = (-1, b"")


def http_date() -> bytes:
    """Now as an IMF-fixdate, e.g. ``b"Wed, 02 Dec 2026 08:22:58 GMT"``."""
    global _cache
    second = int(time.time())
    if _cache[0] != second:
        _cache = (second, formatdate(second, usegmt=True).encode("ascii"))
    return _cache[1]


def has_date(headers: RawHeaders) -> bool:
    return any(name.lower() == b"date" for name, _ in headers)


def add_date(headers: RawHeaders) -> RawHeaders:
    """``headers`` with a Date appended unless it already has one (in place)."""
    if not has_date(headers):
        headers.append((b"date", http_date()))
    return headers
