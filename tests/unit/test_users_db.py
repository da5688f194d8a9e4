"""The legacy SQLite schema and the users / api_keys repository."""
from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from services.common import db as dbmod
from services.common.db import Database, DuplicateError, rfc3339
from services.common.settings import settings_from_env


@pytest.fixture
def database(tmp_path):
    db = Database.from_url(f"sqlite:///{tmp_path / 'app_data.db'}")
    yield db
    db.dispose()


def test_schema_matches_goose_migration_and_is_recorded(database, tmp_path):
    conn = sqlite3.connect(tmp_path / "app_data.db")
    sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table','index')"))
    assert "email TEXT NOT NULL UNIQUE" in sql["users"]
    assert "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP" in sql["api_keys"]
    assert "CHECK (id = 1)" in sql["poller_state"]
    assert "idx_users_email" in sql
    assert conn.execute("SELECT version_id, is_applied FROM goose_db_version ORDER BY id").fetchall() == [(0, 1), (1, 1)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_existing_schema_is_never_altered(tmp_path):
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE, "
                 "password_hash TEXT NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, extra TEXT)")
    conn.execute("INSERT INTO users (email, password_hash) VALUES ('go@example.com', 'h')")
    conn.commit()
    db = Database.from_url(f"sqlite:///{path}")
    assert db.get_user_by_email("go@example.com").email == "go@example.com"
    cols = [r[1] for r in conn.execute("PRAGMA table_info(users)")]
    assert cols[-1] == "extra"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"api_keys", "poller_state"} <= names and "goose_db_version" not in names
    db.dispose()


def test_users_crud(database):
    assert database.has_users() is False
    first = database.create_first_user("a@example.com", "$2a$10$x")
    assert first is not None and first.id == 1
    assert database.create_first_user("b@example.com", "h") is None
    database.create_user("b@example.com", "h")
    with pytest.raises(DuplicateError):
        database.create_user("a@example.com", "h")
    assert database.get_user_by_email("A@example.com") is None  # exact match, like sqlc
    assert database.count_users() == 2
    database.delete_user(1)
    database.delete_user(999)
    assert [u.email for u in database.list_users()] == ["b@example.com"]


def test_list_users_newest_first(database):
    with database.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO users (email, password_hash, created_at) VALUES "
                             "('old@x.io','h','2024-01-01 00:00:00'), ('new@x.io','h','2025-06-01 12:30:45')")
    users = database.list_users()
    assert [u.email for u in users] == ["new@x.io", "old@x.io"]
    assert rfc3339(users[0].created_at) == "2025-06-01T12:30:45Z"
    assert users[0].password_hash == ""


def test_rfc3339_like_go():
    dt = datetime(2025, 1, 2, 3, 4, 5, 123400, tzinfo=timezone.utc)
    assert rfc3339(dt) == "2025-01-02T03:04:05.1234Z"
    assert rfc3339(dt.astimezone(timezone(timedelta(hours=-5)))) == "2025-01-01T22:04:05.1234-05:00"


def test_api_keys(database):
    k = database.create_api_key("id-1", "key-1", "first")
    assert (k.id, k.key, k.name) == ("id-1", "key-1", "first")
    with pytest.raises(DuplicateError):
        database.create_api_key("id-2", "key-1", "dup")
    assert database.get_api_key("key-1").id == "id-1"
    assert database.get_api_key("KEY-1") is None
    assert [x.key for x in database.list_api_keys()] == ["key-1"]
    assert database.delete_api_key("key-1") is True
    assert database.delete_api_key("key-1") is False


def test_run_uses_a_worker_thread(database):
    import threading

    main = threading.get_ident()

    async def go():
        return await database.run(threading.get_ident)

    assert anyio.run(go) != main


def test_url_from_env(tmp_path, monkeypatch):
    path = tmp_path / "nested" / "dir" / "app.db"
    url = dbmod.database_url(settings_from_env({"JUNJO_SQLITE_PATH": str(path)}))
    assert url == f"sqlite:///{path}" and path.parent.is_dir()
    assert dbmod.database_url(settings_from_env({"DATABASE_URL": "sqlite:///x.db"})) == "sqlite:///x.db"
    monkeypatch.chdir(tmp_path)
    assert dbmod.database_url(settings_from_env({})).endswith("/data/app_data.db")


def test_workers_opening_a_fresh_file_at_once_all_get_the_schema(tmp_path):
    # Two processes race on each fresh file (as gateway workers do at boot).
    import subprocess
    import sys

    script = (
        "import sys; from services.common.db import Database\n"
        "db = Database.from_url('sqlite:///' + sys.argv[1]); db.count_users(); db.dispose()\n"
    )
    for i in range(8):
        path = str(tmp_path / f"fresh{i}.db")
        procs = [subprocess.Popen([sys.executable, "-c", script, path], stderr=subprocess.PIPE) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()[-400:]
