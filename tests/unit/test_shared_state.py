"""Canary rollback verdicts shared between gateway processes: a file for one
host's workers, PostgreSQL's gateway_state table for replicas on several hosts."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.migration.rollback import RollbackGuard
from gateway.ops.shared_state import DatabaseState, FileState, open_shared_state, replica_warnings
from gateway.routing.config import RollbackSpec, RouteSpec

SPEC = RouteSpec(prefix="/users", to="canary", percent=25, rollback=RollbackSpec(min_requests=20))


@pytest.fixture(params=["file", "postgresql"])
def two_homes(request, tmp_path):
    """Two processes' views of one shared state (two workers, or two hosts)."""
    if request.param == "file":
        yield FileState(tmp_path / "rollbacks.json"), FileState(tmp_path / "rollbacks.json")
        return
    url = request.getfixturevalue("pg_url")
    a, b = DatabaseState(url, "rollback"), DatabaseState(url, "rollback")
    yield a, b
    a.dispose()
    b.dispose()


def test_a_verdict_reaches_the_other_process_at_its_next_sync(two_homes):
    here, there = RollbackGuard(two_homes[0]), RollbackGuard(two_homes[1])
    there.sync()  # nothing yet
    assert not there.is_rolled_back(SPEC)
    here.roll_back(SPEC, "python error rate 50% > go 0%")
    here.sync()
    there.sync()
    assert there.is_rolled_back(SPEC)
    assert there.reason(SPEC)["reason"] == "python error rate 50% > go 0%"
    # An edit of the route re-arms it everywhere: the verdict names the old spec.
    edited = RouteSpec(prefix="/users", to="canary", percent=50, rollback=SPEC.rollback)
    assert not there.is_rolled_back(edited) and not here.is_rolled_back(edited)


def test_the_database_state_upserts_one_row_per_key(pg_url):
    a, b = DatabaseState(pg_url, "rollback"), DatabaseState(pg_url, "other")
    try:
        a.put("/x", {"key": "1"})
        a.put("/x", {"key": "2"})
        b.put("/x", {"key": "b"})
        assert a.read_all() == {"/x": {"key": "2"}}
        assert b.read_all() == {"/x": {"key": "b"}}
    finally:
        a.dispose()
        b.dispose()


def test_the_file_state_is_read_again_only_when_it_changed(tmp_path):
    state = FileState(tmp_path / "rollbacks.json")
    assert state.read_all() is None  # no file yet
    state.put("/x", {"key": "1"})
    assert state.read_all() == {"/x": {"key": "1"}}
    assert state.read_all() is None


def test_where_verdicts_are_shared(tmp_path, pg_url):
    assert open_shared_state("rollback", state_dir=None, database_url=None) is None
    file_state = open_shared_state("rollback", state_dir=str(tmp_path), database_url=None)
    assert isinstance(file_state, FileState) and file_state.path == Path(tmp_path) / "rollbacks.json"
    # SQLite is the Go backend's file: no gateway writes go there.
    sqlite = open_shared_state("rollback", state_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sqlite, FileState)
    server = open_shared_state("rollback", state_dir=str(tmp_path), database_url=pg_url)
    assert isinstance(server, DatabaseState)
    server.dispose()


def test_replicas_on_several_hosts_are_told_to_share_the_gateway_secret():
    server = "postgresql+psycopg://u@db/junjo"
    assert "GATEWAY_SECRET is not set" in replica_warnings(server, None)[0]
    assert replica_warnings(server, "s") == []
    assert replica_warnings("sqlite:////dbdata/app.db", None) == []  # one host
    assert replica_warnings(None, None) == []
