"""Turn the raw request path into the one string used for route matching.

The raw path is split on literal ``/`` only, and each segment is percent-decoded
for matching, except ``%2F`` which stays encoded so it can never create a segment
boundary (``/otel/service/a%2Fb/...`` keeps ``a%2Fb`` as one segment, as the Go
router does). Dot-segments, empty segments and backslashes — raw or encoded —
are rejected with 400 rather than normalised: a backend that resolves them
differently from us could otherwise be reached behind the table's back
(``/ping/../users``). The raw bytes are what the forwarder sends upstream.

``/_gateway`` and everything under it is the gateway's own surface
(:func:`is_admin_path`), and ``split_target`` splits a request target into
path and query with the very parser uvicorn uses, for ``explain``.
"""
from __future__ import annotations

from urllib.parse import unquote_to_bytes

import httptools

from .models import RESERVED_PREFIX


class BadPath(ValueError):
    """The path can't be routed safely; the message says why (for the 400)."""


def match_path(raw_path: bytes, query: bytes = b"") -> str:
    if not raw_path.startswith(b"/"):
        raise BadPath("the request path must start with '/'")
    if not raw_path.isascii() or not query.isascii():
        # Browsers percent-encode; raw non-ASCII bytes are forwarded nowhere.
        raise BadPath("the request target must be ASCII (percent-encode other bytes)")
    # Fast path: a plain path with nothing to decode or check further (every
    # request passes here: four substring tests, no generator). On the
    # decoded str: CPython's ``bytes in bytes`` first tries the operand as an
    # int and raises and clears a TypeError, ~2,000 instructions a test.
    path = raw_path.decode("ascii")
    if "%" not in path and "\\" not in path and "/." not in path and "//" not in path:
        return path
    segments = raw_path.split(b"/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, raw in enumerate(segments):
        if raw == b"" and i != last:
            raise BadPath("empty path segments ('//') are not allowed")
        if b"%2f" in raw.lower():
            # Keep encoded slashes inside the segment: decode around them.
            pieces = [_decode(p) for p in _split_ci(raw, b"%2f")]
            seg = "%2F".join(pieces)
        else:
            seg = _decode(raw)
        if seg in (".", ".."):
            raise BadPath("dot-segments ('.', '..') are not allowed in the path")
        if "\\" in seg:
            raise BadPath("backslashes are not allowed in the path")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in seg):
            raise BadPath("control characters are not allowed in the path")
        out.append(seg)
    return "/" + "/".join(out)


def _split_ci(raw: bytes, sep: bytes) -> list[bytes]:
    lower = raw.lower()
    parts, start = [], 0
    while (i := lower.find(sep, start)) != -1:
        parts.append(raw[start:i])
        start = i + len(sep)
    parts.append(raw[start:])
    return parts


def _decode(raw: bytes) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("the path is not valid UTF-8 once percent-decoded") from None


def is_under(path: str, prefix: str) -> bool:
    """``path`` equals ``prefix`` or lies below it on a segment boundary."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


def is_admin_path(path: str) -> bool:
    """``path`` (a :func:`match_path` result) is the gateway's own surface.

    An encoded slash right after the prefix counts too (``/_gateway%2Fhealth``):
    a backend that decodes ``%2F`` would read a path under ``/_gateway/``, so
    such a request never reaches one either.
    """
    return path == RESERVED_PREFIX or path.startswith((RESERVED_PREFIX + "/", RESERVED_PREFIX + "%2F"))


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, query) of a request target, split as uvicorn splits it.

    uvicorn's httptools protocol hands the request line's target to
    ``httptools.parse_url`` and takes its path and query (a ``#fragment`` is
    dropped; the absolute form ``http://host/p?q`` gives ``/p`` and ``q``).
    Raises :class:`BadPath` for a target the parser refuses (uvicorn answers
    those 400 before the gateway sees them).
    """
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise BadPath("not a valid request target (the HTTP server answers 400 before routing)") from None
    return url.path or b"", url.query or b""
