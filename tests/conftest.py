"""Shared fixtures: the Go stand-in and the real gateway, each on a loopback port."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from .gateway_proc import GatewayProc, routes_yaml, start_gateway
from .standin import StandIn, start_standin


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


@pytest.fixture
def gateway(gateway_factory, standin) -> GatewayProc:
    """The gateway in front of the stand-in, everything routed to Go."""
    return gateway_factory(routes_yaml(standin.url))
