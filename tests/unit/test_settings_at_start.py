"""Settings are read when the gateway starts, never when a module is imported.

An import can come before the environment is final: a test's fork server
(tests/support/forkserver.py) imports everything once and forks gateways with
their own environments, and a tool may import a service to inspect it. A
setting cached at import would silently ignore the environment the process
actually runs with.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import functools, gc, json
from tests.support.forkserver import _preload
_preload()
gc.unfreeze()  # _preload froze the heap, and get_objects() does not list frozen objects
cached = sorted(f"{f.__module__}.{f.__qualname__}" for f in gc.get_objects()
                if isinstance(f, functools._lru_cache_wrapper) and f.cache_info().currsize
                and f.__module__.split(".")[0] in ("gateway", "services", "tests"))
print(json.dumps(cached))
"""


def test_importing_the_gateway_and_every_service_reads_no_setting() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []
