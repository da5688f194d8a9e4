"""Shadow mode: serve the Go answer, replay the request to Python, compare.

The client's exchange with Go is only observed (a tee on receive and send), so
what the client gets is byte-identical to a plain ``go`` route. The replay runs
after the Go answer is complete, on a bounded queue drained by a fixed number of
tasks, each replay under a time limit: a slow, hanging or crashing Python module
can cost nothing but its own replay. Replays that don't fit the queue are
dropped and counted, never hidden.

Only safe methods are replayed unless the route opts in with ``shadow.writes``;
then the Python service runs in dry-run mode (``Service.call(dry_run=True)``:
nothing commits) — only services that declare ``Service.dry_run`` may get them.

Replays are not requests anybody was served: they are counted in the
``gateway_shadow_*`` metrics only, never in ``gateway_requests_total``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from gateway.context import RequestContext
from gateway.ops.metrics import Metrics
from services.registry import Service

from .diff import Answer, DiffRules, compare, noisy_fields, render_diff

if TYPE_CHECKING:
    from gateway.routing.table import Route

log = logging.getLogger("gateway.shadow")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_REQUEST_BODY = 1 << 20  # bigger request bodies are not replayed (counted as skipped)
MAX_CAPTURE = 256 * 1024  # response bytes kept for comparison


@dataclass
class Capture:
    status: int = 0
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytearray | None = None
    truncated: bool = False
    complete: bool = False

    def answer(self) -> Answer:
        return Answer(self.status, list(self.headers or []), bytes(self.body or b""))

    def wrap_send(self, send: Callable[[dict[str, Any]], Awaitable[None]] | None):
        self.body = bytearray()

        async def tee(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                room = MAX_CAPTURE - len(self.body)  # type: ignore[arg-type]
                if chunk and room > 0:
                    self.body.extend(chunk[:room])  # type: ignore[union-attr]
                if len(chunk) > room:
                    self.truncated = True
                if not message.get("more_body", False):
                    self.complete = True
            if send is not None:
                await send(message)

        return tee


@dataclass
class ShadowJob:
    prefix: str
    rules: DiffRules
    noise: bool
    dry_run: bool
    scope: Scope
    body: bytes
    go: Answer
    go_app: Any
    service: Service
    timeout: float


def _replay_receive(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the replay never disconnects; the timeout ends it
        return {"type": "http.disconnect"}

    return receive


class ShadowRunner:
    def __init__(self, metrics: Metrics, *, concurrency: int = 4, queue_size: int = 256):
        self.metrics = metrics
        self.concurrency = concurrency
        self.queue: asyncio.Queue[ShadowJob] | None = None
        self.queue_size = queue_size
        self._workers: list[asyncio.Task[None]] = []

    # -- the request path -------------------------------------------------------
    async def serve(self, ctx: RequestContext, route: Route, scope: Scope, receive: Any, send: Any) -> None:
        """Serve ``route`` from Go for the client; queue a replay to Python."""
        spec, service = route.spec, route.service
        assert service is not None  # config validation: a shadow route has a Python owner
        method = scope["method"]
        replay = (method in SAFE_METHODS or spec.shadow.writes) and (
            spec.shadow.sample >= 1 or random.random() < spec.shadow.sample)
        if not replay:
            await route.go.forward(ctx, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0

        async def tee_receive() -> dict[str, Any]:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request" and size <= MAX_REQUEST_BODY:
                body = message.get("body", b"")
                size += len(body)
                chunks.append(body)
            return message

        capture = Capture()
        replay_scope = _copy_scope(scope)  # before the forwarder sees the scope
        await route.go.forward(ctx, scope, tee_receive, capture.wrap_send(send))
        # The client has its whole answer now; everything below is off its path.
        if size > MAX_REQUEST_BODY:
            self.metrics.inc("gateway_shadow_skipped_total", {"route": route.prefix, "reason": "body_too_large"})
            return
        if not capture.complete or capture.status == 0:
            return  # the Go exchange failed or the client left: nothing to compare
        job = ShadowJob(
            prefix=route.prefix,
            rules=DiffRules(ignore=spec.diff.ignore, unordered=spec.diff.unordered, headers=spec.diff.headers),
            noise=spec.shadow.noise and method in SAFE_METHODS,
            dry_run=method not in SAFE_METHODS,
            scope=replay_scope, body=b"".join(chunks), go=capture.answer(),
            go_app=route.go, service=service, timeout=spec.shadow.timeout,
        )
        self.submit(job)

    def submit(self, job: ShadowJob) -> None:
        if self.queue is None:
            self._start()
        try:
            self.queue.put_nowait(job)  # type: ignore[union-attr]
        except asyncio.QueueFull:
            self.metrics.inc("gateway_shadow_dropped_total", {"route": job.prefix})

    # -- the replay side --------------------------------------------------------
    def _start(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self.concurrency)]

    async def _work(self) -> None:
        assert self.queue is not None
        while True:
            job = await self.queue.get()
            try:
                await self.run(job)
            except Exception:  # never let one bad replay stop the worker
                log.exception("shadow replay for %s failed unexpectedly", job.prefix)
            finally:
                self.queue.task_done()

    async def run(self, job: ShadowJob) -> list[Any] | None:
        labels = {"route": job.prefix}
        scope = dict(job.scope)
        capture = Capture()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout):
                await job.service.call(scope, _replay_receive(job.body), capture.wrap_send(None),
                                       dry_run=job.dry_run)
        except TimeoutError:
            self.metrics.inc("gateway_shadow_python_errors_total", {**labels, "kind": "timeout"})
            self.metrics.observe_shadow(job.prefix, 0, time.perf_counter() - started)
            return None
        except Exception as exc:
            log.warning("shadow replay of %s %s raised %s: %s", scope["method"], scope["path"], type(exc).__name__, exc)
            self.metrics.inc("gateway_shadow_python_errors_total", {**labels, "kind": "exception"})
            self.metrics.observe_shadow(job.prefix, 0, time.perf_counter() - started)
            return None
        self.metrics.observe_shadow(job.prefix, capture.status, time.perf_counter() - started)
        noise: frozenset[str] = frozenset()
        if job.noise:
            again = Capture()
            try:
                async with asyncio.timeout(job.timeout):
                    await job.go_app(dict(job.scope), _replay_receive(job.body), again.wrap_send(None))
                noise = noisy_fields(job.go, again.answer(), job.rules)
            except Exception as exc:  # TimeoutError included
                # No noise estimate this time; compare as is.
                log.warning("noise replay of %s to go failed: %r", job.prefix, exc)
        diffs = compare(job.go, capture.answer(), job.rules, noise)
        self.metrics.inc("gateway_shadow_requests_total", labels)
        if not diffs:
            self.metrics.inc("gateway_shadow_matches_total", labels)
        for diff in diffs:
            self.metrics.inc("gateway_shadow_differences_total", {**labels, "field": diff.field})
            self.metrics.sample(job.prefix, diff.field, render_diff([diff]))
        return diffs

    async def drain(self) -> None:
        """Wait until every queued replay has run (tests, graceful shutdown)."""
        if self.queue is not None:
            await self.queue.join()

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        self._workers = []


def _copy_scope(scope: Scope) -> dict[str, Any]:
    copy = dict(scope)
    copy["headers"] = list(scope["headers"])
    copy["state"] = {}
    return copy
