"""``gateway db copy`` / ``verify``: the Go backend's SQLite file → a real PostgreSQL, and back.

The source is made by the Go stand-in (goose schema, Go's bcrypt hashes, its
CURRENT_TIMESTAMP), as the legacy leaves it; the copy-back is booted by the
stand-in again, which signs its users in.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from services.common import dbcopy
from services.common.db import Database, rfc3339
from services.common.session_codec import SessionCodec
from tests.support.gateway_proc import gateway_cli
from tests.support.standin import start_standin

OWNER, PASSWORD = "ada@example.com", "go's own hash"
USERS = [f"user{n}@example.com" for n in range(7)]


@pytest.fixture(scope="module")
def go_made(tmp_path_factory) -> Path:
    """A SQLite file as the Go backend leaves it: users (some deleted, so ids
    have gaps and sqlite_sequence is past the last one), API keys made in the
    same second, the poller cursor."""
    path = tmp_path_factory.mktemp("go") / "app_data.db"
    go = start_standin(str(path), extra_args=["-seed-user", f"{OWNER}:{PASSWORD}"])
    try:
        cookie = f"session={SessionCodec([b'test-secret']).encode(OWNER)}; csrf=t"
        with httpx.Client(base_url=go.url, headers={"Cookie": cookie}, timeout=10) as api:
            for email in USERS:
                assert api.post("/users", json={"email": email, "password": "pw"}).status_code == 200
            for n in range(5):
                assert api.post("/api_keys", json={"name": f"key {n}"}).status_code == 201
    finally:
        go.stop()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM users WHERE email IN (?, ?)", (USERS[2], USERS[-1]))  # the highest id too
    conn.execute("INSERT INTO poller_state (id, last_key) VALUES (1, ?)", (bytes(range(16)),))
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def source(go_made: Path, tmp_path: Path) -> Path:
    path = tmp_path / "app_data.db"
    shutil.copy(go_made, path)
    return path


def gateway_db(*args: str) -> subprocess.CompletedProcess:
    return gateway_cli("db", *args, timeout=120)


def rows(url: str) -> dict[str, list[tuple]]:
    """What the API would answer from a database, plus what it never shows."""
    db = Database.from_url(url)
    try:
        with db.engine.connect() as conn:
            hashes = dict(conn.execute(text("SELECT id, password_hash FROM users")).all())
            cursor = conn.execute(text("SELECT last_key FROM poller_state")).scalar()
        return {
            "users": [(u.id, u.email, rfc3339(u.created_at), hashes[u.id]) for u in db.list_users()],
            "api_keys": [(k.id, k.key, k.name, rfc3339(k.created_at)) for k in db.list_api_keys()],
            "cursor": [bytes(cursor) if cursor is not None else None],
        }
    finally:
        db.dispose()


def test_copy_moves_every_row_then_a_rerun_changes_nothing(source, pg_url):
    done = gateway_db("copy", "--from", str(source), "--to", pg_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "users: 6 inserted, 0 updated, 0 unchanged" in done.stdout
    assert "api_keys: 5 inserted" in done.stdout and "poller_state: 1 inserted" in done.stdout
    assert "verified" in done.stdout
    copied, original = rows(pg_url), rows(f"sqlite:///{source}")
    assert copied == original  # ids, Go's bcrypt hashes, timestamps, list order (ties too), the cursor
    assert all(h.startswith("$2a$10$") for *_, h in copied["users"])

    again = gateway_db("copy", "--from", str(source), "--to", pg_url)
    assert again.returncode == 0, again.stdout
    assert "users: 0 inserted, 0 updated, 6 unchanged" in again.stdout
    assert rows(pg_url) == original  # nothing duplicated
    # The next id is past every id SQLite ever handed out, the deleted last one too.
    db = Database.from_url(pg_url)
    assert db.create_user("new@example.com", "h").id == 9
    db.dispose()


def test_an_interrupted_copy_resumes_after_its_last_batch(source, pg_url):
    class Crash(Exception):
        pass

    def crash_after_two(table: str, copied: int) -> None:
        if table == "users" and copied == 4:
            raise Crash

    with pytest.raises(Crash):
        dbcopy.copy(str(source), pg_url, batch_size=2, on_batch=crash_after_two)
    assert len(rows(pg_url)["users"]) == 4  # two batches committed
    report = dbcopy.copy(str(source), pg_url, batch_size=2)
    users = report.tables[0]
    assert users.resumed_after is not None and (users.inserted, users.unchanged) == (2, 0)
    assert report.verified and rows(pg_url) == rows(f"sqlite:///{source}")


def test_a_dry_run_shows_the_changes_and_writes_nothing(source, pg_url):
    report = dbcopy.copy(str(source), pg_url, dry_run=True)
    assert [(t.table, t.inserted) for t in report.tables] == [("users", 6), ("api_keys", 5), ("poller_state", 1)]
    assert inspect(create_engine(pg_url)).get_table_names() == []  # not even the schema
    assert dbcopy.copy(str(source), pg_url).verified
    conn = sqlite3.connect(source)
    conn.execute("UPDATE users SET password_hash = '$2a$10$changed' WHERE email = ?", (USERS[0],))
    conn.commit()
    conn.close()
    report = dbcopy.copy(str(source), pg_url, dry_run=True)
    assert (report.tables[0].updated, report.tables[0].unchanged) == (1, 5)
    assert rows(pg_url)["users"] != rows(f"sqlite:///{source}")["users"]  # still not written


def test_verify_catches_a_tampered_target_and_a_copy_repairs_it(source, pg_url):
    assert dbcopy.copy(str(source), pg_url).verified
    with create_engine(pg_url).begin() as conn:
        conn.execute(text("UPDATE users SET password_hash = 'tampered' WHERE email = :e"), {"e": OWNER})
    done = gateway_db("verify", "--from", str(source), "--to", pg_url)
    assert done.returncode == 1
    assert "users: MISMATCH" in done.stdout and "api_keys: 5 rows" in done.stdout
    assert dbcopy.copy(str(source), pg_url).tables[0].updated == 1
    assert gateway_db("verify", "--from", str(source), "--to", pg_url).returncode == 0


def test_it_refuses_while_the_source_is_being_written_and_holds_writers_off(source, pg_url):
    go = sqlite3.connect(source, timeout=0, isolation_level=None)  # as the legacy opens it: no busy timeout
    go.execute("BEGIN IMMEDIATE")  # a write in progress
    done = gateway_db("copy", "--from", str(source), "--to", pg_url, "--lock-wait", "0.3")
    assert done.returncode == 2 and "Is the Go backend" in done.stdout, done.stdout
    go.execute("ROLLBACK")

    refused: list[str] = []

    def go_writes(table: str, copied: int) -> None:  # Go's writes while the copy runs
        if table == "(source)":
            return
        try:
            go.execute("INSERT INTO users (email, password_hash) VALUES ('late@example.com', 'h')")
        except sqlite3.OperationalError as exc:
            refused.append(str(exc))

    report = dbcopy.copy(str(source), pg_url, batch_size=2, on_batch=go_writes)
    assert report.verified and refused and set(refused) == {"database is locked"}  # failed, not lost
    go.close()


def test_a_user_made_in_the_target_first_is_a_conflict_not_a_duplicate(source, pg_url):
    db = Database.from_url(pg_url)
    db.create_user(USERS[0], "made on PostgreSQL before the copy")
    db.dispose()
    done = gateway_db("copy", "--from", str(source), "--to", pg_url)
    assert done.returncode == 2
    assert f"email '{USERS[0]}' is id" in done.stdout and "resolve it there" in done.stdout


def test_copy_back_to_a_new_sqlite_file_that_go_boots_on(source, pg_url, tmp_path):
    assert dbcopy.copy(str(source), pg_url).verified
    db = Database.from_url(pg_url)
    db.create_user("made-on-postgres@example.com", "$2a$10$" + "x" * 53)  # after the switch
    db.dispose()
    back = tmp_path / "rolled-back.db"
    done = gateway_db("copy", "--from", pg_url, "--to", str(back))
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(f"sqlite:///{back}") == rows(pg_url)
    go = start_standin(str(back))  # the legacy's goose finds its migration recorded
    try:
        r = httpx.post(go.url + "/sign-in", json={"email": OWNER, "password": PASSWORD}, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        go.stop()
