"""The bench harness's row logic (tools/bench/run.py), without servers or load."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tools.bench import run


def settings(**kw: Any) -> run.Settings:
    return run.Settings(duration=1.0, warmup=0.2, big_size=1 << 20, output=Path("/dev/null"), quick=True,
                        targets=(run.GATEWAY,), only=("small64",), **kw)


def a_row(requests: int) -> run.Row:
    return run.Row(run.GATEWAY, "small64", "GET 200 B", 64,
                   load=run.LoadResult(requests=requests, completed=requests + 26, rps=float(requests)))


def test_a_row_whose_window_counted_nothing_is_measured_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    tries = [a_row(0), a_row(180)]
    monkeypatch.setattr(run, "measure", lambda *a, **k: tries.pop(0))
    server = SimpleNamespace(alive=lambda: True, name="gateway")
    [row] = run.bench_target(run.GATEWAY, server, Path("loadgen"), run.Pinning([], [], ""), settings())
    assert row.load is not None and row.load.requests == 180
    assert row.empty_first_try is not None and row.empty_first_try.requests == 0
    assert not tries


def test_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tries = [a_row(0), a_row(0), a_row(180)]
    monkeypatch.setattr(run, "measure", lambda *a, **k: tries.pop(0))
    server = SimpleNamespace(alive=lambda: True, name="gateway")
    [row] = run.bench_target(run.GATEWAY, server, Path("loadgen"), run.Pinning([], [], ""), settings())
    assert row.load is not None and row.load.requests == 0  # reported as it is: no third try
    assert len(tries) == 1


def test_a_full_row_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    tries = [a_row(180), a_row(0)]
    monkeypatch.setattr(run, "measure", lambda *a, **k: tries.pop(0))
    server = SimpleNamespace(alive=lambda: True, name="gateway")
    [row] = run.bench_target(run.GATEWAY, server, Path("loadgen"), run.Pinning([], [], ""), settings())
    assert row.empty_first_try is None and len(tries) == 1


@pytest.mark.parametrize(("max_rate", "connections", "expected"), [
    (None, 256, 256),   # unpaced: the scenario's connections
    (200.0, 256, 50),   # 200 req/s for 1 s: 4 requests a connection at least
    (200.0, 16, 16),
    (2.0, 64, 1),
])
def test_max_rate_caps_the_connections(monkeypatch: pytest.MonkeyPatch, max_rate: float | None,
                                       connections: int, expected: int) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"requests": 1}), "")

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    scenario = run.Scenario("x", "x", "/small", connections, 200)
    run.run_loadgen(Path("loadgen"), run.Pinning([], [], ""), "http://h", scenario, settings(max_rate=max_rate))
    cmd = seen[0]
    assert cmd[cmd.index("-c") + 1] == str(expected)
    if max_rate:
        assert float(cmd[cmd.index("-rate") + 1]) == max_rate
