"""``make bench``'s SQLite contention run (tools/bench/sqlite_contention.py) end
to end, in a tiny run: every phase runs and is reported. It asserts no rates:
a one-second run's numbers mean nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain"), pytest.mark.long(seconds=8)]


def test_sqlite_contention_runs_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "sqlite.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.bench.sqlite_contention", "--duration", "1", "--rate", "10",
         "--clients", "2", "--boots", "2", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    sides = {(r["phase"], r["side"]) for r in doc["rows"]}
    assert sides == {("go-all", "go"), ("go-half", "go"), ("mixed", "go"), ("mixed", "python")}
    assert all(r["requests"] > 0 for r in doc["rows"])
    assert doc["boots"]["boots"] == 2 and "Go failures, Go's half beside Python" in proc.stdout
