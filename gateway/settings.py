"""The gateway process's settings: every GATEWAY_* variable and LEGACY_URL, read once.

The CLI's defaults come from here too (``gateway serve --port`` defaults to
``GATEWAY_PORT``, …), so each default is written once. A bad value is an
error naming the variable (``GATEWAY_PORT: must be a valid integer, got
'abc'``), raised when the settings are read. Same mechanism as the services'
settings (services/common/settings.py says why not pydantic-settings); the
services keep their own object: they never import the gateway.

``gateway serve`` exports what its workers need (``GATEWAY_CONFIG``, the
metrics directory) before uvicorn starts them: each worker process reads its
settings once, in ``create_app``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator

from services.common.settings import CommaList, EnvSettings, env_var

from .routing.models import check_url

DEFAULT_PORT = 1324
DEFAULT_CONFIG = "routes.yaml"


def _prefixes(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.rstrip("/") for p in value)


def check_listen_addr(value: str) -> str:
    """``host:port`` to listen on (``0.0.0.0:50053``, ``127.0.0.1:50053``, ``[::]:50053``)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port to listen on, such as 0.0.0.0:50053, got {value!r}")
    return value


class GatewaySettings(EnvSettings):
    config_path: str = env_var("GATEWAY_CONFIG", DEFAULT_CONFIG)  # the routes file
    host: str = env_var("GATEWAY_HOST", "127.0.0.1")
    port: int = env_var("GATEWAY_PORT", DEFAULT_PORT, ge=0, le=65535)
    workers: int = env_var("GATEWAY_WORKERS", 1, ge=1)
    # How `gateway serve` starts its workers: forked from it once the gateway and
    # its services are imported, or spawned as fresh interpreters (uvicorn's way:
    # for a team's service package that starts threads or opens files at import).
    worker_start: Literal["fork", "spawn"] = env_var("GATEWAY_WORKER_START", "fork")
    log_level: Annotated[Literal["critical", "error", "warning", "info", "debug", "trace"],
                         BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = env_var(
        "GATEWAY_LOG_LEVEL", "info")
    graceful_timeout: float = env_var("GATEWAY_GRACEFUL_TIMEOUT", 30.0, ge=0)  # seconds after SIGTERM
    access_log: bool = env_var("GATEWAY_ACCESS_LOG", True)
    # More prefixes whose path tails are cut from the access log (services declare their own).
    redact_prefixes: Annotated[CommaList, AfterValidator(_prefixes)] = env_var(
        "GATEWAY_LOG_REDACT_PREFIXES", "", validate_default=True)
    # Development only: 502/504 bodies also carry the backend's URL and the exception.
    debug_errors: bool = env_var("GATEWAY_DEBUG_ERRORS", False)
    metrics_dir: str | None = env_var("GATEWAY_METRICS_DIR", None)  # shared by one serve's workers
    state_dir: str | None = env_var("GATEWAY_STATE_DIR", None)  # canary rollbacks; default metrics_dir
    # Opens /_gateway/routes, explain, metrics, status (and health/ready's detail), enables
    # X-Gateway-Backend. Unset: those answer 403 (gateway/ops/access.py; README, Admin surface).
    admin_token: str | None = env_var("GATEWAY_ADMIN_TOKEN", None, repr=False)
    secret: str | None = env_var("GATEWAY_SECRET", None, repr=False)  # signs the canary gw_id cookie
    service_packages: CommaList = env_var("GATEWAY_SERVICE_PACKAGES", "", validate_default=True)
    legacy_url: Annotated[str, AfterValidator(check_url)] | None = env_var("LEGACY_URL", None)  # beats legacy.url
    # Client limits of the edge (gateway/edge/limits.py): `gateway serve` flags
    # default to these, and routes.yaml `limits:` overrides what it sets.
    request_line: int = env_var("GATEWAY_REQUEST_LINE", 8192, gt=0)  # bytes, else 414
    header_line: int = env_var("GATEWAY_HEADER_LINE", 8192, gt=0)  # bytes of one field line, else 431
    header_count: int = env_var("GATEWAY_HEADER_COUNT", 100, gt=0)  # fields in one head, else 431
    head_size: int = env_var("GATEWAY_HEAD_SIZE", 32768, gt=0)  # bytes of a whole head, else 431
    head_timeout: float = env_var("GATEWAY_HEAD_TIMEOUT", 10.0, gt=0)  # seconds for a whole head, else 408
    body_idle_timeout: float = env_var("GATEWAY_BODY_IDLE_TIMEOUT", 30.0, gt=0)  # seconds without a body byte
    keepalive_timeout: float = env_var("GATEWAY_KEEPALIVE_TIMEOUT", 5.0, gt=0)  # idle keep-alive seconds
    send_timeout: float = env_var("GATEWAY_SEND_TIMEOUT", 60.0, gt=0)  # seconds a client may read none of its answer
    max_connections: int = env_var("GATEWAY_MAX_CONNECTIONS", 4096, gt=0)  # client connections per worker
    # A server database (PostgreSQL) shares canary rollback verdicts across replicas.
    database_url: str | None = env_var("DATABASE_URL", None, repr=False)
    # Where `gateway serve` runs the ValidateApiKey gRPC server the ingestion
    # service dials once Go is retired (gateway/sidecars.py); unset = not run.
    validate_api_key_addr: Annotated[str, AfterValidator(check_listen_addr)] | None = env_var(
        "VALIDATE_API_KEY_ADDR", None)


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return GatewaySettings.from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests; ``gateway serve`` after exporting for its workers)."""
    get_settings.cache_clear()
