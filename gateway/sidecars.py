"""Processes ``gateway serve`` runs beside its workers: once per ``gateway serve``,
never per worker, restarted when they exit, stopped when the gateway stops.

The one sidecar today is the ``InternalAuthService.ValidateApiKey`` gRPC server
(services/otel/auth_service.py) that the ingestion service dials once the Go
backend is retired (``VALIDATE_API_KEY_ADDR`` / ``--validate-api-key-addr``).
It runs as a child process rather than a thread of a worker: uvicorn workers
come and go (and there are N of them), the port must be bound exactly once,
and a crash in gRPC's C core must not take the HTTP workers down with it.

* **Start**: after routes.yaml and the settings were validated, before uvicorn.
* **Restart**: when a child exits while the gateway runs it is started again
  after a backoff (0.5 s doubling to 30 s; back to 0.5 s once it has run for a
  minute), each exit logged with its status.
* **Stop**: on SIGTERM/SIGINT, after uvicorn drained its requests, each child
  gets its stdin closed and SIGTERM, then SIGKILL after ``STOP_TIMEOUT``.
* **Orphans**: a child runs in its own session (a Ctrl-C in a terminal reaches
  only the gateway, which stops it in order) and exits when its stdin pipe
  closes, which happens when the gateway dies in any way, SIGKILL included.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("gateway.sidecars")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 60.0  # seconds a child must have run for its next restart to be quick again
STOP_TIMEOUT = 5.0  # seconds a child gets after SIGTERM before SIGKILL


@dataclass(frozen=True)
class Sidecar:
    name: str  # for logs: "ValidateApiKey server"
    argv: tuple[str, ...]


def validate_api_key_server(addr: str) -> Sidecar:
    """The ValidateApiKey gRPC server listening on ``addr`` (``host:port``)."""
    host, _, port = addr.rpartition(":")
    return Sidecar(f"ValidateApiKey server on {addr}",
                   (sys.executable, "-m", "services.otel.auth_service", "--host", host, "--port", port,
                    "--exit-with-stdin"))


class _Child:
    """One sidecar: its current process and the thread that restarts it."""

    def __init__(self, sidecar: Sidecar, stopping: threading.Event) -> None:
        self.sidecar = sidecar
        self.stopping = stopping
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._first: tuple[subprocess.Popen[bytes] | None, float] = (None, 0.0)  # set by start()
        self.lock = threading.Lock()  # a stop (or a fork) never races a (re)start
        self._thread = threading.Thread(target=self._run, name=f"sidecar {sidecar.name}", daemon=True)

    def start(self) -> None:
        # The first process is started here, in the caller's thread: its
        # "started" line is logged before uvicorn applies its logging config
        # (dictConfig swaps the root logger's handlers: a record that another
        # thread logs meanwhile reaches none and is lost), and the sidecar is
        # up before any worker is.
        self._first = (self._spawn(), time.monotonic())
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self.lock:
            if self.stopping.is_set():
                return None
            try:
                proc = subprocess.Popen(self.sidecar.argv, stdin=subprocess.PIPE, start_new_session=True)
            except OSError as exc:
                log.error("%s: cannot start %s: %s", self.sidecar.name, self.sidecar.argv[0], exc)
                return None
            self.proc, self.starts = proc, self.starts + 1
            log.info("%s started (pid %d)", self.sidecar.name, proc.pid)
            return proc

    def _run(self) -> None:
        proc, started = self._first
        backoff = MIN_BACKOFF
        while True:
            status = proc.wait() if proc is not None else None
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_RUN:
                backoff = MIN_BACKOFF
            log.warning("%s %s; restarting in %g s", self.sidecar.name, _exit_text(status), backoff)
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            if self.stopping.is_set():
                return
            started = time.monotonic()
            proc = self._spawn()

    def forget_in_forked_child(self) -> None:
        """In a process forked from this one: let go of the sidecar's stdin,
        whose end is how the sidecar learns that the gateway is gone."""
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            _close_quietly(proc)

    def stop(self, timeout: float) -> None:
        with self.lock:  # no new process after this
            proc = self.proc
        if proc is not None and proc.poll() is None:
            _close_quietly(proc)  # the child's cue to stop, as when the gateway dies
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s after SIGTERM; killing it", self.sidecar.name, timeout)
                proc.kill()
                proc.wait()
            log.info("%s stopped (pid %d, %s)", self.sidecar.name, proc.pid, _exit_text(proc.returncode))
        elif proc is not None:
            _close_quietly(proc)
        self._thread.join(timeout)


class Supervisor:
    """Starts, restarts and stops the given sidecars (none: does nothing)."""

    def __init__(self, sidecars: Sequence[Sidecar]) -> None:
        self._stopping = threading.Event()
        self.children = [_Child(s, self._stopping) for s in sidecars]
        if self.children:
            # --workers processes are forked from gateway serve: a worker that
            # kept a sidecar's stdin open would keep the sidecar alive after
            # gateway serve was killed, for as long as the worker lived. No
            # fork while a sidecar is being (re)started, or the new pipe would
            # be in the child before the child knew of it.
            os.register_at_fork(before=self._hold_starts, after_in_parent=self._release_starts,
                                after_in_child=self._forget_in_forked_child)

    def _hold_starts(self) -> None:
        for child in self.children:
            child.lock.acquire()

    def _release_starts(self) -> None:
        for child in reversed(self.children):
            child.lock.release()

    def _forget_in_forked_child(self) -> None:
        self._release_starts()
        for child in self.children:
            child.forget_in_forked_child()

    def start(self) -> None:
        for child in self.children:
            child.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self._stopping.set()
        for child in self.children:
            child.stop(timeout)


class Terminated(BaseException):
    """SIGTERM reached ``gateway serve`` outside uvicorn's own handling.

    A BaseException, like KeyboardInterrupt, so nothing on the way catches it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread.

    uvicorn (one worker) captures SIGTERM while it serves, drains, then restores
    the previous handler and raises the signal again; with the default handler
    the process would die right there, before the sidecars are stopped. This
    handler makes that last step an exception the caller's ``finally`` sees; a
    SIGTERM before uvicorn took over (during start-up) stops the gateway the same way.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_by(signum: int) -> None:
    """Exit as killed by ``signum`` (what init systems expect after a SIGTERM)."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # not reached: the default action ends the process


def _close_quietly(proc: subprocess.Popen[bytes]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass


def _exit_text(status: int | None) -> str:
    if status is None:
        return "could not start"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
