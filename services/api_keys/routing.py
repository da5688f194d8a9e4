"""Echo's view of a request path, for routes whose last segment is a ``:param``.

Two legacy router behaviours a Python route must copy (both checked against
the Go stand-in, which runs Echo v4.13.3):

* **raw or decoded**: Go keeps ``URL.RawPath`` only when the request's
  escaping differs from Go's default escaping of the decoded path (e.g.
  ``%41`` for ``A``, ``%2F``), and Echo then routes on the *raw* path, so the
  param is the still-escaped text. :func:`echo_path` reproduces that choice.
* **a trailing param takes the rest**: ``/api_keys/:key`` matches
  ``/api_keys/k/extra`` with ``key = "k/extra"`` (and ``/api_keys//k`` with
  ``"/k"``), but never the empty string: ``/api_keys/`` is a 404.
"""
from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from services.registry import Scope

# Bytes Go's url.escape(..., encodePath) leaves alone besides alphanumerics and -_.~
_GO_PATH_SAFE = "$&+,/:;=@"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _valid_escapes(raw: bytes) -> bool:
    i = raw.find(b"%")
    while i != -1:
        if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
            return False
        i = raw.find(b"%", i + 3)
    return True


def echo_path(scope: Scope) -> str:
    """The path Echo routes on: the decoded path, or the raw one when Go keeps RawPath."""
    raw: bytes = scope.get("raw_path") or b""
    decoded: str = scope["path"]
    if not raw:
        return decoded
    raw = raw.split(b"?", 1)[0]
    if not _valid_escapes(raw):
        return raw.decode("latin-1")
    plain = unquote_to_bytes(raw)
    if quote(plain, safe=_GO_PATH_SAFE).encode("ascii") == raw:
        return plain.decode("utf-8", errors="replace")
    return raw.decode("latin-1")
