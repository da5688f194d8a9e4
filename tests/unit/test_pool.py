"""The upstream connection pool alone, with fake connections (no sockets)."""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

import httpx
import pytest

from gateway.upstream.pool import ConnectionPool


class FakeConn:
    def __init__(self, pool: ConnectionPool[FakeConn], key: Hashable, n: int):
        self.pool, self.key, self.n = pool, key, n
        self.idle_since = 0.0
        self.closed = False
        self.usable = True

    def is_usable(self) -> bool:
        return self.usable and not self.closed

    def close(self) -> None:
        self.closed = True
        self.pool.discard(self)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_pool(max_connections: int = 2, acquire_timeout: float = 0.05, fail: bool = False):
    clock = Clock()
    made: list[FakeConn] = []

    async def connect(key: Hashable) -> FakeConn:
        await asyncio.sleep(0)
        if fail:
            raise httpx.ConnectError("refused")
        conn = FakeConn(pool, key, len(made))
        made.append(conn)
        return conn

    pool: ConnectionPool[FakeConn] = ConnectionPool(
        connect, max_connections=max_connections, acquire_timeout=acquire_timeout, idle_max_age=30, clock=clock)
    return pool, made, clock


A, B = ("a", 80), ("b", 80)


def sync(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())
    return run


@sync
async def test_a_released_connection_is_reused_warmest_first():
    pool, made, _ = make_pool()
    c1, reused1 = await pool.acquire(A)
    c2, _ = await pool.acquire(A)
    assert not reused1 and pool.open_connections == 2
    pool.release(c1)
    pool.release(c2)
    again, reused = await pool.acquire(A)
    assert reused and again is c2  # the most recently used socket
    assert len(made) == 2 and pool.idle_connections == 1


@sync
async def test_a_full_pool_waits_for_a_release_then_times_out():
    pool, _, _ = make_pool(max_connections=1, acquire_timeout=5)
    c1, _ = await pool.acquire(A)
    waiting = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.release(c1)
    got, reused = await waiting
    assert got is c1 and reused

    pool, _, _ = make_pool(max_connections=1, acquire_timeout=0.05)
    await pool.acquire(A)
    with pytest.raises(httpx.PoolTimeout, match="raise legacy.pool_size"):
        await pool.acquire(A)


@sync
async def test_closing_a_busy_connection_frees_its_slot_for_a_waiter():
    pool, made, _ = make_pool(max_connections=1, acquire_timeout=5)
    c1, _ = await pool.acquire(A)
    waiting = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    c1.close()
    got, reused = await waiting
    assert got is not c1 and not reused and pool.open_connections == 1


@sync
async def test_stale_or_dead_idle_connections_are_closed_not_handed_out():
    pool, made, clock = make_pool()
    c1, _ = await pool.acquire(A)
    c2, _ = await pool.acquire(A)
    pool.release(c1)
    pool.release(c2)
    c2.usable = False  # the upstream closed it while idle
    clock.now += 10
    got, reused = await pool.acquire(A)
    assert got is c1 and reused and c2.closed
    pool.release(got)
    clock.now += 31  # past idle_max_age
    fresh, reused = await pool.acquire(A)
    assert not reused and c1.closed and fresh.n == 2


@sync
async def test_a_full_pool_evicts_another_origins_idle_connection():
    pool, _, _ = make_pool(max_connections=1)
    ca, _ = await pool.acquire(A)
    pool.release(ca)
    cb, reused = await pool.acquire(B)
    assert not reused and ca.closed and cb.key == B and pool.open_connections == 1


@sync
async def test_a_failed_connect_gives_its_slot_back():
    pool, _, _ = make_pool(max_connections=1, fail=True)
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            await pool.acquire(A)
    assert pool.open_connections == 0


@sync
async def test_retire_closes_idle_now_and_busy_ones_stay_until_done():
    pool, _, _ = make_pool()
    busy, _ = await pool.acquire(A)
    idle, _ = await pool.acquire(A)
    pool.release(idle)
    pool.retire()
    assert idle.closed and not busy.closed and pool.retired
    assert pool.open_connections == 1 and pool.idle_connections == 0


# -- fair use: requests with a body hold at most body_share of the pool -------

def make_shared_pool(max_connections: int, body_share: float, acquire_timeout: float = 5):
    made: list[FakeConn] = []

    async def connect(key: Hashable) -> FakeConn:
        await asyncio.sleep(0)
        conn = FakeConn(pool, key, len(made))
        made.append(conn)
        return conn

    pool: ConnectionPool[FakeConn] = ConnectionPool(
        connect, max_connections=max_connections, acquire_timeout=acquire_timeout, body_share=body_share)
    return pool, made


