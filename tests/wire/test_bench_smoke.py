"""``make bench`` end to end in --quick mode: every row is produced and sane.

Proves the harness works (Go builds, servers start and stop, the load generator
and the report run); it asserts no timings — quick-mode numbers mean nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain"), pytest.mark.long(seconds=50)]


def test_bench_quick_produces_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        # Paced (200 req/s: the naive baseline would take a core), as the
        # smoke run shares the machine with the rest of the suite. Rows of
        # 1 s, not --quick's 0.5: a row must serve enough requests for
        # its server's CPU to show in /proc's 10 ms ticks (at 200 req/s for
        # 0.3 s the upstream's rounded to 0), and on a machine starved by the
        # rest of the suite a 0.5 s window once closed before the gateway
        # answered anything (a clean-clone run of 132 s instead of ~90).
        [sys.executable, "-m", "tools.bench.run", "--quick", "--max-rate", "200", "--duration", "1",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())

    rows = {(r["target"], r["scenario"]): r for r in doc["rows"]}
    proxy = ("small16", "small64", "slow256", "big16")
    expected = {(t, s) for t in ("direct", "baseline", "gateway") for s in proxy}
    expected |= {("gateway", "paced256"), ("gateway", "ping64"), ("gateway-nolog", "small64"),
                 ("floor", "small64"), ("hello", "small64"), ("ping-app", "ping64"), ("ping-app-edge", "ping64"),
                 ("ping-app-logged", "ping64")}
    assert set(rows) == expected
    for key, row in rows.items():
        assert row["failure"] is None, (key, row["failure"])
        assert {"requests", "completed", "errors", "rps"} <= set(row["load"]), (key, row["load"])
        if key[0] != "baseline":
            # The naive baseline may finish no 10-MiB download in a 0.5 s quick
            # row on a loaded machine; the others always serve something.
            assert row["load"]["rps"] > 0 and row["load"]["errors"] == 0, (key, row["load"])
            # CPU per request of the server under test, from the same row.
            assert row["cpu_s"] > 0 and row["cpu_us_per_request"] > 0, (key, row)
    for target in ("baseline", "gateway"):
        assert rows[(target, "big16")]["rss"] is not None
    # The short exchanges are paced to the rate the long ones reached.
    assert rows[("gateway", "paced256")]["rate"] == rows[("gateway", "slow256")]["load"]["rps"]
    # The CPU of the server's threads other than the event loop's (the gateway's
    # log writer) is measured per row (a 0.5 s row may round it to 0: /proc counts 10 ms ticks).
    assert rows[("gateway", "small64")]["cpu_threads_s"] is not None
    # The two close comparisons ran again in interleaved rounds (one, in --quick).
    paired = {p["name"]: p for p in doc["paired"]}
    assert set(paired) == {"access_log", "ping", "ping_logged", "floor", "hello"}
    assert [[a["target"], b["target"]] for a, b in paired["ping"]["rounds"]] == [["gateway", "ping-app"]]
    assert [[a["target"], b["target"]] for a, b in paired["floor"]["rounds"]] == [["gateway", "floor"]]
    assert [[a["target"], b["target"]] for a, b in paired["hello"]["rounds"]] == [["gateway", "hello"]]
    verdicts = {c["name"]: c["verdict"] for c in doc["targets"]}
    assert len(verdicts) == 9 and "n/a" not in verdicts.values(), verdicts
    checks = {c["name"]: c for c in doc["targets"]}
    assert any(name.startswith("access log:") and "hand-off" in c["detail"] for name, c in checks.items()), checks
    # The 70 µs target says what the floor (a bare callback relay) costs beside it.
    assert any(name.startswith("200 B GET @64, access log on") and "gateway ÷ floor" in c["detail"]
               for name, c in checks.items()), checks
    assert "targets (informational):" in proc.stdout
    assert "CPU µs/req" in proc.stdout

