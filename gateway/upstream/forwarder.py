"""The legacy forwarder: an ASGI app that relays a request to the Go backend.

Transparent by construction: the raw path and query go upstream byte for byte,
raw header lists travel both ways minus hop-by-hop headers plus honest
X-Forwarded-*, bodies stream undecoded in both directions, and nothing is kept
between requests (no cookie jar). The transport is any ``httpx`` transport: the
fast one in production, respx or ``httpx.MockTransport`` in unit tests. We call
``handle_async_request`` directly rather than going through ``httpx.AsyncClient``
— the client layer is where cookie jars, redirects and default headers live.

What may go wrong upstream is answered in one place each: no answer → 502/504
(``_describe``); an answer over the gateway's limits or a 101 → 502
(``http11.UpstreamRefused``); a client body that stalls → 408
(``connection.RequestBodyStalled``); an exchange past ``total_timeout`` → 504,
or, once the answer has started, an aborted client connection — as for an
upstream that fails mid-body.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from gateway.context import BODY_FOLLOWS, CYCLE_KEY, RequestContext, ServingCycle
from gateway.redact import redact_url
from gateway.replies import gateway_error
from gateway.replies import stamp as stamp_answer

from .connection import RequestBodyStalled
from .headers import TrustedProxies, request_headers_for_upstream, response_headers_for_client
from .http11 import UpstreamRefused
from .httpx_fast import header_triples, headers_from_fields, new_request, url_with_target

log = logging.getLogger("gateway.forward")


class ClientDisconnected(Exception):
    """The client went away while we were still reading its request body."""


class _ClientBody(httpx.AsyncByteStream):
    """The client's request body as it arrives, never buffered whole."""

    def __init__(self, receive: Receive, on_complete: Callable[[], None]):
        self._receive = receive
        self._on_complete = on_complete

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if not more:
                self._on_complete()
            if body:
                yield body
            if not more:
                return


