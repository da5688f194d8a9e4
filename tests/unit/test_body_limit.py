"""The body cap every Python feature runs behind (services/body_limit.py), in-process.

The wire behaviour (413 before the body is read, the connection closed, RSS
flat for 1 GiB, Go routes unaffected by hostile JSON) is in
tests/test_body_limits_wire.py.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from services.body_limit import DEFAULT_MAX_BODY, BodyLimit, BodyTooLarge
from services.registry import Service

TOO_LARGE = b'{"message":"Request Entity Too Large"}\n'


class Reader:
    """A feature that reads its whole body, then answers with its size."""

    def __init__(self, swallow: bool = False) -> None:
        self.swallow = swallow
        self.read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            while True:
                message = await receive()
                self.read += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
        except BodyTooLarge:
            if not self.swallow:
                raise
            # a feature that catches everything and answers anyway: must not win
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"oops"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.read).encode()})


def run(app: Any, *, chunks: list[bytes], headers: list[tuple[bytes, bytes]] = (),
        method: str = "POST", query: bytes = b"", **call: Any) -> tuple[int, dict[bytes, bytes], bytes, int]:
    """(status, headers, body, chunks handed out) for one request through ``Service.call``."""
    handed = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal handed
        if handed < len(chunks):
            handed += 1
            return {"type": "http.request", "body": chunks[handed - 1], "more_body": handed < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/x", "raw_path": b"/x", "query_string": query,
             "headers": list(headers)}
    asyncio.run(Service("x", ("/x",), app).call(scope, receive, send, **call))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, handed


def test_a_declared_length_over_the_cap_is_413_before_the_feature_runs():
    feature = Reader()
    status, headers, body, handed = run(feature, chunks=[b"x"] * 3,
                                        headers=[(b"content-length", str(DEFAULT_MAX_BODY + 1).encode())])
    assert (status, body, handed, feature.read) == (413, TOO_LARGE, 0, 0)
    assert headers[b"connection"] == b"close" and headers[b"content-type"] == b"application/json"


def test_at_the_cap_the_feature_gets_its_body():
    status, _, body, _ = run(Reader(), chunks=[b"x" * DEFAULT_MAX_BODY],
                             headers=[(b"content-length", str(DEFAULT_MAX_BODY).encode())])
    assert (status, body) == (200, str(DEFAULT_MAX_BODY).encode())


def test_a_chunked_body_stops_being_read_at_the_cap():
    chunk = b"x" * 65536
    feature = Reader()
    status, headers, body, handed = run(feature, chunks=[chunk] * 64, max_body=200_000)
    assert (status, body) == (413, TOO_LARGE) and headers[b"connection"] == b"close"
    assert handed == 4  # 4 x 64 KiB is the first read past 200,000 bytes; nothing after it


def test_a_feature_that_swallows_the_error_still_answers_413():
    status, _, body, _ = run(Reader(swallow=True), chunks=[b"x" * 10] * 3, max_body=15)
    assert (status, body) == (413, TOO_LARGE)


def test_the_limit_is_per_request():
    assert run(Reader(), chunks=[b"x" * 100], max_body=99)[0] == 413
    assert run(Reader(), chunks=[b"x" * 100], max_body=100)[:3:2] == (200, b"100")


def test_413_is_echos_error_shape_pretty_and_head():
    status, _, body, _ = run(Reader(), chunks=[], query=b"%70retty",
                             headers=[(b"content-length", b"9999999")])
    assert (status, body) == (413, b'{\n  "message": "Request Entity Too Large"\n}\n')
    status, headers, body, _ = run(Reader(), chunks=[], method="HEAD",
                                   headers=[(b"content-length", b"9999999")])
    assert (status, body) == (413, b"") and b"content-length" not in headers


def test_the_asgi_wrapper_takes_the_limit_as_an_argument():
    feature = Reader()
    status, _, _, _ = run(BodyLimit(feature, max_body=3_000_000), chunks=[b"x" * 2_000_000], max_body=10**9)
    assert status == 200 and feature.read == 2_000_000
    status, _, _, _ = run(BodyLimit(Reader(), max_body=10), chunks=[b"x" * 11], max_body=10**9)
    assert status == 413


@pytest.mark.parametrize("value", [b"abc", b"-1", b""])
def test_a_content_length_that_is_not_a_number_is_left_to_the_server(value):
    assert run(Reader(), chunks=[b"x"], headers=[(b"content-length", value)])[0] == 200


@pytest.mark.parametrize("version,headers,counted", [
    ("1.1", [], False),  # a GET: no body at all
    ("1.0", [(b"content-length", b"5")], False),  # the server delivers 5 bytes, no more
    ("1.1", [(b"Transfer-Encoding", b"chunked")], True),
    ("1.1", [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")], True),
    ("2", [], True),  # HTTP/2 frames a body without either header
    (None, [], True),  # a scope that does not say: counted
])
def test_only_a_body_no_header_bounds_is_counted(version, headers, counted):
    # What the feature is handed: the server's own receive() when the headers
    # bound the body (nothing to count, the common case), else the counting one.
    seen: list[Receive] = []

    async def feature(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"hello"}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": "/x", "raw_path": b"/x", "query_string": b"",
             "headers": headers, **({"http_version": version} if version else {})}
    asyncio.run(Service("x", ("/x",), feature).call(scope, receive, send, max_body=8))
    assert (seen[0] is not receive) is counted
    if counted:  # and the count holds: twice 5 bytes pass a cap of 8

        async def read_twice() -> None:
            await seen[0]()
            await seen[0]()

        with pytest.raises(BodyTooLarge):
            asyncio.run(read_twice())
