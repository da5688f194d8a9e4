"""Client-side limits of the edge: how big and how slow a client may be.

One frozen value, :class:`EdgeLimits`, read by the HTTP protocol
(``gateway/edge/protocol.py``) when a connection opens. Its field names and
defaults are the ones of the ``limits:`` block of routes.yaml, so the file, the
``gateway serve`` flags and the environment all speak the same words.

Where the values come from, lowest to highest precedence:

1. the defaults below;
2. ``gateway serve`` flags (``--max-connections``, ``--head-timeout``, ...),
   which fall back to ``GATEWAY_<NAME>`` variables and are handed to the
   worker processes through those same variables (:meth:`EdgeLimits.to_env`,
   ``ENV_NAMES``);
3. the ``limits:`` block of the live routes.yaml — see :func:`from_routes_yaml`,
   the one place where it is fed in. Read per connection, so an edit applies to
   connections opened after it.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class EdgeLimits:
    request_line: int = 8192  # bytes of "METHOD target HTTP/1.1" → 414
    header_line: int = 8192  # bytes of one "name: value" line → 431
    header_count: int = 100  # header fields in one head → 431
    head_size: int = 32768  # bytes of the whole head, blank line included → 431
    head_timeout: float = 10.0  # seconds to deliver a complete head → 408
    body_idle_timeout: float = 30.0  # seconds without a request body byte → 408 (or close)
    keepalive_timeout: float = 5.0  # seconds an idle keep-alive connection is kept
    send_timeout: float = 60.0  # seconds the client may take none of the answer (writes paused) → abort
    max_connections: int = 4096  # client connections per worker (capped by descriptors)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limits.{f.name} must be a positive number, got {value!r}")

    # -- the worker processes read what `gateway serve` was told -----------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EdgeLimits:
        """The limits GATEWAY_<NAME> variables give (gateway/settings.py reads and checks them)."""
        from gateway.settings import GatewaySettings

        settings = GatewaySettings.from_env(environ)
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})

    def to_env(self) -> dict[str, str]:
        return {ENV_NAMES[f.name]: _format(getattr(self, f.name)) for f in fields(self)}

    def merged(self, overrides: Mapping[str, Any]) -> EdgeLimits:
        """These limits with ``overrides`` (a subset of the fields) applied."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items() if k in known and v is not None})


ENV_NAMES = {
    "request_line": "GATEWAY_REQUEST_LINE", "header_line": "GATEWAY_HEADER_LINE",
    "header_count": "GATEWAY_HEADER_COUNT", "head_size": "GATEWAY_HEAD_SIZE",
    "head_timeout": "GATEWAY_HEAD_TIMEOUT", "body_idle_timeout": "GATEWAY_BODY_IDLE_TIMEOUT",
    "keepalive_timeout": "GATEWAY_KEEPALIVE_TIMEOUT", "max_connections": "GATEWAY_MAX_CONNECTIONS",
    "send_timeout": "GATEWAY_SEND_TIMEOUT",
}


def _format(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


# -- routes.yaml ------------------------------------------------------------------------
# The one place where the live routes.yaml's `limits:` reach the edge: the keys
# the file *sets explicitly* (not its defaults, or the file would silently undo
# every flag).
EDGE_FIELDS = frozenset(f.name for f in fields(EdgeLimits))


def from_routes_yaml(config: Any) -> Mapping[str, Any]:
    """The edge limits the live routes.yaml sets explicitly."""
    block = getattr(config, "limits", None)
    if block is None:
        return {}
    return {name: getattr(block, name) for name in EDGE_FIELDS & set(block.model_fields_set)}


class LiveLimits:
    """The limits a new connection gets: the process's base limits, overlaid
    with what the live routes.yaml says (read at connection time)."""

    def __init__(self, base: EdgeLimits):
        self.base = base
        self._config: Callable[[], Any] | None = None
        self._cache: tuple[int, EdgeLimits] | None = None

    def attach(self, config: Callable[[], Any]) -> None:
        """Called once by the gateway app with a getter of its live config."""
        self._config = config
        self._cache = None

    def config(self) -> Any:
        return self._config() if self._config is not None else None

    def current(self) -> EdgeLimits:
        config = self.config()
        if config is None:
            return self.base
        # One merge per config object, not per connection: tables are immutable.
        key = id(config)
        if self._cache is None or self._cache[0] != key:
            overrides = from_routes_yaml(config)
            self._cache = (key, self.base.merged(overrides) if overrides else self.base)
        return self._cache[1]


_live: LiveLimits | None = None


def live() -> LiveLimits:
    """This process's live limits (base from the environment, once)."""
    global _live
    if _live is None:
        _live = LiveLimits(EdgeLimits.from_env())
    return _live


# -- `gateway serve` flags --------------------------------------------------------------
_FLAG_HELP = {
    "request_line": "longest request line in bytes, else 414",
    "header_line": "longest header field line in bytes, else 431",
    "header_count": "most header fields in one request, else 431",
    "head_size": "largest request head in bytes, else 431",
    "head_timeout": "seconds a client has to send a complete request head, else 408 and close",
    "body_idle_timeout": "seconds a request body may pause, else 408 (or close once answering)",
    "keepalive_timeout": "seconds an idle keep-alive connection stays open",
    "send_timeout": "seconds a client may read none of its answer (the gateway's writes wait), else the "
                    "connection is aborted",
    "max_connections": "client connections per worker (capped below the descriptor limit)",
}


def add_flags(parser: argparse._ActionsContainer, env: EdgeLimits) -> None:
    """``--request-line``, ``--head-timeout``, ``--max-connections``, ... defaulting to ``env``."""
    defaults = EdgeLimits()
    for f in fields(EdgeLimits):
        kind = int if f.type in (int, "int") else float
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=getattr(env, f.name),
                            dest="limit_" + f.name, metavar="SECONDS" if kind is float else "N",
                            help=f"{_FLAG_HELP[f.name]} (default {getattr(defaults, f.name):g}; "
                                 f"env {ENV_NAMES[f.name]})")


def from_flags(args: argparse.Namespace) -> EdgeLimits:
    return EdgeLimits(**{f.name: getattr(args, "limit_" + f.name) for f in fields(EdgeLimits)})
