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


@pytest.mark.parametrize(("gateway_p99", "hinted"), [(67.7, False), (2403.1, True)])
def test_a_slow_row_whose_requests_queued_says_how_to_measure_it_again(gateway_p99: float, hinted: bool) -> None:
    # 2026-12-03 18:33: the slow row read 0.43x direct with a p99 of 2.4 s
    # (the machine stalled); two re-runs of the slow rows read 0.99x, 0.98x.
    def slow(target: str, rps: float, p99: float) -> run.Row:
        return run.Row(target, "slow256", "GET 50 ms slow", 256,
                       load=run.LoadResult(requests=int(rps * 5), completed=int(rps * 5), rps=rps, p99_ms=p99))

    rows = [slow(run.DIRECT, 4724.0, 65.7), slow(run.GATEWAY, 2023.0 if hinted else 4701.0, gateway_p99)]
    [check] = [c for c in run.checks(rows) if c.name.startswith("slow GET @256")]
    assert check.detail.startswith("2,023 ÷ 4,724 req/s" if hinted else "4,701 ÷ 4,724 req/s")
    assert ("re-run the two slow rows: --targets direct,gateway --only slow256,paced256" in check.detail) is hinted
    if hinted:
        assert "p99 was 2,403 ms against direct's 66 ms" in check.detail
