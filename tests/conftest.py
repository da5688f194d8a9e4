"""Shared fixtures: the Go stand-in and the real gateway, each on a loopback port."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.standin import StandIn, start_standin


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
