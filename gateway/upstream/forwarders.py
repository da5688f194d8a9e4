"""One forwarder (and upstream connection pool) per distinct legacy setting.

A reload that keeps ``legacy:`` unchanged reuses the live forwarder, so its
warm connections survive. A changed one gets a new forwarder; the old pool is
retired: idle connections close now, busy ones when their response ends.

``UpstreamSettings.from_config`` is the one place routes.yaml's settings reach
the upstream side: the forwarder, its transport and pool are built from what
it returns, and nothing else reads config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.routing.config import LegacyConfig

from .forwarder import LegacyForwarder
from .headers import TrustedProxies
from .http11 import HeadLimits
from .transport import FastTransport


@dataclass(frozen=True)
class UpstreamSettings:
    """What one forwarder is built from; the defaults are routes.yaml's."""

    url: str
    connect_timeout: float = 2.0  # also how long a request waits for a pooled connection
    read_timeout: float = 60.0
    pool_size: int = 512
    total_timeout: float | None = None  # legacy.total_timeout: a whole exchange; None = no limit
    body_pool_share: float = 0.5  # legacy.body_pool_share: of pool_size, for requests with a body
    body_idle_timeout: float | None = 30.0  # limits.body_idle_timeout: s without a request-body byte
    head_size: int = HeadLimits.head_size  # limits.upstream_head_size: bytes of a response head
    header_count: int = HeadLimits.header_count  # limits.upstream_header_count: fields in one
    interim_responses: int = HeadLimits.interim_responses  # 1xx answers before the response

    @classmethod
    def from_config(cls, legacy: LegacyConfig, limits: Any = None) -> UpstreamSettings:
        """routes.yaml's ``legacy:`` and ``limits:`` sections → the upstream's settings.

        Where config comes in. A setting the config object doesn't carry (yet)
        keeps its default: ``legacy.total_timeout`` and ``legacy.body_pool_share``
        are read from ``legacy``; ``limits.upstream_head_size``,
        ``limits.upstream_header_count`` and ``limits.body_idle_timeout`` (the
        client side's setting: the same rule, held on the upstream side too)
        from ``limits``."""
        d = cls(url=legacy.url)  # the defaults
        return cls(
            url=legacy.url,
            connect_timeout=legacy.connect_timeout,
            read_timeout=legacy.read_timeout,
            pool_size=legacy.pool_size,
            total_timeout=getattr(legacy, "total_timeout", d.total_timeout),
            body_pool_share=getattr(legacy, "body_pool_share", d.body_pool_share),
            body_idle_timeout=getattr(limits, "body_idle_timeout", d.body_idle_timeout),
            head_size=getattr(limits, "upstream_head_size", d.head_size),
            header_count=getattr(limits, "upstream_header_count", d.header_count),
        )

    def transport(self) -> FastTransport:
        return FastTransport(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_connections=self.pool_size,
            body_pool_share=self.body_pool_share,
            body_idle_timeout=self.body_idle_timeout,
            head_size=self.head_size,
            header_count=self.header_count,
            interim_responses=self.interim_responses,
        )


class Forwarders:
    """The live forwarder for the current ``legacy:`` and ``limits:`` settings.

    A reload builds the next table in a worker thread: :meth:`prepare` only
    builds objects (no I/O, no loop) and :meth:`adopt` puts the new forwarder
    in service on the event loop, retiring the old pool."""

    def __init__(self, *, debug_errors: bool = False) -> None:
        self._live: dict[tuple[Any, ...], LegacyForwarder] = {}
        self._settings: dict[tuple[Any, ...], UpstreamSettings] = {}
        self._built: dict[LegacyForwarder, UpstreamSettings] = {}  # prepared, not yet adopted
        self._debug_errors = debug_errors

    def get(self, legacy: LegacyConfig, trusted: tuple[str, ...], limits: Any = None) -> LegacyForwarder:
        """The forwarder for these settings, put in service now (on the event loop)."""
        fwd = self.prepare(legacy, trusted, limits)
        self.adopt(legacy, trusted, fwd)
        return fwd

    def prepare(self, legacy: LegacyConfig, trusted: tuple[str, ...], limits: Any = None) -> LegacyForwarder:
        """The live forwarder when these settings are unchanged, else a new one not yet in service.

        ``limits`` is routes.yaml's ``limits:`` section; None (a caller that
        only knows ``legacy:``, such as the readiness probe) takes the live
        forwarder for ``legacy`` and ``trusted`` as it is."""
        key = (legacy, trusted)
        fwd = self._live.get(key)
        if fwd is not None and limits is None:
            return fwd
        settings = UpstreamSettings.from_config(legacy, limits)
        if fwd is not None and self._settings.get(key) == settings:
            return fwd
        fwd = LegacyForwarder(legacy.url, settings.transport(), trusted_proxies=TrustedProxies(trusted),
                              debug_errors=self._debug_errors, total_timeout=settings.total_timeout)
        self._built[fwd] = settings
        return fwd

    def adopt(self, legacy: LegacyConfig, trusted: tuple[str, ...], fwd: LegacyForwarder) -> None:
        """``fwd`` serves these settings from now on; any other pool retires (on the loop)."""
        key = (legacy, trusted)
        if self._live.get(key) is fwd:
            return
        for old_key, old in list(self._live.items()):
            del self._live[old_key]
            self._retire(old)
        self._settings.clear()
        self._live[key] = fwd
        built = self._built.pop(fwd) if fwd in self._built else None
        self._settings[key] = built or UpstreamSettings.from_config(legacy)
        self._built.clear()  # prepared for tables that never went live

    @staticmethod
    def _retire(fwd: LegacyForwarder) -> None:
        # Requests still streaming through the old pool finish undisturbed;
        # its connections close as they come back (FastTransport.retire).
        retire = getattr(fwd.transport, "retire", None)
        if retire is not None:
            retire()

    def current(self) -> LegacyForwarder | None:
        return next(iter(self._live.values()), None)

    async def aclose(self) -> None:
        for fwd in self._live.values():
            await fwd.aclose()
        self._live.clear()
