"""Build httpx objects without their validating constructors, on the hot path.

httpx stays the API between the forwarder and its transport (respx and
``httpx.MockTransport`` stand in for it in tests), but its constructors
re-parse what the gateway already holds in canonical form: uvicorn hands us a
raw, lower-cased header list and an already-split path and query. Rebuilding
them through the public API costs ~11 µs per URL and ~1.4 µs per header list
(measured here; twice a request), ~15 % of a proxied request's CPU.
``headers_from_fields`` and ``url_with_target`` fill httpx's private fields
(``Headers._list``, ``Headers._encoding``, ``URL._uri_reference``) directly
instead. ``Headers._list`` holds ``(name, lower-cased name, value)``: the
gateway keeps its headers that way from where it first reads them (the
forwarder's filter, the upstream parser), so each name is lower-cased once,
and ``header_triples`` reads the list back instead of copying ``.raw``.

That is a deliberate bet on one httpx release (see the README, "The httpx
seam"): pyproject pins the range it was tested with (0.28.x; 0.28 is httpx's
last release). Should another httpx be installed anyway, :data:`FAST` is
False — checked once, at import, against the public API — and the helpers
take the public API: slower, never wrong. The unit test
``test_httpx_internals_are_the_ones_httpx_fast_writes`` fails in that case,
so a change of httpx is caught in CI, not in production.
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

_URI_FIELDS = ("scheme", "userinfo", "host", "port", "path", "query", "fragment")


def _fields_headers(fields: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    headers = httpx.Headers.__new__(httpx.Headers)
    headers._list = fields
    headers._encoding = None
    return headers


def _fast_request(method: str, url: httpx.URL, headers: httpx.Headers,
                  stream: httpx.AsyncByteStream) -> httpx.Request:
    # What Request.__init__ sets for a streamed request (no params, cookies or
    # content), without copying the URL and the header list it is handed.
    request = httpx.Request.__new__(httpx.Request)
    request.method = method.upper()
    request.url = url
    request.headers = headers
    request.extensions = {}
    request.stream = stream
    return request


def _fast_response(status: int, headers: httpx.Headers, stream: httpx.AsyncByteStream,
                   request: httpx.Request, extensions: dict[str, Any]) -> httpx.Response:
    # What Response.__init__ sets for a streamed response (no content, no
    # history), without copying the header list it is handed.
    response = httpx.Response.__new__(httpx.Response)
    response.status_code = status
    response.headers = headers
    response._request = request
    response.next_request = None
    response.extensions = extensions
    response.history = []
    response.is_closed = False
    response.is_stream_consumed = False
    response.default_encoding = "utf-8"
    response.stream = stream
    response._num_bytes_downloaded = 0
    return response


def _same_object(built: object, expected: object) -> bool:
    """``built`` holds the very attributes ``expected`` does, with equal values."""
    mine, theirs = vars(built), vars(expected)
    return mine.keys() == theirs.keys() and all(mine[k] == theirs[k] for k in theirs)


def _fast_url(base: httpx.URL, raw_path: bytes, query: bytes) -> httpx.URL:
    ref = base._uri_reference
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = tuple.__new__(type(ref), (
        ref.scheme, ref.userinfo, ref.host, ref.port,
        raw_path.decode("ascii"), query.decode("ascii") if query else None, None,
    ))
    return url


def _public_url(base: httpx.URL, raw_path: bytes, query: bytes) -> httpx.URL:
    return httpx.URL(scheme=base.scheme, host=base.host, port=base.port,
                     raw_path=raw_path + b"?" + query if query else raw_path)


def internals_match() -> bool:
    """True when this httpx keeps the private fields the fast builders fill,
    and what they build equals what the public API builds."""
    try:
        pairs = [(b"Host", b"h"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        public = httpx.Headers(pairs)
        if getattr(public, "_list", None) != [(n, n.lower(), v) for n, v in pairs]:
            return False
        fast = _fields_headers([(n, n.lower(), v) for n, v in pairs])
        if (fast.raw != public.raw or fast.multi_items() != public.multi_items() or fast.encoding != public.encoding
                or fast != public):
            return False
        base = httpx.URL("http://legacy.internal:1323")
        if getattr(getattr(base, "_uri_reference", None), "_fields", None) != _URI_FIELDS:
            return False
        stream = httpx.ByteStream(b"")  # any stream: compared by identity
        request = httpx.Request("get", base, headers=public, stream=stream)
        if not _same_object(_fast_request("get", base, _fields_headers(list(public._list)), stream), request):
            return False
        extensions = {"http_version": b"HTTP/1.1"}
        response = httpx.Response(200, headers=public, stream=stream, request=request, extensions=extensions)
        if not _same_object(_fast_response(200, _fields_headers(list(public._list)), stream, request,
                                           extensions), response):
            return False
        for path, query in ((b"/a%2Fb/%7e/x", b"q=1&q=2"), (b"/p", b"")):
            built, expected = _fast_url(base, path, query), _public_url(base, path, query)
            if (built != expected or str(built) != str(expected) or built.raw_path != expected.raw_path
                    or built.netloc != expected.netloc):
                return False
    except Exception:  # any surprise at all: take the public API
        return False
    return True


FAST = internals_match()
if not FAST:
    logging.getLogger("gateway.forward").warning(
        "httpx %s does not keep the private fields gateway/upstream/httpx_fast.py fills; building requests "
        "with httpx's public API instead (correct, ~15 %% more CPU per proxied request). pyproject pins the "
        "tested httpx range.", httpx.__version__)


def headers_from_fields(fields: list[tuple[bytes, bytes, bytes]]) -> httpx.Headers:
    """An ``httpx.Headers`` over ``(name, lower-cased name, value)`` triples,
    which it keeps as they are (the caller hands the list over)."""
    return _fields_headers(fields) if FAST else httpx.Headers([(name, value) for name, _, value in fields])


def new_request(method: str, url: httpx.URL, headers: httpx.Headers,
                stream: httpx.AsyncByteStream) -> httpx.Request:
    """``httpx.Request(method, url, headers=headers, stream=stream)``, keeping
    the URL and headers it is handed instead of copying them."""
    return (_fast_request(method, url, headers, stream) if FAST
            else httpx.Request(method, url, headers=headers, stream=stream))


def new_response(status: int, headers: httpx.Headers, stream: httpx.AsyncByteStream, request: httpx.Request,
                 extensions: dict[str, Any]) -> httpx.Response:
    """``httpx.Response(status, headers=..., stream=..., request=..., extensions=...)``,
    keeping the headers and extensions it is handed instead of copying them."""
    return (_fast_response(status, headers, stream, request, extensions) if FAST
            else httpx.Response(status, headers=headers, stream=stream, request=request, extensions=extensions))


def header_triples(headers: httpx.Headers) -> list[tuple[bytes, bytes, bytes]]:
    """``(name as sent, lower-cased name, value)`` for each header, in order:
    the list httpx keeps inside (never to be changed), so no ``.raw`` copy and
    no ``lower()`` a header again."""
    return headers._list if FAST else [(n, n.lower(), v) for n, v in headers.raw]


def url_with_target(base: httpx.URL, raw_path: bytes, query: bytes) -> httpx.URL:
    """``base`` with the client's path and query, byte for byte (ASCII only)."""
    return _fast_url(base, raw_path, query) if FAST else _public_url(base, raw_path, query)
