"""Services start with the gateway and stop with it: clients closed, engines
disposed, the span poller stopped (in process, through the ASGI lifespan)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import services.llm
from gateway.app import Gateway, GatewaySettings
from services.common import db as common_db
from services.common import reset_settings
from services.otel import owner
from services.registry import discover


async def lifespan(app: Gateway, between) -> list[str]:
    """Run startup, then ``between()``, then shutdown; the messages sent back."""
    inbox: asyncio.Queue[dict] = asyncio.Queue()
    sent: list[str] = []
    started = asyncio.Event()

    async def receive() -> dict:
        return await inbox.get()

    async def send(message: dict) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            started.set()

    task = asyncio.ensure_future(app({"type": "lifespan"}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(started.wait(), 30)
    await between()
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)
    return sent


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    routes = tmp_path / "routes.yaml"
    routes.write_text("legacy: {url: 'http://127.0.0.1:9'}\nroutes: []\n")
    monkeypatch.setenv("JUNJO_SESSION_SECRET", "s")
    monkeypatch.setenv("JUNJO_SQLITE_PATH", str(tmp_path / "app.db"))
    monkeypatch.setenv("OTEL_DUCKDB_PATH", str(tmp_path / "spans.duckdb"))
    monkeypatch.setenv("OTEL_PIPELINE", "1")  # start the span pipeline at boot
    monkeypatch.setenv("INGESTION_ADDR", "127.0.0.1:9")  # nobody there: the poller keeps retrying
    monkeypatch.delenv("GATEWAY_SERVICE_PACKAGES", raising=False)
    reset_settings()
    yield routes
    owner.set_pipeline(None)
    common_db.set_database(None)
    reset_settings()


def test_a_graceful_stop_closes_what_the_services_opened(env):
    llm = services.llm.SERVICE.app.service  # type: ignore[attr-defined]
    gateway = Gateway(GatewaySettings(config_path=str(env)), discover(["services"]))
    seen: dict[str, object] = {}

    async def use_everything() -> None:
        seen["pipeline"] = owner.get_pipeline(start=False)  # started by the otel startup hook
        seen["client"] = llm.client  # the provider client, made on first use
        database = common_db.get_database()
        seen["users"] = await database.run(database.count_users)

    sent = asyncio.run(lifespan(gateway, use_everything))

    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    pipeline = seen["pipeline"]
    assert pipeline is not None, "the otel startup hook did not start the pipeline"
    assert owner.get_pipeline(start=False) is None  # stopped and forgotten
    assert pipeline._stop.is_set()  # type: ignore[attr-defined]
    assert seen["client"].is_closed and llm._client is None  # type: ignore[attr-defined]
    assert seen["users"] == 0 and common_db._database is None  # engine disposed


def test_a_failing_or_stuck_shutdown_hook_does_not_hold_the_stop(env, monkeypatch, caplog):
    from services.registry import Registry, Service

    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    async def stuck() -> None:
        await asyncio.sleep(3600)

    def broken() -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr("gateway.app.SHUTDOWN_TIMEOUT", 0.2)
    registry = Registry({"stuck": Service("stuck", ("/a",), app, shutdown=stuck),
                         "broken": Service("broken", ("/b",), app, shutdown=broken)})
    gateway = Gateway(GatewaySettings(config_path=str(env)), registry)

    async def nothing() -> None:
        pass

    assert asyncio.run(lifespan(gateway, nothing))[-1] == "lifespan.shutdown.complete"
    assert "shutdown of service 'stuck' failed" in caplog.text
    assert "shutdown of service 'broken' failed" in caplog.text


@pytest.mark.parametrize("owns_process", [False, True])
def test_only_a_gateway_that_owns_its_process_tunes_the_gc(env, monkeypatch, owns_process):
    import gateway.app as app_module

    tuned: list[bool] = []
    monkeypatch.setattr(app_module, "_tune_gc", lambda: tuned.append(True))
    gateway = Gateway(GatewaySettings(config_path=str(env)), discover(["services"]), owns_process=owns_process)

    async def nothing() -> None:
        pass

    asyncio.run(lifespan(gateway, nothing))
    assert tuned == ([True] if owns_process else [])


def test_gateway_serve_uses_the_factory_that_owns_the_process(env, monkeypatch):
    import gateway.app as app_module

    monkeypatch.setenv("GATEWAY_CONFIG", str(env))
    assert app_module.serve_app().owns_process is True
    assert app_module.create_app().owns_process is False
