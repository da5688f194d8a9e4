"""The one uvicorn internal `gateway serve --workers N` relies on (gateway/cli.py
``_fork_workers``): uvicorn's supervisor makes each worker process with the
multiprocessing context held in ``uvicorn._subprocess.spawn``, read when the
worker starts. If a uvicorn release stops doing so, this fails here, in the
test run, before the gateway silently goes back to spawning."""
from __future__ import annotations

import logging
import logging.config
import multiprocessing
import os
import signal
import socket
import time
from typing import Any

import uvicorn._subprocess
from uvicorn.config import Config

import gateway.cli
from gateway.ops import logs


class _Recording:
    def __init__(self) -> None:
        self.made: list[dict[str, Any]] = []

    def Process(self, **kwargs: Any) -> object:  # multiprocessing's name
        self.made.append(kwargs)
        return object()


def test_uvicorn_makes_workers_with_the_context_in_its_spawn_attribute(monkeypatch) -> None:
    recording = _Recording()
    monkeypatch.setattr(uvicorn._subprocess, "spawn", recording)
    with socket.socket() as sock:
        uvicorn._subprocess.get_subprocess(Config(app="gateway.app:serve_app"), target=lambda **_: None,
                                           sockets=[sock])
    assert len(recording.made) == 1 and recording.made[0]["target"] is uvicorn._subprocess.subprocess_started


def test_several_workers_are_forked(monkeypatch) -> None:
    monkeypatch.setattr(uvicorn._subprocess, "spawn", multiprocessing.get_context("spawn"))
    gateway.cli._fork_workers()
    assert uvicorn._subprocess.spawn.get_start_method() == "fork"


def _in_forked_child(body) -> bytes:
    """Run ``body()`` in a child forked from this process, as uvicorn forks a
    worker; return what the child wrote to its stdout (a pipe)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.dup2(write, 1)
            body()
        finally:
            os._exit(0)
    os.close(write)
    out = b""
    while chunk := os.read(read, 65536):
        out += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return out


def test_a_forked_worker_starts_with_default_signal_handlers(monkeypatch) -> None:
    """Not the supervisor's, which only queue a signal for its own loop: the
    SIGTERM uvicorn re-raises after a graceful stop must end the worker."""
    seen: list[str] = []
    monkeypatch.setattr(gateway.cli, "_subprocess_started", lambda **_: seen.append(
        f"{signal.getsignal(signal.SIGTERM)} {signal.getsignal(signal.SIGHUP)} {signal.getsignal(signal.SIGINT)}"))

    def body() -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # as uvicorn's supervisor leaves them
            signal.signal(sig, lambda *_: None)
        gateway.cli._forked_worker(config=None, target=lambda **_: None, sockets=[], stdin_fileno=None)
        os.write(1, seen[0].encode())

    out = _in_forked_child(body).decode()
    assert out == f"{signal.SIG_DFL} {signal.SIG_DFL} {signal.default_int_handler}", out


def test_a_forked_worker_that_fails_to_start_writes_out_why(monkeypatch) -> None:
    """It leaves through os._exit, which runs no exit hook: its log backlog is
    written before, or the supervisor's "failed to start" comes with no reason."""
    def failing(**_: Any) -> None:
        log = logging.getLogger("gateway.app")
        log.error("Waiting for application startup.")
        time.sleep(0.01)  # written by now; the writer then lets lines gather for 50 ms
        log.error("Application startup failed. Exiting.")
        raise SystemExit(3)

    monkeypatch.setattr(gateway.cli, "_subprocess_started", failing)

    def body() -> None:
        logging.config.dictConfig(logs.log_config("info"))  # as uvicorn does in the worker
        try:
            gateway.cli._forked_worker(config=None, target=lambda **_: None, sockets=[], stdin_fileno=None)
        except SystemExit:
            pass

    out = _in_forked_child(body)
    assert b'"message":"Application startup failed. Exiting."' in out, out
