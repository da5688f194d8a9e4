"""gateway/sidecars.py: the processes `gateway serve` runs beside its workers.

Real child processes (tiny Python scripts); the gateway-level behaviour (the
ValidateApiKey server under `gateway serve`, SIGTERM, SIGKILL, --workers) is
in tests/journey/test_retired_stack.py.
"""
from __future__ import annotations

import logging
import os
import sys

import pytest

from gateway import sidecars
from gateway.sidecars import Sidecar, Supervisor
from tests.support.processes import alive
from tests.support.waiting import until


def script(body: str) -> tuple[str, ...]:
    return (sys.executable, "-c", body)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(sidecars, "MIN_BACKOFF", 0.05)
    monkeypatch.setattr(sidecars, "MAX_BACKOFF", 0.2)


def test_a_child_that_exits_is_started_again(tmp_path, caplog):
    starts = tmp_path / "starts"
    crash = script(f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)")
    supervisor = Supervisor([Sidecar("crasher", crash)])
    with caplog.at_level(logging.INFO, logger="gateway.sidecars"):
        supervisor.start()
        try:
            until(lambda: starts.exists() and len(starts.read_text()) >= 3, 20, "three starts")
        finally:
            supervisor.stop()
    assert "crasher exited with status 3; restarting in" in caplog.text


def test_stop_ends_the_child_and_no_restart_follows(tmp_path):
    starts = tmp_path / "starts"
    forever = script(f"import time; open({str(starts)!r}, 'a').write('x'); time.sleep(600)")
    supervisor = Supervisor([Sidecar("sleeper", forever)])
    supervisor.start()
    child = supervisor.children[0]
    until(lambda: child.proc is not None and starts.exists(), 20, "the child started")
    pid = child.proc.pid
    supervisor.stop()
    assert not alive(pid)
    assert child.proc.returncode == -15  # SIGTERM
    assert child.starts == 1 and starts.read_text() == "x"


def test_a_child_that_ignores_sigterm_is_killed(tmp_path):
    ready = tmp_path / "ready"
    stubborn = script("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      f"sys.stdin.close(); open({str(ready)!r}, 'w').write('x'); time.sleep(600)")
    supervisor = Supervisor([Sidecar("stubborn", stubborn)])
    supervisor.start()
    until(ready.exists, 20, "the child ignoring SIGTERM")
    pid = supervisor.children[0].proc.pid
    supervisor.stop(timeout=0.5)
    assert not alive(pid)
    assert supervisor.children[0].proc.returncode == -9


def test_the_child_runs_in_its_own_session_with_a_stdin_pipe(tmp_path):
    out = tmp_path / "out"
    probe = script(f"import os, sys, time; open({str(out)!r}, 'w').write(str(os.getsid(0))); "
                   "sys.stdin.read(); time.sleep(600)")
    supervisor = Supervisor([Sidecar("probe", probe)])
    supervisor.start()
    try:
        until(lambda: out.exists() and out.read_text(), 20, "the child's session id")
        # Its own session: a terminal's Ctrl-C reaches only the gateway, which stops it in order.
        assert int(out.read_text()) == supervisor.children[0].proc.pid != os.getsid(0)
    finally:
        supervisor.stop()


def test_no_sidecars_is_a_no_op():
    supervisor = Supervisor([])
    supervisor.start()
    supervisor.stop()


def test_the_first_start_is_done_and_logged_before_start_returns(caplog):
    """uvicorn applies its logging config right after: a record that another
    thread logged while dictConfig swapped the handlers was lost (1 run in 8
    under --workers 2, tests/journey/test_retired_stack.py)."""
    supervisor = Supervisor([Sidecar("sleeper", script("import time; time.sleep(600)"))])
    with caplog.at_level(logging.INFO, logger="gateway.sidecars"):
        supervisor.start()
        try:
            child = supervisor.children[0]
            assert child.proc is not None and child.starts == 1
            assert f"sleeper started (pid {child.proc.pid})" in caplog.text
        finally:
            supervisor.stop()


def test_a_forked_process_lets_go_of_the_sidecars_stdin(tmp_path):
    """A --workers process is forked from gateway serve: if it kept the
    sidecar's stdin open, the sidecar would outlive a killed gateway."""
    ended = tmp_path / "ended"
    reader = script(f"import sys; sys.stdin.read(); open({str(ended)!r}, 'w').write('eof')")
    supervisor = Supervisor([Sidecar("reader", reader)])
    supervisor.start()
    try:
        pid = os.fork()
        if pid == 0:  # the "worker": outlives the parent's end of the pipe by far
            import time

            time.sleep(30)
            os._exit(0)
        try:
            supervisor.children[0].forget_in_forked_child()  # as the parent's end goes (gateway serve killed)
            until(ended.exists, 10, "the sidecar to see its stdin end while the forked process lives")
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    finally:
        supervisor.stop()
