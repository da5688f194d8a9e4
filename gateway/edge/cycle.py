"""The request/response cycle of the edge protocol, and what it tells the app.

uvicorn 0.54's ``RequestResponseCycle`` plus what the edge needs: whether
the app has started on the request (the line between a 400 and a silent close
for a malformed body, gateway/edge/protocol.py), close-delimited bodies for
HTTP/1.0 clients, who can't read chunked framing (RFC 9112 §7), a head held
for its body when the sender promises the body next (``BODY_FOLLOWS``: one
write for both), and a callback for whoever watches the client leave
(``on_disconnect``, the ``ServingCycle`` of gateway/context.py).

``send`` is uvicorn's own, in one piece with those additions (one coroutine
per ASGI send, not two), and with its header check done once over all the
names and once over all the values instead of two regex searches per header:
the same character classes (uvicorn's ``HEADER_RE`` / ``HEADER_VALUE_RE``, as
translation tables). When that check fails, or a Content-Length is no number,
uvicorn's own loop runs instead: the same error, for the same header, with
the same state left behind (tests/unit/test_edge_cycle.py holds the two
side by side).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from gateway.context import BODY_FOLLOWS, CYCLE_KEY

# uvicorn's HEADER_RE / HEADER_VALUE_RE are character classes: the same
# classes as translation tables that map a byte of the class to 0 and every
# other byte to 1, so a bad byte is a 0 after bytes.translate (callgrind: ~4k
# instructions for 300 bytes of values, against ~17k for the regex search).
_NAME_OK = bytes(0 if HEADER_RE.search(bytes((b,))) else 1 for b in range(256))
_VALUE_OK = bytes(0 if HEADER_VALUE_RE.search(bytes((b,))) else 1 for b in range(256))

# A body piece up to this size is joined to the held head (a copy); a larger
# one goes out beside it with writelines.
_JOIN_AT_MOST = 16 * 1024

EDGE_KEY = "gateway.edge"  # scope["extensions"][EDGE_KEY]: the request's EdgeNote


@dataclass(slots=True)
class EdgeNote:
    """What the edge did to a request the app already had (read by the access log)."""

    reason: str | None = None  # why the edge ended it
    status: int | None = None  # what it answered in the app's stead, if anything


def edge_note(scope: Any) -> EdgeNote | None:
    return (scope.get("extensions") or {}).get(EDGE_KEY)


class EdgeCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, plus: whether the app has started (the
    line between a 400 and a silent close), close-delimited bodies for HTTP/1.0
    clients, a head held for a promised body, and a departure callback."""

    task: asyncio.Task[None] | None = None
    app_started = False
    close_delimited = False
    loop: asyncio.AbstractEventLoop | None = None  # the protocol's (else the running one)
    # The response head, held for the body's first piece: see _write_head.
    head_pending: bytes | None = None
    # Called once when the client leaves (the connection is lost, or the edge
    # ends the request): what a request without a body watches, instead of
    # waiting on receive() for http.disconnect (gateway/upstream/forwarder.py).
    on_disconnect: Callable[[], None] | None = None

    def tell_disconnected(self) -> None:
        """Run ``on_disconnect`` once, if the client has left."""
        callback = self.on_disconnect
        if callback is not None and self.disconnected:
            self.on_disconnect = None
            callback()

    async def run_asgi(self, app: Any) -> None:
        """uvicorn 0.54's, inline (one coroutine a request, not two)."""
        self.app_started = True
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500_response()
            else:
                self.flush_head()  # what uvicorn had written before it closes
                self.transport.close()
        else:
            if result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.flush_head()
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.logger.error("ASGI callable returned without starting response.")
                await self.send_500_response()
            elif not self.response_complete and not self.disconnected:
                self.logger.error("ASGI callable returned without completing response.")
                self.flush_head()
                self.transport.close()
        finally:
            self.on_response = lambda: None
            # The scope's way back to this cycle: a reference cycle otherwise,
            # left for the cyclic GC at every request.
            extensions = self.scope.get("extensions")
            if extensions:
                extensions.pop(CYCLE_KEY, None)

    async def send(self, message: Any) -> None:
        # In uvicorn's order, with the edge's two additions where they were.
        if not self.response_started:
            if message["type"] == "http.response.start" and self.scope["http_version"] == "1.0":
                message = self._for_http10(message)
        elif self.close_delimited and not self.response_complete:
            await self._send_close_delimited(message)
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self._write_head(message)
        elif not self.response_complete:
            self._write_body(message)
        else:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")

    def _write_head(self, message: Any) -> None:
        """uvicorn 0.54's status line and headers."""
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        headers = message.get("headers", ())
        if self.default_headers:
            headers = self.default_headers + list(headers)
        if self.access_log:
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(self.scope), self.scope["method"],
                                    get_path_with_query_string(self.scope), self.scope["http_version"], status_code)
        try:
            content, has_connection_close = self._head_fields(status_code, headers)
        except _Unsure:
            # A bad header somewhere (or a Content-Length that is no number):
            # uvicorn's own loop, which fails at the header uvicorn fails at,
            # with the same error and the same state left behind.
            content, has_connection_close = self._head_fields_one_by_one(status_code, headers)
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            self.chunked_encoding = True  # neither Content-Length nor Transfer-Encoding given
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        if message.get(BODY_FOLLOWS):
            # The sender has the whole body and sends it next (the forwarder,
            # for an answer that came in with its head): the head waits for
            # it, and the two go out in one write, one system call instead of
            # two. Without that promise the head goes out now: a body may be
            # long in coming (an event stream), and a callback to flush a
            # held head at the loop's next turn costs more CPU than the
            # write it saves (measured: tests/unit/test_edge_cycle.py says how).
            self.head_pending = b"".join(content)
        else:
            self.transport.write(b"".join(content))

    def flush_head(self) -> None:
        """Write the response head if it is still held (see _write_head)."""
        head = self.head_pending
        if head is not None:
            self.head_pending = None
            # Not is_closing(): a connection closed with answers still in its
            # buffer sends on, and takes what is written until it is gone.
            if not self.disconnected:
                try:
                    self.transport.write(head)
                except RuntimeError:  # gone, but not told (an answer ahead of pipelined requests)
                    pass

    def _head_fields(self, status_code: int, headers: Any) -> tuple[list[bytes], bool]:
        """The head's lines and whether it says ``Connection: close``, as
        uvicorn's loop makes them, with the header check done once over all
        names and once over all values; the cycle's framing state is set only
        when every header passed. Raises _Unsure otherwise."""
        content = [STATUS_LINE[status_code]]
        chunked, expected, keep_alive = self.chunked_encoding, self.expected_content_length, self.keep_alive
        has_connection_close = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and chunked is None:
                try:
                    expected = int(value.decode())
                except ValueError:
                    raise _Unsure from None
                chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                expected = 0
                chunked = True
            elif name == b"connection":
                connection = [token.lower().strip() for token in value.split(b",")]
                if b"close" in connection:
                    keep_alive = False
                    has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        # Every name is at 1, 5, 9, ... and every value at 3, 7, 11, ...: the
        # joined bytes hold a bad character exactly when one header does.
        # find(), not ``in``: see gateway/routing/paths.py.
        if (b"".join(content[1::4]).translate(_NAME_OK).find(b"\0") >= 0
                or b"".join(content[3::4]).translate(_VALUE_OK).find(b"\0") >= 0):
            raise _Unsure
        self.chunked_encoding, self.expected_content_length, self.keep_alive = chunked, expected, keep_alive
        return content, has_connection_close

    def _head_fields_one_by_one(self, status_code: int, headers: Any) -> tuple[list[bytes], bool]:
        """uvicorn 0.54's loop as it is: each header checked, then taken."""
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            if HEADER_RE.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                connection = [token.lower().strip() for token in value.split(b",")]
                if b"close" in connection:
                    self.keep_alive = False
                    has_connection_close = True
            content.extend([name, b": ", value, b"\r\n"])
        return content, has_connection_close

    def _write_body(self, message: Any) -> None:
        """uvicorn 0.54's body framing and completion, with the held head
        written in the same write as the body's first piece."""
        if message["type"] != "http.response.body":
            self.flush_head()
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        head = self.head_pending
        if head is not None:
            self.head_pending = None
        else:
            head = b""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            if head:
                self.transport.write(head)
        elif self.chunked_encoding:
            if body:
                self.transport.write(b"%b%x\r\n%b\r\n0\r\n\r\n" % (head, len(body), body) if not more_body
                                     else b"%b%x\r\n%b\r\n" % (head, len(body), body))
            elif not more_body:
                self.transport.write(head + b"0\r\n\r\n")
            elif head:
                self.transport.write(head)
        else:
            num_bytes = len(body)
            if num_bytes > self.expected_content_length:
                if head:
                    self.transport.write(head)
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= num_bytes
            if not head:
                self.transport.write(body)
            elif num_bytes <= _JOIN_AT_MOST:
                self.transport.write(head + body)
            else:  # a large piece: not copied, one writev
                self.transport.writelines((head, body))
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _for_http10(self, message: Any) -> Any:
        """A 1.0 client can't read chunked framing: a body of unknown length is
        delimited by closing the connection (uvicorn already closes after a
        1.0 request)."""
        status = message["status"]
        headers = list(message.get("headers", []))
        if (self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
                or any(n.lower() == b"content-length" for n, _ in headers)):
            return message
        self.close_delimited = True
        self.chunked_encoding = False  # uvicorn then adds no transfer-encoding
        self.keep_alive = False
        return {**message, "headers": [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]}

    async def _send_close_delimited(self, message: Any) -> None:
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        body = message.get("body", b"")
        head = self.head_pending
        if head is not None:
            self.head_pending = None
            body = head + body
        if body:
            self.transport.write(body)
        if not message.get("more_body", False):
            self.response_complete = True
            self.message_event.set()
            self.transport.close()
            self.on_response()


class _Unsure(Exception):
    """The one-pass head can't vouch for these headers: take uvicorn's loop."""
