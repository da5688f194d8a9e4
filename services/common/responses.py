"""Responses byte-for-byte as Echo v4.13.3 writes them.

``c.JSON`` → ``Content-Type: application/json`` and Go ``encoding/json`` bytes
(compact, ``<``/``>``/``&``/U+2028/U+2029 escaped, ``\\u00XX`` for control bytes
other than ``\\b``/``\\f``/``\\n``/``\\r``/``\\t``) followed by ``"\\n"``. Echo's default HTTP
error handler answers ``{"message": "..."}`` the same way (no body for HEAD).
"""
from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from starlette.responses import Response

from .gojson import encode, encode_indent
from .goquery import has_key

# Echo's c.JSON indents when the request has a ``pretty`` query parameter; the
# protection middleware sets this for the request it is serving.
PRETTY: ContextVar[bool] = ContextVar("echo_pretty", default=False)


def wants_pretty(query_string: bytes) -> bool:
    """Go's ``c.QueryParams()["pretty"]`` is present (any value, even empty).

    ``c.QueryParams()`` is ``url.ParseQuery``: keys are unescaped (``%70retty``
    counts, ``+`` is a space) and a pair whose value is malformed (``pretty=%zz``)
    or that holds ``;`` is dropped (services/common/goquery.py)."""
    return has_key(query_string, b"pretty")

MIME_JSON = "application/json"


def go_json(value: Any, *, pretty: bool | None = None) -> bytes:
    """``json.Marshal`` bytes (no trailing newline). Dict order is kept:
    sort the keys yourself where Go marshals a map (maps come out sorted).
    ``pretty`` defaults to the request's ``?pretty`` (:data:`PRETTY`)."""
    if PRETTY.get() if pretty is None else pretty:
        return encode_indent(value, sort_keys=False).encode("utf-8")
    return encode(value, sort_keys=False).encode("utf-8")


def json_response(
    value: Any,
    status_code: int = 200,
    headers: Iterable[tuple[str, str]] = (),
    *,
    pretty: bool | None = None,
) -> Response:
    """What Echo's ``c.JSON(status, value)`` sends."""
    response = Response(go_json(value, pretty=pretty) + b"\n", status_code=status_code, media_type=MIME_JSON)
    for name, val in headers:
        response.raw_headers.append((name.lower().encode("latin-1"), val.encode("latin-1")))
    return response


def error_response(status_code: int, message: str, *, method: str = "GET",
                   headers: Iterable[tuple[str, str]] = (), pretty: bool | None = None) -> Response:
    """Echo's default HTTP error handler for ``echo.NewHTTPError(status, message)``.

    For HEAD it calls ``c.NoContent(code)``: no body, no Content-Type, and Go's
    net/http writes no Content-Length for an empty HEAD answer either.
    """
    if method == "HEAD":
        response = Response(b"", status_code=status_code)
        response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
        for name, val in headers:
            response.raw_headers.append((name.lower().encode("latin-1"), val.encode("latin-1")))
        return response
    return json_response({"message": message}, status_code, headers, pretty=pretty)


def error_body(message: str) -> bytes:
    """The body of an Echo framework error, for raw ASGI senders."""
    return go_json({"message": message}) + b"\n"
