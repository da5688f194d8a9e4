"""The one uvicorn internal `gateway serve --workers N` relies on (gateway/cli.py
``_fork_workers``): uvicorn's supervisor makes each worker process with the
multiprocessing context held in ``uvicorn._subprocess.spawn``, read when the
worker starts. If a uvicorn release stops doing so, this fails here, in the
test run, before the gateway silently goes back to spawning."""
from __future__ import annotations

import multiprocessing
import socket
from typing import Any

import uvicorn._subprocess
from uvicorn.config import Config

import gateway.cli


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
