"""Go ``encoding/json`` output, byte for byte (Go ≥ 1.22), for every feature.

Compact; ``<``/``>``/``&`` and U+2028/U+2029 escaped; ``\\b``/``\\f``/``\\n``/
``\\r``/``\\t`` short, other control characters ``\\u00xx``; lone surrogates
as U+FFFD; a float64 in Go's shortest form (``1``, ``1e+21``, ``1.5e-7``, ``-0``).
``encode(..., sort_keys=True)`` is a Go map (keys sorted); ``sort_keys=False``
keeps dict order, for values Go marshals from a struct.
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
    sign, digits, raw_exp = Decimal(repr(f)).as_tuple()
    exp = int(raw_exp)  # a finite float: never 'n', 'N' or 'F'
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

def _enc(value: Any, out: list[str], sort_keys: bool = True) -> None:
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
        for i, key in enumerate(sorted(value) if sort_keys else value):
            if i:
                out.append(",")
            out.append(go_string(str(key)))
            out.append(":")
            _enc(value[key], out, sort_keys)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _enc(item, out, sort_keys)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


def encode(value: Any, *, sort_keys: bool = True) -> str:
    """Go ``json.Marshal`` text of ``value``."""
    out: list[str] = []
    _enc(value, out, sort_keys)
    return "".join(out)


def _enc_indent(value: Any, out: list[str], level: int, sort_keys: bool = True) -> None:
    if isinstance(value, dict) and value:
        out.append("{")
        for i, key in enumerate(sorted(value) if sort_keys else value):
            out.append(("," if i else "") + "\n" + "  " * (level + 1))
            out.append(go_string(str(key)) + ": ")
            _enc_indent(value[key], out, level + 1, sort_keys)
        out.append("\n" + "  " * level + "}")
    elif isinstance(value, (list, tuple)) and value:
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + "\n" + "  " * (level + 1))
            _enc_indent(item, out, level + 1, sort_keys)
        out.append("\n" + "  " * level + "]")
    else:
        _enc(value, out, sort_keys)


def encode_indent(value: Any, *, sort_keys: bool = True) -> str:
    """What Go's encoder writes after ``SetIndent("", "  ")`` (Echo's ``?pretty``)."""
    out: list[str] = []
    _enc_indent(value, out, 0, sort_keys)
    return "".join(out)


def encode_fast(value: Any, *, indent: bool = False, sort_keys: bool = True) -> str:
    """:func:`encode` / :func:`encode_indent` through the C ``json`` encoder.

    Many times faster on large values, and the same text provided every float
    in ``value`` is one Python's ``repr`` spells as Go does: not -0.0, and
    non-integral floats with 1e-4 ≤ |x| < 1e16 (integral floats must already be
    ints). Callers that cannot promise it use :func:`encode`. Lone surrogates are
    written as they are (Go writes U+FFFD).
    """
    if indent:
        text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, indent=2,
                          separators=(",", ": "), allow_nan=False)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys,
                          separators=(",", ":"), allow_nan=False)
    return text.translate(_GO_ONLY)
