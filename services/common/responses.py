"""Responses byte-for-byte as Echo v4.13.3 writes them.

``c.JSON`` → ``Content-Type: application/json`` and Go ``encoding/json`` bytes
(compact, ``<``/``>``/``&``/U+2028/U+2029 escaped, ``\\u00XX`` for control bytes
other than ``\\b``/``\\f``/``\\n``/``\\r``/``\\t``) followed by ``"\\n"``. Echo's default HTTP
error handler answers ``{"message": "..."}`` the same way (no body for HEAD).
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Iterable

from starlette.responses import Response

MIME_JSON = "application/json"

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\b": "\\b", "\f": "\\f",  # Go ≥ 1.22 writes these short too
            "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
            "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_string(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        elif "\ud800" <= ch <= "\udfff":  # lone surrogate: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {f!r}")
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    a = abs(f)
    if 1e-6 <= a < 1e21:
        return format(Decimal(repr(f)).normalize(), "f")
    mant, exp = repr(f).split("e") if "e" in repr(f) else (repr(f), "0")
    sign = "-" if exp.startswith("-") else "+"
    return f"{mant.removesuffix('.0')}e{sign}{int(exp.lstrip('+-'))}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_go_float(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_go_string(str(k)))
            out.append(":")
            _encode(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"json: unsupported type: {type(value).__name__}")


def go_json(value: Any) -> bytes:
    """``json.Marshal`` bytes (no trailing newline). Dict order is kept:
    sort the keys yourself where Go marshals a map (maps come out sorted)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def json_response(
    value: Any,
    status_code: int = 200,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """What Echo's ``c.JSON(status, value)`` sends."""
    response = Response(go_json(value) + b"\n", status_code=status_code, media_type=MIME_JSON)
    for name, val in headers:
        response.raw_headers.append((name.lower().encode("latin-1"), val.encode("latin-1")))
    return response


def error_response(status_code: int, message: str, *, method: str = "GET",
                   headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Echo's default HTTP error handler for ``echo.NewHTTPError(status, message)``."""
    if method == "HEAD":
        response = Response(b"", status_code=status_code)
        for name, val in headers:
            response.raw_headers.append((name.lower().encode("latin-1"), val.encode("latin-1")))
        return response
    return json_response({"message": message}, status_code, headers)


def error_body(message: str) -> bytes:
    """The body of an Echo framework error, for raw ASGI senders."""
    return go_json({"message": message}) + b"\n"
