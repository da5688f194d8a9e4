"""Stored JSON columns as the legacy's Go code re-reads and serves them.

(Values built at ingestion are written with the shared encoder,
``services.common.gojson.encode``: Go ``encoding/json`` bytes, keys sorted.)

:func:`parse_as_go` + :func:`dumps` — what go-duckdb + ``json.Marshal`` make
  of a stored JSON column when a route serves it: every number goes through
  float64 (``1.0`` → ``1``, ints above 2^53 lose precision), an out-of-range
  number becomes ``null`` in place, text Go cannot parse (NaN, Infinity,
  trailing commas) makes the whole value ``null``.

The hot path (serving rows) leans on the C ``json`` encoder: numbers are
normalised while parsing so that Python's ``repr`` of what is left equals Go's
text; the rare float Python would print differently (|x| < 1e-4 or ≥ 1e16,
non-integral) switches that response to the pure-Python encoder.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from services.common.gojson import encode, encode_fast, encode_indent

# --- serving side: stored JSON text → Go's float64 view → response bytes ------

class _Unparseable(ValueError):
    pass


class _Flags:
    """Set when a parsed float needs Go formatting Python's repr would not give."""
    __slots__ = ("odd",)

    def __init__(self) -> None:
        self.odd = False


def _number(f: float, flags: _Flags) -> Any:
    if math.isinf(f) or math.isnan(f):
        return None  # out of range for float64: Go leaves null in place
    if f.is_integer():
        if f == 0 and math.copysign(1.0, f) < 0:
            flags.odd = True  # Go writes -0, Python -0.0
            return f
        if abs(f) < 2 ** 53:
            return int(f)
        if abs(f) < 1e21:
            return int(Decimal(repr(f)))  # Go's shortest digits, zero-padded
        flags.odd = True
        return f
    a = abs(f)
    if not (1e-4 <= a < 1e16):
        flags.odd = True
    return f


def parse_as_go(text: str | None, flags: _Flags | None = None) -> Any:
    """A stored JSON column as go-duckdb + Go would hand it to ``json.Marshal``.

    None when ``text`` is NULL or Go cannot parse it.
    """
    if text is None:
        return None
    flags = flags or _Flags()

    def parse_float(s: str) -> Any:
        return _number(float(s), flags)

    def parse_int(s: str) -> Any:
        try:
            return _number(float(int(s)), flags)
        except (OverflowError, ValueError):
            return None

    def parse_constant(s: str) -> Any:
        raise _Unparseable(s)

    try:
        return json.loads(text, parse_float=parse_float, parse_int=parse_int,
                          parse_constant=parse_constant)
    except (ValueError, RecursionError):
        return None


def new_flags() -> _Flags:
    return _Flags()


def dumps(value: Any, *, pretty: bool = False, odd_floats: bool = False) -> bytes:
    """Response bytes for ``value`` as Echo's ``c.JSON`` writes them (with ``\\n``).

    ``odd_floats`` (from :func:`parse_as_go`'s flags) forces the exact
    pure-Python encoder; otherwise the C encoder's output is already Go's.
    -0.0 also needs it (Python writes ``-0.0``).
    """
    if odd_floats:
        text = encode_indent(value) if pretty else encode(value)
    else:
        text = encode_fast(value, indent=pretty)
    return text.encode("utf-8", "surrogatepass") + b"\n"
