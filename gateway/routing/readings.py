"""Each backend's reading of a percent-encoded path, checked against the table.

The gateway routes on its own decoding (paths.py): each segment decoded, an
encoded slash kept inside its segment. The backends read the same raw bytes
their own way:

* the Go backend routes as Echo does: on ``URL.RawPath`` (the raw bytes) when
  net/url set it — whenever the raw path is not Go's canonical escaping of the
  decoded one, e.g. ``g%6F`` or ``a%2Fb`` — and on the decoded ``URL.Path``
  otherwise;
* a Python service routes on uvicorn's ``scope["path"]``: every escape
  decoded, ``%2F`` included.

Found by the routing fuzz test (tests/wire/test_edge_fuzz.py): with ``/x`` on
Python and ``/x/go`` on Go, ``/x/g%6F`` went to Go (the gateway read
``/x/go``) but Go routed it as the literal ``/x/g%6F`` — a path the table gives
to Python; and ``/x/go%2Fpy`` went to Python, which read ``/x/go/py``, Go's.
A path whose readings fall to different routes is refused with 400, never
sent to a backend that would treat it as another route's.
"""
from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import unquote, unquote_to_bytes

from .paths import BadPath, is_under

# Bytes Go's url.PathEscape leaves alone in a path (net/url shouldEscape, encodePath).
_GO_KEEP = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


class _Table(Protocol):
    def lookup(self, path: str, method: str) -> object: ...


def go_reading(raw_path: bytes) -> str | None:
    """The path Echo routes on; None when net/url refuses it (Go answers 400)."""
    if _BAD_ESCAPE.search(raw_path):
        return None
    decoded = unquote_to_bytes(raw_path)
    canonical = b"".join(bytes((c,)) if c in _GO_KEEP else b"%%%02X" % c for c in decoded)
    if canonical != raw_path:
        return raw_path.decode("latin-1")
    return decoded.decode("utf-8", "replace")


def python_reading(raw_path: bytes) -> str:
    """uvicorn's ``scope["path"]``, what a Starlette router matches on."""
    return unquote(raw_path.decode("ascii"))


def check_readings(raw_path: bytes, path: str, table: _Table, method: str, admin_prefix: str) -> None:
    """Raise BadPath unless every backend's reading of ``raw_path`` falls to
    the route the gateway's own reading ``path`` does. Only for paths with a
    ``%`` (the caller checks): without one, all readings are the same string."""
    readings = {r for r in (go_reading(raw_path), python_reading(raw_path)) if r is not None and r != path}
    if not readings:
        return
    if is_under(path, admin_prefix):
        return  # the gateway's own surface: no backend reads it
    if any(is_under(r, admin_prefix) for r in readings):
        raise BadPath(f"once percent-decoded the path is under {admin_prefix}/, which is never forwarded")
    route = table.lookup(path, method)
    for reading in readings:
        if table.lookup(reading, method) is not route:
            raise BadPath("the path's percent-encoding makes it another route's path for a backend "
                          "(Go or Python) that decodes it differently; encode only what must be encoded")
