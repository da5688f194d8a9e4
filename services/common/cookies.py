"""Cookies as Go's net/http reads and writes them.

``format_set_cookie`` reproduces ``(*http.Cookie).String()``: attribute order
Path, Domain, Expires, Max-Age, HttpOnly, Secure, SameSite; a leading dot of
Domain is dropped on the wire (Go: "A leading dot is okay but won't be sent");
a negative ``max_age`` is written ``Max-Age=0``.

``request_cookies`` reproduces ``(*http.Request).Cookies()``: every ``Cookie``
header, split on ``;``, invalid names/values skipped, surrounding quotes removed,
and **no cookie at all** when the headers hold more than 3,000 (Go 1.24+'s
``httpcookiemaxnum``, counted as Go does: ``;`` + 1 per header line). Past that
limit the legacy sees neither the ``csrf`` nor the ``session`` cookie: a write
is a CSRF 400, a read a 401.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def http_date(epoch_seconds: float) -> str:
    """Go's ``http.TimeFormat``: ``Mon, 02 Jan 2006 15:04:05 GMT``."""
    dt = datetime.fromtimestamp(int(epoch_seconds), tz=UTC)
    return format_datetime(dt, usegmt=True)


# A byte Go's validCookieValueByte refuses: outside 0x20–0x7E, or '"', ';', '\\'.
# One regex pass: these run for every Set-Cookie and every cookie read.
_INVALID_VALUE_CHAR = re.compile(r'[^\x20-\x7E]|[";\\]')


def _valid_value(value: str) -> bool:
    return _INVALID_VALUE_CHAR.search(value) is None


def _sanitize_value(value: str) -> str:
    value = _INVALID_VALUE_CHAR.sub("", value)
    if " " in value or "," in value:  # Go's sanitizeCookieValue quotes these anywhere
        return f'"{value}"'
    return value


def format_set_cookie(
    name: str,
    value: str,
    *,
    path: str | None = None,
    domain: str | None = None,
    expires: float | None = None,
    max_age: int | None = None,
    http_only: bool = False,
    secure: bool = False,
    same_site: str | None = None,
) -> str:
    """A ``Set-Cookie`` value identical to Go's for the same ``http.Cookie``."""
    parts = [f"{name}={_sanitize_value(value)}"]
    if path:
        parts.append(f"Path={path}")
    if domain:
        parts.append(f"Domain={domain[1:] if domain.startswith('.') else domain}")
    if expires is not None:
        parts.append(f"Expires={http_date(expires)}")
    if max_age is not None and max_age > 0:
        parts.append(f"Max-Age={max_age}")
    elif max_age is not None and max_age < 0:
        parts.append("Max-Age=0")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    if same_site:
        parts.append(f"SameSite={same_site}")
    return "; ".join(parts)


MAX_COOKIES = 3000  # net/http's defaultCookieMaxNum


def parse_cookie_header(lines: Iterable[str]) -> list[tuple[str, str]]:
    """All (name, value) pairs from the given ``Cookie`` header values, in order."""
    lines = list(lines)
    if sum(line.count(";") + 1 for line in lines) > MAX_COOKIES:
        return []
    found: list[tuple[str, str]] = []
    for line in lines:
        for part in line.split(";"):
            part = part.strip(" \t")
            if not part:
                continue
            name, _, value = part.partition("=")
            name = name.strip(" \t")
            if not _TOKEN_RE.match(name):
                continue
            if len(value) > 1 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            if not _valid_value(value):
                continue
            found.append((name, value))
    return found


def request_cookies(scope: MutableMapping[str, Any]) -> list[tuple[str, str]]:
    lines = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"cookie"]
    return parse_cookie_header(lines)


def get_cookie(scope: MutableMapping[str, Any], name: str) -> str | None:
    """The first cookie called ``name``, as ``r.Cookie(name)`` picks it."""
    for cname, value in request_cookies(scope):
        if cname == name:
            return value
    return None
