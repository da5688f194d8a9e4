"""The SQLite file shared with the Go backend: Go must always be able to boot.

The legacy backend opens the file with no busy timeout and, at every boot,
runs goose, then ``PRAGMA journal_mode=DELETE`` and ``PRAGMA synchronous=FULL``,
and exits when either fails -- which it does while another process keeps the
file open in WAL mode. The stand-in (tests/legacy) boots exactly like that.
These tests restart it while the real gateway serves Python routes on the same
file under steady load: it must boot every time, the file must stay in DELETE
mode, and no Python request may fail. See docs/deploy.md, "Sharing the SQLite
file with Go".
"""
from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.standin import StandIn, start_standin
from tests.support.waiting import until

EMAIL, PASSWORD = "ada@example.com", "load-test pw"
PYTHON_ROUTES = "".join(f"  - prefix: {p}\n    to: python\n" for p in ("/sign-in", "/users", "/api_keys"))
RESTARTS = 3
CLIENTS = 3
# Each client pauses between rounds: a steady load, not a saturating one.
# Bounded in rounds and time either way.
PAUSE_S = 0.05
MAX_ROUNDS = 2000
MAX_SECONDS = 120.0


@dataclass
class Load:
    """Client threads signing in, listing users, creating, listing and
    deleting API keys through the gateway's Python routes, until stopped.

    Reads (sign-in, both lists) never pause: they are what kept the file
    open in WAL mode and stopped the old stand-in from booting. Writes pause
    while the stand-in boots (``writes_allowed``): the legacy has no busy
    timeout, so its boot, like any Go request, fails when it meets a Python
    commit -- tools/bench/sqlite_contention.py measures how often (see
    docs/deploy.md); here it would only make the test a lottery."""

    url: str
    rounds: int = 0
    writes: int = 0
    failures: list[str] = field(default_factory=list)
    writes_allowed: threading.Event = field(default_factory=threading.Event)
    _writing: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, clients: int = CLIENTS) -> Load:
        self.writes_allowed.set()
        for n in range(clients):
            t = threading.Thread(target=self._client, args=(n,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def pause_writes(self) -> None:
        """Stop starting writes and let the ones in flight finish."""
        with self._lock:
            self.writes_allowed.clear()
        until(lambda: self._writing == 0, what="writes in flight to finish")

    def wait_rounds(self, more: int) -> None:
        """Block until the clients completed ``more`` further rounds."""
        target = self.rounds + more
        until(lambda: self.rounds >= target or self.failures, timeout=60, what=f"{more} load rounds")

    def _client(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(MAX_ROUNDS):
                if self._stop.wait(PAUSE_S):
                    return
                try:
                    self._round(client, f"c{n}-{i}")
                except httpx.HTTPError as exc:
                    self._fail(f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.rounds += 1

    def _round(self, client: httpx.Client, name: str) -> None:
        client.cookies.clear()
        r = self._expect(client.post("/sign-in", json={"email": EMAIL, "password": PASSWORD}), 200)
        if r is None:
            return
        # Session cookies are Secure: sent by hand over plain http.
        client.cookies.clear()
        auth = {"Cookie": f"session={r.cookies['session']}; csrf=load"}
        self._expect(client.get("/users", headers=auth), 200)
        self._expect(client.get("/api_keys", headers=auth), 200)
        with self._lock:
            if not self.writes_allowed.is_set():
                return
            self._writing += 1
        try:
            created = self._expect(client.post("/api_keys", json={"name": name}, headers=auth), 201)
            if created is not None:
                self._expect(client.delete(f"/api_keys/{created.json()['Key']}", headers=auth), 204)
        finally:
            with self._lock:
                self._writing -= 1
                self.writes += 2

    def _expect(self, r: httpx.Response, status: int) -> httpx.Response | None:
        if r.status_code == status:
            return r
        self._fail(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
        return None

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)


def journal_mode(db: Path) -> str:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def gateway_on(db: Path, tmp_path: Path, legacy_url: str, env: dict[str, str] | None = None) -> GatewayProc:
    home = tmp_path / "gw"
    home.mkdir()
    return start_gateway(routes_yaml(legacy_url, PYTHON_ROUTES), home,
                         env={"JUNJO_SQLITE_PATH": str(db), **(env or {})})


def restart_standin_under_load(db: Path, load: Load, first: StandIn | None) -> list[str]:
    """Stop (if running) and start the stand-in RESTARTS times while ``load``
    runs; return each boot's output. start_standin raises when the process
    exits before answering /ping, with its output (the legacy's log.Fatalf)."""
    outputs = []
    standin = first
    try:
        for _ in range(RESTARTS):
            load.wait_rounds(CLIENTS * 2)  # reads and writes are running right now
            load.pause_writes()
            if standin is not None:
                standin.stop()  # its exit status is irrelevant
            standin = start_standin(str(db))
            outputs.append(standin.output())
            assert httpx.get(standin.url + "/ping").text == "pong"
            load.writes_allowed.set()
        load.wait_rounds(CLIENTS * 2)
    finally:
        if standin is not None:
            standin.stop()
    return outputs


def assert_shared_the_legacy_way(db: Path, load: Load) -> None:
    print(f"{load.rounds} load rounds, {load.writes} writes")
    assert load.rounds > 0
    assert load.failures == [], load.failures[:5]
    assert journal_mode(db) == "delete"
    assert not os.path.exists(f"{db}-wal")


def test_standin_restarts_on_its_own_file_while_python_serves(tmp_path: Path) -> None:
    db = tmp_path / "app_data.db"
    standin = start_standin(str(db), extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
    gw = gateway_on(db, tmp_path, standin.url)
    load = Load(gw.url).start()
    try:
        outputs = restart_standin_under_load(db, load, standin)
    finally:
        load.stop()
        gw.stop()
    assert all("goose: no migrations to run. current version: 1" in out for out in outputs), outputs
    assert_shared_the_legacy_way(db, load)


def test_standin_boots_on_a_file_the_gateway_made_first(tmp_path: Path) -> None:
    db = tmp_path / "app_data.db"
    gw = gateway_on(db, tmp_path, "http://127.0.0.1:9")  # no Go yet: only Python routes are used
    try:
        # The gateway opened (and made) the file at startup, before any request.
        until(lambda: db.exists() and "journal_mode=delete" in gw.output(), what="the gateway's database")
        r = httpx.post(gw.url + "/users/create-first-user", headers={"Cookie": "csrf=t"},
                       json={"email": EMAIL, "password": PASSWORD})
        assert r.status_code == 200, r.text
        load = Load(gw.url).start()
        try:
            outputs = restart_standin_under_load(db, load, None)
        finally:
            load.stop()
    finally:
        gw.stop()
    # goose found versions 0 and 1 recorded by the gateway: nothing re-applied.
    assert all("goose: no migrations to run. current version: 1" in out for out in outputs), outputs
    assert_shared_the_legacy_way(db, load)


def test_gateway_gives_a_file_left_in_wal_mode_back_to_go(tmp_path: Path) -> None:
    # What an upgraded gateway meets: the previous gateway put the file in WAL.
    db = tmp_path / "app_data.db"
    start_standin(str(db), extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"]).stop()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.close()
    gw = gateway_on(db, tmp_path, "http://127.0.0.1:9")
    try:
        until(lambda: "journal_mode: wal -> delete" in gw.output(), what="the restore log line")
        assert journal_mode(db) == "delete" and not os.path.exists(f"{db}-wal")
        assert httpx.post(gw.url + "/sign-in", json={"email": EMAIL, "password": PASSWORD}).status_code == 200
        start_standin(str(db)).stop()  # Go boots beside the running gateway
    finally:
        gw.stop()


def test_opt_in_wal_is_used_and_logged(tmp_path: Path) -> None:
    db = tmp_path / "app_data.db"
    gw = gateway_on(db, tmp_path, "http://127.0.0.1:9", env={"JUNJO_SQLITE_JOURNAL_MODE": "wal"})
    try:
        until(lambda: "journal_mode=wal, synchronous=NORMAL" in gw.output(), what="the mode log line")
        r = httpx.post(gw.url + "/users/create-first-user", headers={"Cookie": "csrf=t"},
                       json={"email": EMAIL, "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert journal_mode(db) == "wal"
    finally:
        gw.stop()


def test_unknown_journal_mode_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="JUNJO_SQLITE_JOURNAL_MODE='walrus' is not supported"):
        gateway_on(tmp_path / "app_data.db", tmp_path, "http://127.0.0.1:9",
                   env={"JUNJO_SQLITE_JOURNAL_MODE": "walrus"})
