"""Shared fixtures: the Go stand-in, the real gateway and a real PostgreSQL, each on a loopback port."""
from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx._transports.default as httpx_transports
import pytest

from tests.support.forkserver import SHARED_ENV, SharedForkServer, forking
from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.postgres import STATE_ENV, PostgresServer, shared_server, stop_shared_server
from tests.support.standin import StandIn, refused_port, start_standin

pytest_plugins = ["tests.support.long_first"]

# --- One TLS context for the tests' HTTP clients ---
# Every ``httpx.get`` builds a client, and every client loads the CA bundle
# into a new SSL context: ~30 ms of CPU, ten times the request it makes (the
# suite made thousands, for plain-http loopback URLs). The tests' clients share
# one context per trust configuration instead; what they verify is unchanged.
# httpx is pinned below 0.29 (pyproject), where the transport calls this name.
_TLS_CONTEXTS: dict[tuple[object, ...], ssl.SSLContext] = {}
_create_ssl_context = httpx_transports.create_ssl_context


def _shared_ssl_context(verify: object = True, cert: object = None, trust_env: bool = True) -> ssl.SSLContext:
    if verify is not True or cert is not None:  # a test's own CA or client certificate: its own context
        return _create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    if key not in _TLS_CONTEXTS:
        _TLS_CONTEXTS[key] = _create_ssl_context(verify=True, cert=None, trust_env=trust_env)
    return _TLS_CONTEXTS[key]


httpx_transports.create_ssl_context = _shared_ssl_context


# --- PostgreSQL: one throwaway server per run, started when a test first needs it ---

_FORK_SERVER: SharedForkServer | None = None


def pytest_configure(config: pytest.Config) -> None:
    # The controller (or a run without xdist) owns the server: it makes the
    # directory the workers coordinate in (they inherit the environment) and
    # stops the server at the end. Workers only ever start it.
    global _FORK_SERVER
    if not hasattr(config, "workerinput"):
        os.environ[STATE_ENV] = tempfile.mkdtemp(prefix="test-postgres-state-")
        # Under xdist, one gateway fork server for all the workers
        # (tests/support/forkserver.py), importing while they collect.
        if config.getoption("dist", "no") != "no" and forking() and not config.getoption("collectonly"):
            _FORK_SERVER = SharedForkServer()
            os.environ[SHARED_ENV] = _FORK_SERVER.address


def pytest_unconfigure(config: pytest.Config) -> None:
    global _FORK_SERVER
    if not hasattr(config, "workerinput") and os.environ.get(STATE_ENV):
        stop_shared_server(os.environ.pop(STATE_ENV))
    if _FORK_SERVER is not None:
        os.environ.pop(SHARED_ENV, None)
        _FORK_SERVER.stop()
        _FORK_SERVER = None


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
def dead_url() -> Iterator[str]:
    """A legacy URL where nothing listens for the whole test (a connection is refused)."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}"


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
