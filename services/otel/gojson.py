"""JSON exactly as the legacy's Go code writes and re-reads it.

Two directions:

* :func:`encode` — Go ``encoding/json`` (Go ≥ 1.22) bytes for values we build
  at ingestion (attributes, events): compact, keys sorted, ``<``/``>``/``&`` and
  U+2028/U+2029 escaped, ``\\b``/``\\f``/``\\n``/``\\r``/``\\t`` short forms,
  other control characters ``\\u00xx``, float64 in Go's shortest form.
* :func:`parse_as_go` + :func:`dumps` — what go-duckdb + ``json.Marshal`` make
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

_GO_ONLY = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                          "\u2028": "\\u2028", "\u2029": "\\u2029"})
_py_string = json.encoder.encode_basestring  # C: escapes " \\ \b \f \n \r \t, \u00xx lowercase


def go_string(s: str) -> str:
    """A JSON string literal as Go writes it."""
    if any("\ud800" <= ch <= "\udfff" for ch in s):  # lone surrogate: Go writes U+FFFD
        s = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in s)
    return _py_string(s).translate(_GO_ONLY)


def go_float(f: float) -> str:
    """``strconv.FormatFloat`` as ``encoding/json`` uses it for a float64.

    Shortest round-trip digits; positional when 1e-6 ≤ |x| < 1e21 (no ``.0``),
    otherwise ``d.ddde±N`` without a leading zero in the exponent.
    NaN/±Inf raise ValueError (Go: ``json: unsupported value``).
    """
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f!r}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    exp += len(digits) - len(ds)  # value = ds * 10**exp
    neg = "-" if sign else ""
    a = abs(f)
    if 1e-6 <= a < 1e21:
        if exp >= 0:
            return neg + ds + "0" * exp
        point = len(ds) + exp
        if point > 0:
            return f"{neg}{ds[:point]}.{ds[point:]}"
        return f"{neg}0.{'0' * -point}{ds}"
    e10 = exp + len(ds) - 1
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{neg}{mant}e{'-' if e10 < 0 else '+'}{abs(e10)}"


# --- ingestion-side encoder (small values, pure Python is fine) -------------

def _enc(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(go_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(go_string(key))
            out.append(":")
            _enc(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _enc(item, out)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


def encode(value: Any) -> str:
    """Go ``json.Marshal`` text of ``value`` (dict keys sorted, as for a Go map)."""
    out: list[str] = []
    _enc(value, out)
    return "".join(out)


def _enc_indent(value: Any, out: list[str], level: int) -> None:
    if isinstance(value, dict) and value:
        out.append("{")
        for i, key in enumerate(sorted(value)):
            out.append(("," if i else "") + "\n" + "  " * (level + 1))
            out.append(go_string(key) + ": ")
            _enc_indent(value[key], out, level + 1)
        out.append("\n" + "  " * level + "}")
    elif isinstance(value, (list, tuple)) and value:
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + "\n" + "  " * (level + 1))
            _enc_indent(item, out, level + 1)
        out.append("\n" + "  " * level + "]")
    else:
        _enc(value, out)


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
        out: list[str] = []
        if pretty:
            _enc_indent(value, out, 0)
        else:
            _enc(value, out)
        text = "".join(out)
    elif pretty:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2,
                          separators=(",", ": "), allow_nan=False).translate(_GO_ONLY)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True,
                          separators=(",", ":"), allow_nan=False).translate(_GO_ONLY)
    return text.encode("utf-8", "surrogatepass") + b"\n"