@sync
async def test_requests_with_a_body_hold_at_most_their_share_and_others_still_get_connections():
    pool, _ = make_shared_pool(max_connections=8, body_share=0.5, acquire_timeout=0.05)
    assert pool.max_body_connections == 4
    uploads = [(await pool.acquire(A, body=True))[0] for _ in range(4)]
    assert pool.body_connections == 4
    with pytest.raises(httpx.PoolTimeout, match="legacy.body_pool_share 0.5 of legacy.pool_size 8"):
        await pool.acquire(A, body=True)  # the budget is spent although 4 slots are free
    gets = [(await pool.acquire(A))[0] for _ in range(4)]  # every slot left serves requests without a body
    assert pool.open_connections == 8 and len(set(uploads + gets)) == 8
    with pytest.raises(httpx.PoolTimeout, match="all 8 upstream connections are busy"):
        await pool.acquire(A)


@sync
async def test_a_body_request_waits_for_the_budget_and_gets_the_next_body_connection_back():
    pool, made = make_shared_pool(max_connections=4, body_share=0.5)
    u1, _ = await pool.acquire(A, body=True)
    await pool.acquire(A, body=True)
    waiting = asyncio.ensure_future(pool.acquire(A, body=True))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    g, _ = await pool.acquire(A)  # meanwhile a GET is served at once
    pool.release(g)  # a freed slot doesn't help the upload: its budget is still spent
    await asyncio.sleep(0.01)
    assert not waiting.done()
    pool.release(u1)
    _, reused = await waiting
    assert reused and pool.body_connections == 2 and len(made) == 3


@sync
async def test_an_idle_connection_that_carried_a_body_serves_anyone():
    pool, _ = make_shared_pool(max_connections=2, body_share=0.5)
    u, _ = await pool.acquire(A, body=True)
    pool.release(u)
    assert pool.body_connections == 0
    g, reused = await pool.acquire(A)
    assert g is u and reused
    u.close()
    assert pool.body_connections == 0 and pool.open_connections == 0


@sync
async def test_a_closed_body_connection_gives_its_budget_back():
    pool, _ = make_shared_pool(max_connections=4, body_share=0.25)  # one connection for bodies
    u, _ = await pool.acquire(A, body=True)
    waiting = asyncio.ensure_future(pool.acquire(A, body=True))
    await asyncio.sleep(0.01)
    u.close()  # e.g. the body stalled: the connection is closed, not released
    got, reused = await waiting
    assert not reused and got is not u and pool.body_connections == 1


@sync
async def test_the_budget_holds_while_connections_are_still_being_opened():
    pool, made = make_shared_pool(max_connections=4, body_share=0.25, acquire_timeout=0.05)
    results = await asyncio.gather(*(pool.acquire(A, body=True) for _ in range(3)), return_exceptions=True)
    assert len(made) == 1 and sum(isinstance(r, httpx.PoolTimeout) for r in results) == 2


@sync
async def test_waiters_are_served_in_arrival_order_whatever_their_kind():
    pool, _ = make_shared_pool(max_connections=2, body_share=0.5)
    g1, _ = await pool.acquire(A)
    g2, _ = await pool.acquire(A)
    upload = asyncio.ensure_future(pool.acquire(A, body=True))  # first in the queue
    await asyncio.sleep(0.01)
    get = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    pool.release(g1)
    await asyncio.sleep(0.01)
    assert upload.done() and not get.done()
    pool.release(g2)
    assert (await get)[0] is g2


@sync
async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on():
    pool, _ = make_shared_pool(max_connections=1, body_share=1.0)
    c, _ = await pool.acquire(A)
    first = asyncio.ensure_future(pool.acquire(A))
    second = asyncio.ensure_future(pool.acquire(A))
    await asyncio.sleep(0.01)
    pool.release(c)  # wakes `first`...
    first.cancel()  # ...whose client leaves before it runs
    assert (await asyncio.wait_for(second, 1))[0] is c


def test_the_body_budget_is_a_share_of_the_pool_and_at_least_one():
    from gateway.upstream.pool import body_budget

    assert body_budget(512, 0.5) == 256 and body_budget(32, 0.5) == 16
    assert body_budget(10, 1.0) == 10  # 1.0: no separate budget
    assert body_budget(1, 0.5) == 1  # a pool of one can't reserve anything
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            body_budget(10, bad)
