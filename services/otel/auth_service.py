"""``ingestion.InternalAuthService/ValidateApiKey``: the gRPC server the ingestion
service dials (legacy port 50053, plaintext) before accepting OTLP exports.

Answered from the shared SQLite ``api_keys`` table exactly as the legacy does:
the key value is matched exactly and case-sensitively; a row → ``is_valid=true``;
no row (the empty key included) → ``false``; a database error → INTERNAL
``failed to get API key: <err>``. Unlike the legacy, the key is never logged
(only its length).

    python -m services.otel.auth_service --port 50053

The database comes from the environment as for the gateway (``DATABASE_URL``
or ``JUNJO_SQLITE_PATH``; see services/common/db.py).
"""
from __future__ import annotations

import argparse
import logging
import signal
from concurrent import futures
from typing import Callable

import grpc

from services.common import Database, get_database

from .proto import ingestion_pb2, ingestion_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_PORT = 50053


class AuthServicer(ingestion_pb2_grpc.InternalAuthServiceServicer):
    def __init__(self, database: Callable[[], Database] = get_database) -> None:
        self._database = database

    def ValidateApiKey(self, request, context):
        try:
            found = self._database().get_api_key(request.api_key) is not None
        except Exception as exc:
            cause = getattr(exc, "orig", None) or exc  # the driver's message, never the SQL parameters
            log.error("ValidateApiKey: database error: %s", cause)
            context.abort(grpc.StatusCode.INTERNAL, f"failed to get API key: {cause}")
        log.debug("ValidateApiKey: key of %d chars → %s", len(request.api_key), found)
        return ingestion_pb2.ValidateApiKeyResponse(is_valid=found)


def make_server(address: str, database: Callable[[], Database] = get_database,
                workers: int = 8) -> tuple[grpc.Server, int]:
    """A started-but-not-yet server bound to ``address`` ("host:port", port 0 = any)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    ingestion_pb2_grpc.add_InternalAuthServiceServicer_to_server(AuthServicer(database), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ValidateApiKey gRPC server (legacy port 50053)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    get_database()  # fail fast when the database cannot be opened
    server, port = make_server(f"{args.host}:{args.port}")
    server.start()
    log.info("InternalAuthService listening on %s:%d", args.host, port)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(2))
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
