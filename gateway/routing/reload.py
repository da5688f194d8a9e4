"""Watch routes.yaml, validate every change, swap the table atomically.

Requests read ``holder.table`` once when they start and keep that object, so a
swap affects new requests only. A bad edit leaves the last good table serving
and is reported (log + ``/_gateway/health``) until a good file arrives.

Watching is by polling ``stat`` (inode, size, mtime): it sees in-place writes,
truncate-then-write and write-to-temp-then-rename alike, needs no extra
dependency, and works on bind mounts where inotify events don't cross. A change
is only read once the file has been stable for one poll, so an editor's burst of
writes is one reload, not several half-written ones.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import GatewayConfig, RoutesError, load_config
from .table import RouteTable

log = logging.getLogger("gateway.reload")


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
    def __init__(
        self,
        path: str | os.PathLike[str],
        holder: TableHolder,
        build: Callable[[GatewayConfig], RouteTable],
        *,
        serves_prefix: Callable[[str], bool] | None = None,
        interval: float = 0.2,
        on_outcome: Callable[[str], None] | None = None,
        dry_run_ok: Callable[[str], bool] | None = None,
        legacy_url: str | None = None,
    ):
        self.dry_run_ok = dry_run_ok
        self.legacy_url = legacy_url
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.path = Path(path)
        self.holder = holder
        self.build = build
        self.serves_prefix = serves_prefix
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def reload_now(self) -> bool:
        """Read, validate and swap. Returns True when a new table went live."""
        try:
            config = load_config(self.path, serves_prefix=self.serves_prefix, dry_run_ok=self.dry_run_ok,
                                 legacy_url=self.legacy_url)
            if config.version == self.holder.table.version and self.holder.last_error is None:
                return False  # touched but unchanged
            table = self.build(config)
        except RoutesError as exc:
            message = str(exc)
            if message != self.holder.last_error:
                log.error("routes.yaml rejected; the last good table (version %s) keeps serving:\n%s",
                          self.holder.table.version, message)
            self.holder.fail(message)
            self.on_outcome("error")
            return False
        except Exception as exc:  # a bug must not kill the watcher or the table
            log.exception("reload failed; the last good table keeps serving")
            self.holder.fail(f"{self.path}: internal error while loading: {exc}")
            self.on_outcome("error")
            return False
        changes = self.holder.swap(table)
        self.on_outcome("ok")
        log.info("routes.yaml reloaded: version %s, %d route(s) changed", table.version, len(changes))
        for line in changes:
            log.info("route %s", line)
        return True

    async def _run(self, seen: tuple[int, int, int] | None) -> None:
        # Catch an edit made between the initial load and this watcher starting
        # (a no-op when the file still has the loaded table's version).
        self.reload_now()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
                forced = True
            except asyncio.TimeoutError:
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
            self.reload_now()

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
