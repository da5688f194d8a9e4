"""Traces: the six ``GET /otel/...`` routes and the span pipeline behind them.

ingestion WAL ──ReadSpans (poller.py)──► rows.py ──► DuckDB (store.py) ──► routes (app.py)

One process per DuckDB file owns it (owner.py); other workers forward their
queries to it over a Unix socket. ``auth_service.py`` is the
``InternalAuthService.ValidateApiKey`` gRPC server the ingestion service dials.
See docs/migrating-traces.md.

The pipeline starts on the first /otel request, or at gateway startup when
``INGESTION_ADDR`` is set (the poller then runs from boot); it stops, with a
DuckDB checkpoint, when the gateway stops.
"""
from __future__ import annotations

import asyncio
from typing import Any

from services.common.settings import get_otel_settings
from services.registry import Service

from .app import create_app
from .owner import Pipeline, get_pipeline, set_pipeline

PREFIXES = ("/otel",)

def _start_at_boot() -> None:
    """Gateway startup hook: run the poller from boot when ops configured the
    pipeline (INGESTION_ADDR or OTEL_PIPELINE=1); else it starts on first use."""
    if get_otel_settings().starts_at_boot:
        start()


def start() -> Pipeline:
    """Start this process's pipeline (election; poller + store if it wins). Idempotent."""
    pipeline = get_pipeline()
    assert pipeline is not None  # get_pipeline(start=True) always makes one
    return pipeline


def pipeline_status() -> dict[str, Any]:
    """This process's view, for ``/_gateway/health`` (never blocks, never starts anything).

    ``role`` is ``owner`` (holds DuckDB, runs the poller: see ``poller``),
    ``follower`` (forwards queries to ``owner_pid``) or ``not started``.
    """
    pipeline = get_pipeline(start=False)
    if pipeline is None:
        return {"role": "not started"}
    return pipeline.local_status()


async def stop() -> None:
    """Gateway shutdown hook: stop the poller and the owner socket, checkpoint
    and close DuckDB (in a thread: joining the poller may take a moment)."""
    await asyncio.to_thread(set_pipeline, None)


SERVICE = Service(name="otel", prefixes=PREFIXES, app=create_app(),
                  startup=_start_at_boot, shutdown=stop, status=pipeline_status)

__all__ = ["SERVICE", "PREFIXES", "Pipeline", "create_app", "get_pipeline", "pipeline_status",
           "set_pipeline", "start", "stop"]
