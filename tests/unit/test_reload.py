"""Hot reload: valid edits swap the table, bad ones keep the last good table."""
import asyncio
import logging
import os
from pathlib import Path

from gateway.routing.compile import compile_table
from gateway.routing.config import load_config
from gateway.routing.reload import Reloader, TableHolder
from gateway.upstream.forwarders import Forwarders
from services.registry import Registry, Service


async def _noop(scope, receive, send):  # pragma: no cover
    pass


REGISTRY = Registry({"ping": Service("ping", ("/ping",), _noop), "auth": Service("auth", ("/users",), _noop)})
SERVES = lambda p: REGISTRY.owner_of(p) is not None

GO = "routes:\n  - prefix: /users\n    to: go\n"
PY = "routes:\n  - prefix: /users\n    to: python\n"


def make(path: Path):
    pool = Forwarders()
    build = lambda cfg: compile_table(cfg, REGISTRY, pool.get(cfg.legacy, cfg.trusted_proxies))
    holder = TableHolder(build(load_config(path, serves_prefix=SERVES)))
    return holder, Reloader(path, holder, build, serves_prefix=SERVES, interval=0.05)


async def until(predicate, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def target(holder):
    return holder.table.lookup("/users/1", "GET").state


def test_valid_edit_swaps_and_logs_one_line_per_changed_route(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gateway.reload")
    path = tmp_path / "routes.yaml"
    path.write_text(GO)

    async def scenario():
        holder, reloader = make(path)
        old_table = holder.table
        reloader.start()
        try:
            path.write_text(PY + "  - prefix: /ping\n    to: python\n")
            await until(lambda: target(holder) == "python")
            # The table object a request already holds is never mutated.
            assert old_table.lookup("/users/1", "GET").state == "go"
        finally:
            await reloader.stop()
        return holder

    holder = asyncio.run(scenario())
    assert holder.reloads_ok == 1 and holder.last_error is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("route ")]
    assert lines == ["route /ping: (new route) → python", "route /users: go → python"]


def test_invalid_edit_keeps_last_good_table_and_reports_until_fixed(tmp_path, caplog):
    path = tmp_path / "routes.yaml"
    path.write_text(GO)

    async def scenario():
        holder, reloader = make(path)
        reloader.start()
        try:
            path.write_text("routes:\n  - prefix: /users\n    to: pyton\n")
            await until(lambda: holder.last_error is not None)
            assert target(holder) == "go"
            assert f"{path}:3: routes[0].to: unknown state 'pyton'" in holder.last_error
            path.write_text(PY)
            await until(lambda: holder.last_error is None)
            assert target(holder) == "python"
        finally:
            await reloader.stop()

    asyncio.run(scenario())
    assert any("last good table" in r.getMessage() for r in caplog.records)


def test_rename_saves_truncation_and_bursts(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(GO)

    async def scenario():
        holder, reloader = make(path)
        reloader.start()
        try:
            # vim/atomic-save style: write a temp file, rename over the original.
            tmp = tmp_path / ".routes.yaml.swp"
            tmp.write_text(PY)
            os.replace(tmp, path)
            await until(lambda: target(holder) == "python")
            # truncate, then write later: never serves an empty table.
            path.write_text("")
            await asyncio.sleep(0.3)
            assert target(holder) == "python"
            path.write_text(GO)
            await until(lambda: target(holder) == "go")
            # A burst of writes converges on the last one.
            for i in range(30):
                path.write_text(PY if i % 2 else GO)
            path.write_text(PY)
            await until(lambda: target(holder) == "python" and holder.last_error is None)
            # A deleted file keeps the table too.
            path.unlink()
            await until(lambda: holder.last_error is not None)
            assert target(holder) == "python"
        finally:
            await reloader.stop()

    asyncio.run(scenario())


def test_sighup_style_trigger_reloads_even_without_stat_change(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(GO)

    async def scenario():
        holder, reloader = make(path)
        reloader.interval = 3600  # no polling: only the trigger can reload
        reloader.start()
        try:
            st = os.stat(path)
            path.write_text(PY)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            reloader.trigger()
            await until(lambda: target(holder) == "python")
        finally:
            await reloader.stop()

    asyncio.run(scenario())


def test_a_slow_load_runs_off_the_loop_and_is_given_up_at_the_deadline(tmp_path):
    import threading

    path = tmp_path / "routes.yaml"
    path.write_text(GO)
    release = threading.Event()

    async def scenario():
        holder, reloader = make(path)
        fast_load = reloader.load

        def slow_load(p, deadline):
            release.wait(10)  # a parse that never finishes in time
            return fast_load(p, deadline)

        reloader.load = slow_load
        reloader.deadline = 0.3
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.get_running_loop().create_task(tick())
        try:
            path.write_text(PY)
            assert await reloader.reload() is False
        finally:
            ticker.cancel()
            release.set()
        assert ticks >= 5, "the event loop was blocked while the file loaded"
        assert "loading took longer than 0.3 s" in holder.last_error
        assert target(holder) == "go"  # the last good table keeps serving
        reloader.load = fast_load
        assert await reloader.reload() is True and target(holder) == "python"

    asyncio.run(scenario())


def test_stop_right_after_a_trigger_returns(tmp_path):
    """A SIGHUP just before shutdown must not keep the watcher alive: on 3.11
    asyncio.wait_for swallows a cancel that lands with the wake-up."""
    path = tmp_path / "routes.yaml"
    path.write_text(GO)

    async def scenario():
        _, reloader = make(path)
        reloader.interval = 3600
        reloader.start()
        for _ in range(20):
            await asyncio.sleep(0.01)  # the watcher is now waiting for a wake-up
        reloader.trigger()
        guard = asyncio.timeout(30)  # only a guard: stop() must finish by itself
        async with guard:
            await reloader.stop()
        assert not guard.expired(), "stop() hung until the guard cancelled it"

    for _ in range(3):
        asyncio.run(scenario())
