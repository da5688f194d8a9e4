"""One forwarder (and upstream connection pool) per distinct legacy setting.

A reload that keeps ``legacy:`` unchanged reuses the live forwarder, so its
warm connections survive. A changed one gets a new forwarder; the old pool is
retired: idle connections close now, busy ones when their response ends.
"""
from __future__ import annotations

from typing import Any

from gateway.routing.config import LegacyConfig

from .forwarder import LegacyForwarder
from .headers import TrustedProxies
from .transport import FastTransport


class Forwarders:
    """The live forwarder for the current ``legacy:`` settings, and the retiring ones."""

    def __init__(self, *, debug_errors: bool = False) -> None:
        self._live: dict[tuple[Any, ...], LegacyForwarder] = {}
        self._debug_errors = debug_errors

    def get(self, legacy: LegacyConfig, trusted: tuple[str, ...]) -> LegacyForwarder:
        """The forwarder for these settings, put in service now (on the event loop)."""
        fwd = self.prepare(legacy, trusted)
        self.adopt(legacy, trusted, fwd)
        return fwd

    def prepare(self, legacy: LegacyConfig, trusted: tuple[str, ...]) -> LegacyForwarder:
        """The live forwarder for these settings, or a new one not yet in service.

        Only builds objects (no I/O, no loop), so a reload's worker thread may
        call it; :meth:`adopt` then puts the new one in service on the loop."""
        fwd = self._live.get((legacy, trusted))
        if fwd is None:
            transport = FastTransport(
                connect_timeout=legacy.connect_timeout,
                read_timeout=legacy.read_timeout,
                max_connections=legacy.pool_size,
            )
            fwd = LegacyForwarder(legacy.url, transport, trusted_proxies=TrustedProxies(trusted),
                                  debug_errors=self._debug_errors)
        return fwd

    def adopt(self, legacy: LegacyConfig, trusted: tuple[str, ...], fwd: LegacyForwarder) -> None:
        """``fwd`` serves these settings from now on; any other pool retires (on the loop)."""
        key = (legacy, trusted)
        if self._live.get(key) is fwd:
            return
        for old_key, old in list(self._live.items()):
            del self._live[old_key]
            self._retire(old)
        self._live[key] = fwd

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
