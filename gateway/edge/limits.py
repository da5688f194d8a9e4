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
import os
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
    max_connections: int = 4096  # client connections per worker (capped by descriptors)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"limits.{f.name} must be a positive number, got {value!r}")

    # -- the worker processes read what `gateway serve` was told -----------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EdgeLimits:
        raw = _env_values(os.environ if environ is None else environ)
        values: dict[str, Any] = {f.name: _parse(f.name, f.type, raw[f.name]) for f in fields(cls)}
        return cls(**values)

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
}


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    """The variables as text, defaults included. Literal names and defaults on
    purpose: tests/unit/test_deploy_files.py checks .env.example against them."""
    return {
        "request_line": env.get("GATEWAY_REQUEST_LINE", "8192") or "8192",
        "header_line": env.get("GATEWAY_HEADER_LINE", "8192") or "8192",
        "header_count": env.get("GATEWAY_HEADER_COUNT", "100") or "100",
        "head_size": env.get("GATEWAY_HEAD_SIZE", "32768") or "32768",
        "head_timeout": env.get("GATEWAY_HEAD_TIMEOUT", "10") or "10",
        "body_idle_timeout": env.get("GATEWAY_BODY_IDLE_TIMEOUT", "30") or "30",
        "keepalive_timeout": env.get("GATEWAY_KEEPALIVE_TIMEOUT", "5") or "5",
        "max_connections": env.get("GATEWAY_MAX_CONNECTIONS", "4096") or "4096",
    }


def _parse(name: str, kind: Any, raw: str) -> int | float:
    try:
        return int(raw) if kind in (int, "int") else float(raw)
    except ValueError:
        raise ValueError(f"{ENV_NAMES[name]}={raw!r} is not a number") from None


def _format(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


# -- routes.yaml ------------------------------------------------------------------------
# ISSUE 14 / routes.yaml `limits:` — THE ONE PLACE where the live config's limits
# are fed to the edge. The routes.yaml `limits:` block (request_line ... max_connections,
# same names as EdgeLimits) is being added to gateway/routing/config.py elsewhere;
# until it lands this returns nothing and the flags/env/defaults rule. When it
# lands, return here the keys the file *sets explicitly* (not its defaults, or
# the file would silently undo every flag), e.g.
#     block = getattr(config, "limits", None)
#     return block.model_dump(exclude_unset=True, include=EDGE_FIELDS) if block else {}
EDGE_FIELDS = frozenset(f.name for f in fields(EdgeLimits))


def from_routes_yaml(config: Any) -> Mapping[str, Any]:
    """The edge limits the live routes.yaml sets explicitly (none yet, see above)."""
    return {}


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
    "max_connections": "client connections per worker (capped below the descriptor limit)",
}


def add_flags(parser: argparse._ActionsContainer) -> None:
    """``--request-line``, ``--head-timeout``, ``--max-connections``, ..."""
    defaults, env = EdgeLimits(), _env_values(os.environ)
    for f in fields(EdgeLimits):
        kind = int if f.type in (int, "int") else float
        # A string default goes through `type` too, so a bad variable is an
        # argparse error of `gateway serve`, not a crash of every command.
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=env[f.name],
                            dest="limit_" + f.name, metavar="SECONDS" if kind is float else "N",
                            help=f"{_FLAG_HELP[f.name]} (default {getattr(defaults, f.name):g}; "
                                 f"env {ENV_NAMES[f.name]})")


def from_flags(args: argparse.Namespace) -> EdgeLimits:
    return EdgeLimits(**{f.name: getattr(args, "limit_" + f.name) for f in fields(EdgeLimits)})
