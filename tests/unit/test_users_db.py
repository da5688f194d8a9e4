"""The legacy schema and the users / api_keys repository, on SQLite (the file
shared with Go) and on a real PostgreSQL server (``database`` runs each test on
both; the ``sqlite_database`` tests are about sharing the file with Go)."""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from sqlalchemy import inspect, text

from services.common import db as dbmod
from services.common.db import Database, DuplicateError, rfc3339
from services.common.settings import SettingsError, settings_from_env


@pytest.fixture
def database(db_url):
    db = Database.from_url(db_url)
    yield db
    db.dispose()


@pytest.fixture
def sqlite_database(tmp_path):
    db = Database.from_url(f"sqlite:///{tmp_path / 'app_data.db'}")
    yield db
    db.dispose()


def is_pg(db: Database) -> bool:
    return db.engine.dialect.name == "postgresql"


def insert_row(db: Database, table: str, created_at: str, **values: str) -> None:
    """A row with a given created_at ('YYYY-MM-DD HH:MM:SS', UTC), as Go's
    CURRENT_TIMESTAMP writes it on SQLite."""
    stamp = created_at + ("+00" if is_pg(db) else "")
    cols = ", ".join([*values, "created_at"])
    marks = ", ".join([f":{k}" for k in values] + [":created_at"])
    with db.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({marks})"), {**values, "created_at": stamp})


def test_schema_matches_goose_migration_and_is_recorded(sqlite_database, tmp_path):
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
    insert_row(database, "users", "2024-01-01 00:00:00", email="old@x.io", password_hash="h")
    insert_row(database, "users", "2025-06-01 12:30:45", email="new@x.io", password_hash="h")
    users = database.list_users()
    assert [u.email for u in users] == ["new@x.io", "old@x.io"]
    assert rfc3339(users[0].created_at) == "2025-06-01T12:30:45Z"
    assert users[0].password_hash == ""


def test_ties_list_in_insertion_order_as_sqlite_scans(database):
    # Go's CURRENT_TIMESTAMP has whole seconds: rows of one second tie, and the
    # legacy query (no tie-breaker) lists them as SQLite scans, by rowid.
    for n in range(6):
        stamp = "2025-01-01 00:00:01" if n % 2 else "2025-01-01 00:00:00"
        insert_row(database, "users", stamp, email=f"u{n}@x.io", password_hash="h")
        insert_row(database, "api_keys", stamp, id=f"id-{'zyxwvu'[n]}", key=f"k{n}", name=f"n{n}")
    expected = [1, 3, 5, 0, 2, 4]
    assert [u.email for u in database.list_users()] == [f"u{n}@x.io" for n in expected]
    assert [k.name for k in database.list_api_keys()] == [f"n{n}" for n in expected]


def test_new_rows_read_back_in_utc_rfc3339(database):
    user = database.create_user("now@x.io", "h")
    key = database.create_api_key("i", "k", "n")
    for stamp in (user.created_at, database.list_users()[0].created_at, key.created_at):
        assert stamp.utcoffset() == timedelta(0)
        assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=5)
        assert rfc3339(stamp).endswith("Z")


def test_postgres_timestamps_are_utc_whatever_the_session_zone(pg_url):
    db = Database.from_url(pg_url + "%20-cTimeZone%3DAsia/Kolkata")
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar() == "Asia/Kolkata"
        insert_row(db, "users", "2025-06-01 12:30:45", email="tz@x.io", password_hash="h")
        assert rfc3339(db.list_users()[0].created_at) == "2025-06-01T12:30:45Z"
    finally:
        db.dispose()


def test_postgres_schema_is_the_legacy_one_in_postgres_types(pg_url):
    db = Database.from_url(pg_url)
    try:
        insp = inspect(db.engine)
        types = {t: {c["name"]: str(c["type"]) for c in insp.get_columns(t)} for t in dbmod.LEGACY_TABLES}
        assert types["users"] == {"id": "BIGINT", "email": "TEXT", "password_hash": "TEXT",
                                  "created_at": "TIMESTAMP"}
        assert types["api_keys"] == {"id": "TEXT", "key": "TEXT", "name": "TEXT", "created_at": "TIMESTAMP",
                                     "seq": "BIGINT"}
        assert types["poller_state"] == {"id": "INTEGER", "last_key": "BYTEA"}
        assert all(c["type"].timezone for c in insp.get_columns("users") if c["name"] == "created_at")
        assert {tuple(u["column_names"]) for u in insp.get_unique_constraints("users")} == {("email",)}
        assert {tuple(u["column_names"]) for u in insp.get_unique_constraints("api_keys")} == {("key",)}
        assert "goose_db_version" not in insp.get_table_names()  # Go never opens PostgreSQL
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO poller_state (id, last_key) VALUES (1, :k)"), {"k": b"\x00\xff"})
            with pytest.raises(Exception, match="check"):
                with conn.begin_nested():
                    conn.execute(text("INSERT INTO poller_state (id) VALUES (2)"))
            assert conn.execute(text("SELECT last_key FROM poller_state")).scalar() == b"\x00\xff"
    finally:
        db.dispose()


def test_replicas_creating_the_schema_at_once_all_get_it(postgres):
    # Four engines (four replicas) find an empty database together.
    url = postgres.new_schema_url()
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def replica() -> None:
        try:
            barrier.wait()
            db = Database.from_url(url)
            db.count_users()
            db.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_only_one_first_user_when_many_race(database):
    barrier = threading.Barrier(8)
    created: list[object] = []

    def sign_up(n: int) -> None:
        barrier.wait()
        created.append(database.create_first_user(f"first{n}@x.io", "h"))

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(created) == 8 and sum(u is not None for u in created) == 1
    assert database.count_users() == 1


def test_rfc3339_like_go():
    dt = datetime(2025, 1, 2, 3, 4, 5, 123400, tzinfo=UTC)
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


def test_connections_use_the_legacys_durability(sqlite_database):
    with sqlite_database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == dbmod.BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"


def test_no_lock_is_left_behind_by_any_method(sqlite_database, tmp_path):
    # After each call a no-timeout connection can take the EXCLUSIVE lock at
    # once: no pooled connection sits in a transaction or an unfinished read.
    calls = [
        lambda: sqlite_database.create_first_user("a@example.com", "h"),
        lambda: sqlite_database.create_user("b@example.com", "h"),
        lambda: sqlite_database.get_user_by_email("a@example.com"),
        lambda: sqlite_database.list_users(),
        sqlite_database.has_users,
        lambda: sqlite_database.create_api_key("i1", "k1", "n"),
        lambda: sqlite_database.create_api_key("i2", "k2", "n"),
        lambda: sqlite_database.get_api_key("k1"),
        sqlite_database.list_api_keys,
        lambda: sqlite_database.delete_api_key("k1"),
        lambda: sqlite_database.delete_user(2),
    ]
    go = go_like(tmp_path / "app_data.db")
    for call in calls:
        call()
        go.execute("BEGIN EXCLUSIVE")
        go.execute("COMMIT")
    with pytest.raises(DuplicateError):
        sqlite_database.create_user("a@example.com", "h")
    go.execute("BEGIN EXCLUSIVE")
    go.execute("COMMIT")
    for record in sqlite_database.engine.pool._pool.queue:  # idle connections: none mid-transaction
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