class _NoBody(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator


_NO_BODY = _NoBody()


class _ClientWatch:
    """Notices a client that leaves mid-exchange, and cancels the exchange.

    Once the request body is in, the only ASGI message left is the client's
    ``http.disconnect``; whoever waits on ``receive()`` for it learns the
    client left. A Task doing that costs more CPU than a short proxied request
    (create and register it, a turn of the loop to start it, a cancellation and
    another turn to end it), so this steps the receive coroutine by hand, as a
    Task would: each future it awaits gets a done-callback that resumes it.
    Stopping is ``close()`` at the await: no exception travels, the loop does
    no extra turn. So every exchange is watched from its first moment, and one
    that lasts 50 ms costs what one that lasts 50 µs does.
    """

    __slots__ = ("_receive", "_stopped", "_task", "_waiting", "client_gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Any] | None = None
        self._waiting: Generator[Any, None, Any] | None = None  # receive()'s awaitable, suspended
        self._stopped = False
        self.client_gone = False

    def start(self) -> None:
        """Watch from now on (again a no-op once watching or stopped)."""
        if self._waiting is None and not self._stopped:
            self._task = asyncio.current_task()  # the exchange to cancel
            self._waiting = self._receive().__await__()
            self._resume()

    def _resume(self, _: object = None) -> None:
        # Twice at most here: a GET's first receive() returns its empty body
        # at once, and only the next one waits.
        for _attempt in range(2):
            if self._stopped:
                return
            assert self._waiting is not None
            try:
                awaited = self._waiting.send(None)
            except StopIteration as returned:
                self._received(returned.value)
                continue
            except BaseException:  # receive() itself failed: nothing left to watch
                self._stopped = True
                return
            if awaited is None:  # a bare yield (asyncio.sleep(0)): come back next turn
                break
            # A future: resume when it is done, as Task.__step does.
            awaited._asyncio_future_blocking = False
            awaited.add_done_callback(self._resume)
            return
        if not self._stopped:  # receive() keeps answering at once: next turn of the loop
            asyncio.get_running_loop().call_soon(self._resume)

    def _received(self, message: Any) -> None:
        if message.get("type") == "http.disconnect":
            self._stopped = self.client_gone = True
            if self._task is not None:
                self._task.cancel()
            return
        # A request body message (the empty one of a GET, a late piece of an
        # upload the upstream did not wait for): keep watching.
        self._waiting = self._receive().__await__()

    def stop(self) -> None:
        """The exchange is over: stop watching (closes the pending receive)."""
        if not self._stopped:
            self._stopped = True
            if self._waiting is not None:
                self._waiting.close()


class _EdgeWatch:
    """:class:`_ClientWatch` for a request without a body on the gateway's own
    edge: nothing is left to receive, so the edge calls back when the client
    leaves (``ServingCycle.on_disconnect``) and no receive() is stepped at all."""

    __slots__ = ("_cycle", "_task", "_state", "client_gone")

    def __init__(self, cycle: ServingCycle) -> None:
        self._cycle = cycle
        self._task: asyncio.Task[Any] | None = None
        self._state = 0  # 0: not yet, 1: watching, 2: stopped
        self.client_gone = False

    def start(self) -> None:
        """Watch from now on (again a no-op once watching or stopped)."""
        if self._state == 0:
            self._state = 1
            cycle = self._cycle
            self._task = asyncio.current_task(cycle.loop)  # the loop given: no getpid() syscall
            cycle.on_disconnect = self._gone
            cycle.tell_disconnected()  # gone already?

    def _gone(self) -> None:
        if self._state == 1:
            self._state = 2
            self.client_gone = True
            if self._task is not None:
                self._task.cancel()

    def stop(self) -> None:
        if self._state == 1:
            self._cycle.on_disconnect = None
        self._state = 2


def _edge_cycle(scope: Scope) -> ServingCycle | None:
    """The edge cycle serving this very scope (not a copy of it), if any."""
    extensions = scope.get("extensions")
    cycle = extensions.get(CYCLE_KEY) if extensions else None
    return cycle if cycle is not None and cycle.scope is scope else None


@dataclass(frozen=True)
class UpstreamFailure:
    """Why the legacy backend gave no answer, said twice: ``summary`` for any
    client (what failed, nothing about the backend's address), ``detail`` for
    the gateway's log (where, the exception, what to check)."""

    status: int  # 502 or 504
    summary: str
    detail: str

    def client_message(self, request_id: str, debug: bool = False) -> str:
        text = f"{self.summary} Request id {request_id} — the gateway's log has the details."
        if debug:  # GATEWAY_DEBUG_ERRORS: development only, the body names internal URLs
            text += f" Details: {self.detail}"
        return text


def _request_id(scope: Scope) -> bytes:
    """The id the gateway put on the request (gateway/ops/tracing.py), for log lookups."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return bytes(value)
    return b"-"


class LegacyForwarder:
    """Relays a request to the legacy backend: the ``go`` backend of every route.

    The gateway calls :meth:`forward` with the request's context; as a plain
    ASGI app (replays, tests) it makes a context of its own."""

    name = "go"

    def __init__(
        self,
        base_url: str,
        transport: httpx.AsyncBaseTransport,
        *,
        trusted_proxies: TrustedProxies | None = None,
        backend_name: str = "legacy Go backend",
        debug_errors: bool = False,
        total_timeout: float | None = None,
    ):
        self.base = httpx.URL(base_url)
        self.base_url = base_url
        self.transport = transport
        self.trusted = trusted_proxies or TrustedProxies()
        self.backend_name = backend_name
        self.debug_errors = debug_errors  # 502/504 bodies carry the log's detail too
        # Seconds one whole upstream exchange may take (request body, head and
        # response body); None: only the per-step timeouts apply.
        self.total_timeout = total_timeout
        self._default_host = self.base.netloc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.forward(RequestContext(_request_id(scope), b"-"), scope, receive, send)

    async def forward(self, ctx: RequestContext, scope: Scope, receive: Receive, send: Send, *,
                      stamp: bool = False) -> None:
        """Relay one request. ``stamp``: the gateway's ``send`` as it is, with
        no wrapper of its own (gateway/app.py) — every answer from here then
        gets the gateway's ``X-Request-Id`` and a ``Date`` unless it has them,
        and its status goes into ``ctx.status``."""
        method: str = scope["method"]
        client = scope.get("client")
        headers, body_mode = request_headers_for_upstream(
            scope["headers"],
            client_ip=client[0] if client else None,
            scheme=scope.get("scheme", "http"),
            trusted=self.trusted,
            default_host=self._default_host,
        )

        deadline: asyncio.TimerHandle | None = None
        finished = False  # from here on, no deadline cancels the exchange
        overdue = False  # total_timeout passed: the exchange was cancelled
        started = False  # the answer's head went to the client
        watch: _ClientWatch | _EdgeWatch
        if body_mode == "none":
            stream: httpx.AsyncByteStream = _NO_BODY
            cycle = _edge_cycle(scope)
            watch = _ClientWatch(receive) if cycle is None else _EdgeWatch(cycle)
            watch.start()
        else:
            # Until the body is in, receive() belongs to the body stream.
            watch = _ClientWatch(receive)
            stream = _ClientBody(receive, watch.start)
        if self.total_timeout is not None:
            task = asyncio.current_task()

            def on_deadline() -> None:
                nonlocal overdue
                if not finished and not watch.client_gone and task is not None:
                    overdue = True
                    task.cancel()

            deadline = asyncio.get_running_loop().call_later(self.total_timeout, on_deadline)

        request = new_request(method, self._url(scope), headers_from_fields(headers), stream)
        response: httpx.Response | None = None
        try:
            try:
                response = await self.transport.handle_async_request(request)
            except ClientDisconnected:
                ctx.client_gone = True
                return
            except RequestBodyStalled as exc:
                finished = True  # from here on, no deadline or disconnect cancels the answer
                # Its upstream connection is closed already (never reused
                # half-written); the client hears why, and its connection closes.
                log.warning("%s %s → 408 (request id %s): %s; the upstream exchange was cancelled "
                            "and its connection closed (body_idle_timeout)", method,
                            request.url.raw_path.decode("latin-1"), ctx.request_id_text, exc)
                await self._answer(ctx, send, 408, f"Request timeout: no request body arrived for {exc.idle:g} s. "
                                                   f"Request id {ctx.request_id_text}.", close=True, stamp=stamp)
                return
            except httpx.TransportError as exc:
                finished = True
                target = request.url.raw_path.decode("latin-1")
                failure = self._describe(exc, method, target)
                ctx.upstream_error = type(exc).__name__
                await self._fail(ctx, send, failure, method, target, stamp)
                return
            # The upstream may answer before reading the whole body: watch from
            # here on (a no-op when already watching).
            watch.start()
            # A small answer is usually all in with its head (one read): our
            # transport hands it over whole, and it goes out in one send with
            # more_body=False, without stepping the body stream; the edge
            # writes it with the head in one write (BODY_FOLLOWS).
            whole: bytes | None = None
            if method != "HEAD":
                take_whole = getattr(response.stream, "take_whole", None)
                whole = take_whole() if take_whole is not None else None
            status = response.status_code
            start: dict[str, Any] = {
                "type": "http.response.start",
                "status": status,
                "headers": response_headers_for_client(header_triples(response.headers),
                                                       ctx.request_id if stamp else None),
            }
            if stamp:
                ctx.status = status
            if whole is not None:
                start[BODY_FOLLOWS] = True
            await send(start)
            started = True
            if method == "HEAD":
                watch.stop()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if whole is not None:
                watch.stop()  # the upstream is done: nothing left to cancel
                await send({"type": "http.response.body", "body": whole, "more_body": False})
                return
            # Else each chunk goes out as soon as it arrives. When the
            # transport can tell a chunk is the last one, it carries
            # more_body=False, which saves a send.
            at_end = getattr(response.stream, "at_end", None)
            ended = False
            try:
                async for chunk in response.stream:  # type: ignore[union-attr]  # async: our transport's
                    ended = at_end is not None and at_end()
                    if ended:
                        # The upstream is done: nothing left to cancel. Stopped
                        # now, the watch's receive() is gone before the final
                        # send wakes it (no callback for a closed exchange).
                        watch.stop()
                    await send({"type": "http.response.body", "body": chunk, "more_body": not ended})
            except httpx.TransportError as exc:
                # Headers are gone already: the only honest signal left is to
                # abort the client connection (returning without the final
                # body message makes uvicorn close it) so the client sees a
                # truncated transfer, not a short body that looks complete.
                ctx.upstream_error = type(exc).__name__
                log.warning("%s %s (request id %s): upstream failed mid-body (%s); aborting the client connection",
                            method, request.url.raw_path.decode("latin-1"), ctx.request_id_text, exc)
                return
            if not ended:
                watch.stop()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not (watch.client_gone or overdue):
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if watch.client_gone:
                # The client went away: the upstream exchange was cancelled and its
                # connection is closed below rather than returned to the pool.
                ctx.client_gone = True
                return
            # total_timeout: the exchange was cancelled wherever it was (its
            # upstream connection is closed below, never reused).
            finished = True
            ctx.upstream_error = "TotalTimeout"
            target = request.url.raw_path.decode("latin-1")
            if started:
                # As for an upstream failing mid-body: abort the client
                # connection rather than end a short body that looks complete.
                log.warning("%s %s (request id %s): the %s at %s did not finish within legacy.total_timeout "
                            "(%g s); aborting the client connection mid-body", method, target,
                            ctx.request_id_text, self.backend_name, self.base_url, self.total_timeout)
                return
            await self._fail(ctx, send, self._overdue(method, target), method, target, stamp)
        finally:
            finished = True
            if deadline is not None:
                deadline.cancel()
            watch.stop()
            if response is not None:
                # The stream's own close: Response.aclose adds a generator
                # context manager per request for nothing we use, and our
                # transport's is a release to the pool, with nothing to await.
                close_now = getattr(response.stream, "close_now", None)
                if close_now is not None:
                    close_now()
                else:
                    await response.stream.aclose()  # type: ignore[union-attr]

    async def _fail(self, ctx: RequestContext, send: Send, failure: UpstreamFailure, method: str,
                    target: str, stamp: bool) -> None:
        """Log ``failure`` with the request id and answer the client with it."""
        request_id = ctx.request_id_text
        log.warning("%s %s → %d (request id %s): %s", method, target, failure.status, request_id, failure.detail)
        await self._answer(ctx, send, failure.status, failure.client_message(request_id, self.debug_errors),
                           stamp=stamp)

    @staticmethod
    async def _answer(ctx: RequestContext, send: Send, status: int, message: str, *, close: bool = False,
                      stamp: bool = False) -> None:
        """A gateway error answer. ``close`` ends the client connection after
        it — only for a client that stopped sending its body: closing on one
        still sending could reset the connection before it reads the answer.
        ``stamp``: see :meth:`forward`."""
        start, body = gateway_error(status, message)
        if close:
            start["headers"].append((b"connection", b"close"))
        if stamp:
            stamp_answer(start["headers"], ctx.request_id)
            ctx.status = status
        await send(start)
        await send(body)

    def _url(self, scope: Scope) -> httpx.URL:
        """The upstream URL with the client's path and query byte for byte."""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        return url_with_target(self.base, raw_path, scope.get("query_string") or b"")

    def _describe(self, exc: httpx.TransportError, method: str, target: str) -> UpstreamFailure:
        name, where = self.backend_name, f"the {self.backend_name} at {redact_url(self.base_url)}"
        if isinstance(exc, UpstreamRefused):
            return UpstreamFailure(
                502, f"Bad gateway: the {name} sent {exc.what}.",
                f"{where} answered {method} {target} over a limit: {exc} [{exc.limit}]. "
                "The upstream connection was closed; the answer was not relayed.")
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return UpstreamFailure(
                504, f"Gateway timeout: the {name} did not accept a connection in time.",
                f"{where} did not accept a connection in time ({exc!r}). "
                "Check that it is running and not overloaded.")
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamFailure(
                504, f"Gateway timeout: the {name} did not answer in time.",
                f"{where} did not answer {method} {target} in time ({exc!r}). "
                "Raise legacy.read_timeout in routes.yaml if this request is expected to be slow.")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamFailure(
                502, f"Bad gateway: the {name} is unreachable.",
                f"{where} is unreachable ({exc!r}). Check that it is running and that "
                "legacy.url in routes.yaml (or LEGACY_URL) points to it.")
        return UpstreamFailure(
            502, f"Bad gateway: the {name} failed while answering.",
            f"{where} failed while answering {method} {target} ({exc!r}).")

    def _overdue(self, method: str, target: str) -> UpstreamFailure:
        return UpstreamFailure(
            504, f"Gateway timeout: the {self.backend_name} did not answer in time.",
            f"the {self.backend_name} at {self.base_url} did not finish {method} {target} within "
            f"legacy.total_timeout ({self.total_timeout:g} s). Raise or unset legacy.total_timeout "
            "in routes.yaml if this request is expected to be slow.")

    async def aclose(self) -> None:
        await self.transport.aclose()
