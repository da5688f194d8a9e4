"""The sign-in limiter's counters, on its SQLite file and on PostgreSQL: the
budget holds for concurrent attempts from several processes sharing the store."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine

from services.auth.limiter import PAIR_POLICY, Policy, SignInLimiter, client_key
from services.auth.limiter_store import SqlLimiterStore, limiter_file_for, local_sqlite_engine


@pytest.fixture
def two_stores(db_url, tmp_path):
    """Two processes' stores on one set of counters: two workers sharing the
    limiter's SQLite file, or two replicas sharing PostgreSQL. Separate engines:
    separate connections, as separate processes have."""
    if db_url.startswith("sqlite"):
        path = limiter_file_for(str(tmp_path / "app_data.db"))
        engines = [local_sqlite_engine(path), local_sqlite_engine(path)]
    else:
        engines = [create_engine(db_url), create_engine(db_url)]
    yield [SqlLimiterStore(e) for e in engines]
    for e in engines:
        e.dispose()


def test_concurrent_attempts_from_two_processes_get_exactly_one_budget(two_stores):
    limiters = [SignInLimiter(store) for store in two_stores]
    barrier = threading.Barrier(24)
    waits: list[int] = []

    def guess(n: int) -> None:
        barrier.wait()
        waits.append(limiters[n % 2].attempt("ada@example.com", "203.0.113.66"))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(waits) == 24
    assert waits.count(0) == PAIR_POLICY.threshold  # 5 password checks, whoever served them
    assert all(w > 0 for w in waits if w)


def test_blocks_grow_then_cap_and_quiet_counters_restart(two_stores):
    clock = [1_000_000.0]
    policy = Policy(threshold=2, base_seconds=10, max_seconds=40, forget_after=100)
    limiter = SignInLimiter(two_stores[0], clock=lambda: clock[0], pair_policy=policy)
    ip = "192.0.2.1"
    assert limiter.attempt("a@b.co", ip) == 0 and limiter.attempt("a@b.co", ip) == 0  # the budget: 2
    waits = []
    for _ in range(4):
        waits.append(limiter.attempt("a@b.co", ip))  # refused, and not counted
        clock[0] += waits[-1]
        assert limiter.attempt("a@b.co", ip) == 0  # one more guess after each block
    assert waits == [10, 20, 40, 40]
    clock[0] += 101
    assert limiter.attempt("a@b.co", "192.0.2.1") == 0
    assert limiter.attempt("a@b.co", "192.0.2.1") == 0
    assert limiter.attempt("a@b.co", "192.0.2.1") == 10  # counting restarted


def test_policy_ladder():
    assert PAIR_POLICY.ladder() == [(5, 30), (6, 60), (7, 120), (8, 240), (9, 480), (10, 900)]
    assert PAIR_POLICY.block_after(4) == 0 and PAIR_POLICY.block_after(50) == 900


@pytest.mark.parametrize("address,key", [
    ("203.0.113.66", "203.0.113.66"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one host holds a whole /64
    ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.66", "203.0.113.66"),
    ("not-an-ip", "not-an-ip"),
])
def test_client_keys(address, key):
    assert client_key(address) == key
