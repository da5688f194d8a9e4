"""``gateway serve`` with upstream settings routes.yaml doesn't carry yet.

``legacy.total_timeout``, ``legacy.body_pool_share`` and ``limits:``
(``upstream_head_size``, ``upstream_header_count``, ``body_idle_timeout``) are
being added to routes.yaml separately. Until they land, a wire test passes them
as ``start_gateway(..., upstream={"legacy": {...}, "limits": {...}})``; this
module runs the real gateway (same CLI, same uvicorn settings) and hands them
to ``Forwarders.get(legacy, trusted, limits)`` the way ``Gateway.build`` will
once the config carries them. Then: put them in routes.yaml and delete this.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from types import SimpleNamespace
from typing import Any

from gateway import app, cli
from gateway.routing.config import GatewayConfig, LegacyConfig

ENV = "GATEWAY_TEST_UPSTREAM"


@dataclasses.dataclass(frozen=True)
class _Legacy(LegacyConfig):
    """``legacy:`` with the fields routes.yaml will carry."""

    total_timeout: float | None = None
    body_pool_share: float = 0.5


class TunedGateway(app.Gateway):
    def build(self, config: GatewayConfig) -> Any:
        tuned = json.loads(os.environ.get(ENV) or "{}")
        legacy = _Legacy(**dataclasses.asdict(config.legacy), **tuned.get("legacy", {}))
        config = dataclasses.replace(config, legacy=legacy)
        limits = SimpleNamespace(**tuned.get("limits", {}))
        go = self.forwarders.get(config.legacy, config.trusted_proxies, limits)
        return app.compile_table(config, self.registry, go)


def create_app() -> Any:
    return app.CORSMiddleware.from_env(TunedGateway(app.GatewaySettings.from_env()))


if __name__ == "__main__":
    app.create_app = create_app  # what `gateway serve` hands uvicorn (one worker: this process)
    sys.exit(cli.main())
