"""The fork server the suite starts its gateways from, shared by an xdist run's
workers (tests/support/forkserver.py): each worker gets its own children's
exits, and a worker that goes away takes its gateways with it, never another's."""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.forkserver import ForkServer, SharedForkServer
from tests.support.processes import alive
from tests.support.waiting import until


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedForkServer]:
    """A shared server of this module's own, apart from the run's: each test
    connects clients of its own to it."""
    server = SharedForkServer()
    yield server
    server.stop()


def _serve(client: ForkServer, tmp_path: Path, name: str):
    (tmp_path / f"{name}.yaml").write_text("legacy:\n  url: http://127.0.0.1:9\ndefault: go\nroutes: []\n")
    log = tmp_path / f"{name}.log"
    log.touch()
    return client.spawn(["serve", "--config", str(tmp_path / f"{name}.yaml"), "--port", "0"],
                        env={**os.environ, "JUNJO_SESSION_SECRET": "x"}, log=log)


def test_each_client_gets_its_own_childrens_exits(shared: SharedForkServer, tmp_path: Path) -> None:
    a, b = ForkServer(shared.address), ForkServer(shared.address)
    (tmp_path / "good.yaml").write_text("legacy:\n  url: http://127.0.0.1:9\ndefault: go\nroutes: []\n")
    (tmp_path / "bad.yaml").write_text("legacy:\n  url: http://127.0.0.1:9\ndefault: nowhere\nroutes: []\n")
    good = a.run(["check", "--no-probe", str(tmp_path / "good.yaml")])
    bad = b.run(["check", "--no-probe", str(tmp_path / "bad.yaml")])
    assert good.returncode == 0, good.stderr
    assert bad.returncode == 1 and "default" in bad.stderr, bad.stderr
    served = _serve(a, tmp_path, "long")
    time.sleep(0.2)
    assert served.poll() is None
    served.terminate()
    assert served.wait(20) == -signal.SIGTERM  # after its graceful stop, as Popen reports it


def test_a_client_that_goes_away_takes_its_gateways_not_anothers(shared: SharedForkServer, tmp_path: Path) -> None:
    leaving, staying = ForkServer(shared.address), ForkServer(shared.address)
    theirs, ours = _serve(leaving, tmp_path, "theirs"), _serve(staying, tmp_path, "ours")
    until(lambda: "Uvicorn running" in (tmp_path / "ours.log").read_text(), what="the staying gateway up")
    leaving._sock.shutdown(socket.SHUT_RDWR)  # as when an xdist worker exits
    until(lambda: not alive(theirs.pid), what="the leaving client's gateway killed")
    assert alive(ours.pid) and ours.poll() is None
    ours.terminate()
    assert ours.wait(20) == -signal.SIGTERM
