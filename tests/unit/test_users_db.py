"""The legacy SQLite schema and the users / api_keys repository."""
from __future__ import annotations

import logging
import os
import sqlite3
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from services.common import db as dbmod
from services.common.db import Database, DuplicateError, rfc3339
from services.common.settings import SettingsError, settings_from_env


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
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # the legacy's mode, untouched


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


# --- sharing the file with Go: the legacy's journal mode, no lingering locks ---------

def go_like(path) -> sqlite3.Connection:
    """A connection as the legacy opens one: no busy timeout, so any lock held
    by the Python side makes it fail at once."""
    return sqlite3.connect(path, timeout=0, isolation_level=None)


def test_connections_use_the_legacys_durability(database):
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == dbmod.BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_no_lock_is_left_behind_by_any_method(database, tmp_path):
    # After each call a no-timeout connection can take the EXCLUSIVE lock at
    # once: no pooled connection sits in a transaction or an unfinished read.
    calls = [
        lambda: database.create_first_user("a@example.com", "h"),
        lambda: database.create_user("b@example.com", "h"),
        lambda: database.get_user_by_email("a@example.com"),
        lambda: database.list_users(),
        database.has_users,
        lambda: database.create_api_key("i1", "k1", "n"),
        lambda: database.create_api_key("i2", "k2", "n"),
        lambda: database.get_api_key("k1"),
        database.list_api_keys,
        lambda: database.delete_api_key("k1"),
        lambda: database.delete_user(2),
    ]
    go = go_like(tmp_path / "app_data.db")
    for call in calls:
        call()
        go.execute("BEGIN EXCLUSIVE")
        go.execute("COMMIT")
    with pytest.raises(DuplicateError):
        database.create_user("a@example.com", "h")
    go.execute("BEGIN EXCLUSIVE")
    go.execute("COMMIT")
    for record in database.engine.pool._pool.queue:  # idle connections: none mid-transaction
        assert not record.dbapi_connection.in_transaction


def test_dry_run_writes_roll_back(database):
    """A write made while the registry runs a feature as a dry run (a replayed
    shadow write) never commits; the same write outside one does."""
    import asyncio

    from services.registry import Service

    async def feature(scope, receive, send) -> None:
        database.create_user(scope["email"], "h")
        database.create_api_key(scope["email"], scope["email"], "n")

    service = Service("feature", ("/f",), feature)
    def scope(email: str) -> dict:
        return {"type": "http", "method": "POST", "headers": [], "email": email}

    asyncio.run(service.call(scope("dry@example.com"), None, None, dry_run=True))  # type: ignore[arg-type]
    assert database.count_users() == 0 and database.list_api_keys() == []
    asyncio.run(service.call(scope("real@example.com"), None, None))  # type: ignore[arg-type]
    assert database.count_users() == 1 and len(database.list_api_keys()) == 1


def make_wal_file(path) -> None:
    """A file as the previous gateway left it: in WAL mode, with the schema."""
    Database.from_url(f"sqlite:///{path}").dispose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.execute("INSERT INTO users (email, password_hash) VALUES ('old@example.com', 'h')")
    conn.commit()
    conn.close()


def test_a_file_left_in_wal_mode_is_restored_to_delete(tmp_path, caplog):
    path = tmp_path / "app_data.db"
    make_wal_file(path)
    with caplog.at_level(logging.INFO, logger="services.common.db"):
        db = Database.from_url(f"sqlite:///{path}")
    try:
        assert db.get_user_by_email("old@example.com") is not None  # nothing lost from the WAL
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert not os.path.exists(f"{path}-wal")
        assert any("wal -> delete" in r.getMessage() for r in caplog.records), caplog.text
    finally:
        db.dispose()


def test_a_wal_file_held_open_elsewhere_is_reported_not_forced(tmp_path, caplog):
    path = tmp_path / "app_data.db"
    make_wal_file(path)
    holder = sqlite3.connect(path)
    holder.execute("SELECT COUNT(*) FROM users").fetchall()  # an open WAL connection
    engine = create_engine_without_settling(path)
    with caplog.at_level(logging.ERROR, logger="services.common.db"):
        assert dbmod.settle_journal_mode(engine, "delete", budget=0.3) == "wal"
    assert "could not be switched" in caplog.text and "restart the Go backend" in caplog.text
    holder.close()
    assert dbmod.settle_journal_mode(engine, "delete", budget=5) == "delete"
    engine.dispose()


def create_engine_without_settling(path):
    from sqlalchemy import create_engine

    return create_engine(f"sqlite:///{path}", isolation_level="AUTOCOMMIT")


def test_opt_in_wal_for_a_file_python_owns_alone(tmp_path, caplog):
    path = tmp_path / "app_data.db"
    with caplog.at_level(logging.INFO, logger="services.common.db"):
        db = Database.from_url(f"sqlite:///{path}", journal_mode="WAL")
    try:
        db.create_user("w@example.com", "h")
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert "journal_mode=wal, synchronous=NORMAL" in caplog.text
    finally:
        db.dispose()


def test_unknown_journal_mode_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="JUNJO_SQLITE_JOURNAL_MODE='memory' is not supported"):
        Database.from_url(f"sqlite:///{tmp_path / 'x.db'}", journal_mode="memory")
    assert not (tmp_path / "x.db").exists()
    assert settings_from_env({"JUNJO_SQLITE_JOURNAL_MODE": "wal"}).sqlite_journal_mode == "wal"
    assert settings_from_env({}).sqlite_journal_mode == "delete"
    with pytest.raises(SettingsError, match="JUNJO_SQLITE_JOURNAL_MODE: .*'memory' is not supported"):
        settings_from_env({"JUNJO_SQLITE_JOURNAL_MODE": "memory"})
