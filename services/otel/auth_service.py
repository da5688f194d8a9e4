"""``ingestion.InternalAuthService/ValidateApiKey``: the gRPC server the ingestion
service dials (legacy port 50053, plaintext) before accepting OTLP exports.

Answered from the shared SQLite ``api_keys`` table exactly as the legacy does:
the key value is matched exactly and case-sensitively; a row → ``is_valid=true``;
no row (the empty key included) → ``false``; a database error → INTERNAL
``failed to get API key: <err>``. Unlike the legacy, the key is never logged
(only its length).

    python -m services.otel.auth_service --port 50053

Once the Go backend is retired, ``gateway serve`` runs it for you, once per
host (``VALIDATE_API_KEY_ADDR``; gateway/sidecars.py). The database comes from
the environment as for the gateway (``DATABASE_URL`` or ``JUNJO_SQLITE_PATH``;
see services/common/db.py); it is opened (and the schema made on a new file)
before the port opens, so the ingestion service's one start-up call
(``ValidateApiKey("startup-readiness-check")``, where an error status makes it
exit) gets ``false``, never an error.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures

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
    # No SO_REUSEPORT (gRPC's default): a second server on the same port must
    # fail to start, not silently share the port with the first.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)])
    ingestion_pb2_grpc.add_InternalAuthServiceServicer_to_server(AuthServicer(database), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ValidateApiKey gRPC server (legacy port 50053)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="stop when stdin closes (a supervisor's pipe: the server dies with its parent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    get_database()  # fail fast when the database cannot be opened
    try:
        server, port = make_server(f"{args.host}:{args.port}")
    except (OSError, RuntimeError) as exc:  # grpc raises RuntimeError when the port is taken
        log.error("InternalAuthService cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    server.start()
    log.info("InternalAuthService listening on %s:%d", args.host, port)
    signal.signal(signal.SIGTERM, lambda *_: server.stop(2))
    if args.exit_with_stdin:
        threading.Thread(target=_stop_at_eof, args=(server,), name="stdin-watch", daemon=True).start()
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(2)
    return 0


def _stop_at_eof(server: grpc.Server) -> None:
    """Stop ``server`` once stdin reaches end of file (the parent closed it, or died)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    log.info("InternalAuthService: stdin closed (the gateway stopped); stopping")
    server.stop(2)


if __name__ == "__main__":
    raise SystemExit(main())
