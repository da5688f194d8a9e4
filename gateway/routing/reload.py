"""Watch routes.yaml, validate every change, swap the table atomically.

Requests read ``holder.table`` once when they start and keep that object, so a
swap affects new requests only. A bad edit leaves the last good table serving
and is reported (log + ``/_gateway/health``) until a good file arrives.

Watching is by polling ``stat`` (inode, size, mtime): it sees in-place writes,
truncate-then-write and write-to-temp-then-rename alike, needs no extra
dependency, and works on bind mounts where inotify events don't cross. A change
is only read once the file has been stable for one poll, so an editor's burst of
writes is one reload, not several half-written ones.

Reading, parsing, validating and compiling run in a worker thread with a
deadline (issue 14): a huge, slow or hostile file never stalls a request on
the event loop. Only the swap itself — one reference assignment, plus
adopting the new table's upstream pool — happens on the loop. The thread is a
daemon and the parse checks the deadline itself, so a load that is given up
on stops soon after and can never keep the process from exiting on SIGTERM.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gateway.redact import redact_url

from .config import GatewayConfig, RoutesError, load_config
from .problems import MAX_PROBLEM_CHARS, clip
from .table import RouteTable

log = logging.getLogger("gateway.reload")

RELOAD_DEADLINE = 5.0  # seconds a reload may take before it is given up (a 1 MiB file takes well under 1 s)
T = TypeVar("T")

# (path, deadline as time.monotonic()) → config: reads and validates the file.
Load = Callable[[Path, float], GatewayConfig]


@dataclass
class TableHolder:
    """The live table plus what health needs to say about it."""

    table: RouteTable
    loaded_at: float = field(default_factory=time.time)
    last_error: str | None = None
    last_error_at: float | None = None
    reloads_ok: int = 0
    reloads_failed: int = 0
    last_change: dict[str, float] = field(default_factory=dict)  # prefix → when its state changed

    def swap(self, table: RouteTable) -> list[str]:
        changes = describe_changes(self.table, table)
        now = time.time()
        for prefix, _ in changes:
            self.last_change[prefix] = now
        self.table = table  # one reference assignment: atomic for every reader
        self.loaded_at = now
        self.last_error = None
        self.last_error_at = None
        self.reloads_ok += 1
        return [line for _, line in changes]

    def fail(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = time.time()
        self.reloads_failed += 1


def describe_changes(old: RouteTable, new: RouteTable) -> list[tuple[str, str]]:
    """One ``(prefix, "prefix: go → python")`` pair per route whose state changed."""
    before, after = old.states_by_prefix(), new.states_by_prefix()
    out = []
    for key in sorted(set(before) | set(after)):
        prefix, methods = key
        label = prefix if methods == "*" else f"{prefix} [{methods}]"
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if a is None:
            out.append((prefix, f"{label}: (new route) → {b}"))
        elif b is None:
            out.append((prefix, f"{label}: {a} → (route removed; default {new.default.state!r} serves it)"))
        else:
            out.append((prefix, f"{label}: {a} → {b}"))
    return out


class Reloader:
    """Polls the file; each change is loaded off the loop and swapped in on it.

    ``load`` reads and validates (default: :func:`load_config` with
    ``serves_prefix``/``dry_run_ok``); ``build`` compiles the table. Both run in
    the worker thread, so they must not touch loop-bound objects; ``activate``
    (on the loop, just before the swap) is where the new table's resources are
    put in service.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        holder: TableHolder,
        build: Callable[[GatewayConfig], RouteTable],
        *,
        load: Load | None = None,
        serves_prefix: Callable[[str], bool] | None = None,
        dry_run_ok: Callable[[str], bool] | None = None,
        activate: Callable[[RouteTable], None] | None = None,
        interval: float = 0.2,
        deadline: float = RELOAD_DEADLINE,
        on_outcome: Callable[[str], None] | None = None,
    ):
        self.path = Path(path)
        self.holder = holder
        self.build = build
        self.load: Load = load or (lambda p, until: load_config(
            p, serves_prefix=serves_prefix, dry_run_ok=dry_run_ok, deadline=until))
        self.activate = activate or (lambda table: None)
        self.interval = interval
        self.deadline = deadline
        self.on_outcome = on_outcome or (lambda outcome: None)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _prepare(self) -> RouteTable | None:
        """Worker thread: the new table, or None when the file is unchanged."""
        config = self.load(self.path, time.monotonic() + self.deadline)
        if config.version == self.holder.table.version and self.holder.last_error is None:
            return None  # touched but unchanged
        return self.build(config)

    async def reload(self) -> bool:
        """Load off the loop, swap on it. Returns True when a new table went live."""
        try:
            table = await _in_thread(self._prepare, self.deadline)
        except TimeoutError:
            return self._failed(f"{self.path}: loading took longer than {self.deadline:g} s; the file is too "
                                "large or complex (the last good table keeps serving)")
        except RoutesError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug must not kill the watcher or the table
            log.exception("reload failed; the last good table keeps serving")
            return self._failed(clip(f"{self.path}: internal error while loading: {exc!r}", MAX_PROBLEM_CHARS))
        if table is None:
            return False
        return self._swap(table)

    def reload_now(self) -> bool:
        """The same, on the calling thread (tools and tests without a loop)."""
        try:
            table = self._prepare()
        except RoutesError as exc:
            return self._failed(str(exc))
        return False if table is None else self._swap(table)

    def _failed(self, message: str) -> bool:
        message = redact_url(message)  # logged and shown in health: an exception may quote a URL
        if message != self.holder.last_error:
            log.error("routes.yaml rejected; the last good table (version %s) keeps serving:\n%s",
                      self.holder.table.version, message)
        self.holder.fail(message)
        self.on_outcome("error")
        return False

    def _swap(self, table: RouteTable) -> bool:
        self.activate(table)
        changes = self.holder.swap(table)
        self.on_outcome("ok")
        log.info("routes.yaml reloaded: version %s, %d route(s) changed", table.version, len(changes))
        for line in changes:
            log.info("route %s", line)
        return True

    async def _run(self, seen: tuple[int, int, int] | None) -> None:
        # Catch an edit made between the initial load and this watcher starting
        # (a no-op when the file still has the loaded table's version).
        await self.reload()
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel
            # that arrives as the wake-up does (a SIGHUP just before shutdown),
            # and stop() would then wait for ever.
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
                forced = True
            except TimeoutError:
                forced = False
            self._wake.clear()
            current = self._stat()
            if not forced and current == seen:
                continue
            # Debounce: read only once the file has held still for one poll.
            while True:
                await asyncio.sleep(min(self.interval, 0.1))
                again = self._stat()
                if again == current:
                    break
                current = again
            seen = current
            if current is None:
                self.holder.fail(f"{self.path}: file is missing (the last good table keeps serving)")
                log.error("%s disappeared; the last good table keeps serving", self.path)
                continue
            await self.reload()

    def trigger(self) -> None:
        """Reload at the next tick (SIGHUP and the admin endpoint use this)."""
        self._wake.set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(self._stat()))
        try:
            loop.add_signal_handler(signal.SIGHUP, self.trigger)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests) or no SIGHUP on this platform

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


async def _in_thread(work: Callable[[], T], timeout: float) -> T:
    """``work()`` in a daemon thread; TimeoutError after ``timeout`` s (the thread is abandoned).

    Not ``asyncio.to_thread``: the default executor's threads are joined at
    interpreter exit, so one stuck thread would keep a SIGTERMed process alive.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if not future.done():
            if ok:
                future.set_result(value)  # type: ignore[arg-type]
            else:
                future.set_exception(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: tuple[bool, object] = (True, work())
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            result = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:
            pass  # the loop closed meanwhile (shutdown): nobody is waiting

    threading.Thread(target=run, name="routes-reload", daemon=True).start()
    async with asyncio.timeout(timeout):
        return await future
