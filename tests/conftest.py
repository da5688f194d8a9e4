"""Shared fixtures: the Go stand-in, the real gateway and a real PostgreSQL, each on a loopback port."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.postgres import STATE_ENV, PostgresServer, shared_server, stop_shared_server
from tests.support.standin import StandIn, start_standin

# --- PostgreSQL: one throwaway server per run, started when a test first needs it ---

def pytest_configure(config: pytest.Config) -> None:
    # The controller (or a run without xdist) owns the server: it makes the
    # directory the workers coordinate in (they inherit the environment) and
    # stops the server at the end. Workers only ever start it.
    if not hasattr(config, "workerinput"):
        os.environ[STATE_ENV] = tempfile.mkdtemp(prefix="test-postgres-state-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(STATE_ENV):
        stop_shared_server(os.environ.pop(STATE_ENV))


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The run's PostgreSQL server. No skip: when it cannot start, every test
    that needs it fails with the reason (binaries missing, initdb's error...)."""
    return shared_server(os.environ[STATE_ENV])


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A SQLAlchemy URL on an empty schema of this test's own."""
    return postgres.new_schema_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The users / API keys database, once per backend the gateway supports:
    the SQLite file shared with Go, and PostgreSQL (after Go is retired)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app_data.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    db = tmp_path_factory.mktemp("standin") / "app_data.db"
    s = start_standin(str(db))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., GatewayProc]]:
    started: list[GatewayProc] = []

    def make(config_text: str, **kwargs) -> GatewayProc:
        # Each gateway gets its own directory: they hot-reload their routes.yaml.
        home = tmp_path / f"gateway-{len(started)}"
        home.mkdir()
        gw = start_gateway(config_text, home, **kwargs)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, standin: StandIn) -> Iterator[GatewayProc]:
    """The gateway in front of the stand-in, everything routed to Go; shared by
    the tests of a module, so only for tests that change nothing in it (a test
    that edits routes.yaml or measures the process's memory uses
    ``gateway_factory``)."""
    gw = start_gateway(routes_yaml(standin.url), tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.stop()
