"""Environment settings of the Python feature modules: typed, validated, read once.

Every variable the services read is a field below, with its default, so no
feature module calls ``os.environ`` itself and .env.example can be checked
against one place (tests/test_deploy_files.py reads the ``env_var(...)``
fields). A bad value is an error naming the variable
(``OTEL_BATCH_SIZE: must be an integer, got 'abc'``), raised when the settings
are first read — at gateway start, which checks them all (``check_settings``).

Read once per process (``get_settings()`` & co. cache); tests call
``reset_settings()`` after changing the environment.

Why plain pydantic models rather than pydantic-settings: we read exactly one
source (the process environment, or a mapping a test hands in), treat an empty
value as unset (the .env.example convention), and keep comma lists as comma
lists. pydantic-settings always merges its own sources (env, dotenv, secrets),
decodes list fields as JSON and matches names case-insensitively by default;
each needs configuring away, for nothing we use. Validation, aliases and the
error per variable are pydantic's own.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from .csrf import CsrfTokens
    from .session_codec import SessionCodec

DEFAULT_SQLITE_PATH = "data/app_data.db"
DEFAULT_DUCKDB_PATH = "data/otel_python.duckdb"
DEFAULT_INGESTION_ADDR = "localhost:50052"
DEFAULT_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_LLM_TIMEOUT = 60.0

# Journal modes the SQLite file may be run in. "delete" is the legacy's own
# choice (it sets it at every boot); "wal" is for a file Python owns alone.
SQLITE_JOURNAL_MODES = ("delete", "wal")
DEFAULT_SQLITE_JOURNAL_MODE = "delete"


class SettingsError(RuntimeError):
    """A setting from the environment is missing or malformed (the message names it).

    Named apart from the gateway's ``RoutesError`` (routes.yaml)."""


def env_var(name: str, default: Any, **constraints: Any) -> Any:
    """A field read from environment variable ``name`` (``default`` when unset or empty)."""
    return Field(default, validation_alias=name, **constraints)


def comma_list(value: Any) -> Any:
    """``"a, b,,c"`` → ``("a", "b", "c")``: blanks dropped."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaList = Annotated[tuple[str, ...], BeforeValidator(comma_list)]
S = TypeVar("S", bound="EnvSettings")


class EnvSettings(BaseModel):
    """Base: fields are ``env_var(...)``; ``from_env`` reads and validates them."""

    model_config = ConfigDict(frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True)

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
        env = os.environ if environ is None else environ
        names = [info.validation_alias for info in cls.model_fields.values() if isinstance(info.validation_alias, str)]
        # An empty value means unset, as in .env.example and compose's ${VAR:-}.
        given = {name: env[name] for name in names if env.get(name, "") != ""}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """``NAME: what is wrong, got 'value'`` per bad variable, one per line."""
    lines = []
    for error in exc.errors(include_url=False):
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "value_error":  # our own check: its message names the value
            lines.append(f"{name}: {(error.get('ctx') or {}).get('error')}")
            continue
        reason = error["msg"].replace("Input should be", "must be").split(", unable to")[0]
        value = error.get("input")
        got = f", got {str(value)[:60]!r}" if isinstance(value, str) else ""
        lines.append(f"{name}: {reason}{got}")
    return "\n".join(lines)


def parse_journal_mode(raw: str | None) -> str:
    """``JUNJO_SQLITE_JOURNAL_MODE`` checked: one of :data:`SQLITE_JOURNAL_MODES`
    (any case; empty = the default), else :class:`SettingsError`."""
    value = (raw or "").strip().lower() or DEFAULT_SQLITE_JOURNAL_MODE
    if value not in SQLITE_JOURNAL_MODES:
        raise SettingsError(
            f"JUNJO_SQLITE_JOURNAL_MODE={raw!r} is not supported: use 'delete' (the default; "
            "required while the Go backend shares the file) or 'wal' (only once Python owns "
            "the file alone)"
        )
    return value


def _journal_mode_value(raw: Any) -> str:
    try:
        return parse_journal_mode(raw)
    except SettingsError as exc:  # pydantic reports ValueErrors per field
        raise ValueError(str(exc)) from None


class Settings(EnvSettings):
    """What auth, sessions, CSRF and the shared database read."""

    # Current session secret; its raw UTF-8 bytes are the HMAC key. Required by
    # the routes that mint or read sessions (checked when they do).
    session_secret: str = env_var("JUNJO_SESSION_SECRET", "", repr=False)
    # Older secrets still accepted when decoding (rotation).
    previous_session_secrets: CommaList = env_var("JUNJO_SESSION_SECRETS_PREVIOUS", "", repr=False,
                                                  validate_default=True)
    env: str = env_var("JUNJO_ENV", "")  # "production" adds the session cookie Domain
    prod_auth_domain: Annotated[str, BeforeValidator(str.strip)] = env_var("JUNJO_PROD_AUTH_DOMAIN", "")
    sqlite_path: str = env_var("JUNJO_SQLITE_PATH", DEFAULT_SQLITE_PATH)  # relative to the CWD
    database_url: str | None = env_var("DATABASE_URL", None, repr=False)  # overrides JUNJO_SQLITE_PATH
    # "delete" while the Go backend shares the file (the legacy's mode), "wal"
    # only once Python owns it alone (docs/deploy.md).
    sqlite_journal_mode: Annotated[str, BeforeValidator(lambda v: _journal_mode_value(v))] = env_var(
        "JUNJO_SQLITE_JOURNAL_MODE", DEFAULT_SQLITE_JOURNAL_MODE)
    # Key for what the gateway signs itself (csrf tokens). Never derived from
    # the session secret: a signed token handed to anyone would otherwise let
    # them test guesses of JUNJO_SESSION_SECRET offline. Random per process when unset.
    gateway_secret: bytes = env_var("GATEWAY_SECRET", b"", repr=False)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def session_secrets(self) -> tuple[bytes, ...]:
        """Every accepted secret as raw bytes, the current (minting) one first."""
        if not self.session_secret:
            raise SettingsError(
                "JUNJO_SESSION_SECRET is not set: set it to the same value as the legacy backend"
            )
        return tuple(
            s.encode("utf-8") for s in (self.session_secret, *self.previous_session_secrets)
        )

    @cached_property
    def session_codec(self) -> SessionCodec:
        """The process-wide codec: mints with the current secret, accepts all."""
        from .session_codec import SessionCodec

        return SessionCodec(self.session_secrets)

    @cached_property
    def csrf_tokens(self) -> CsrfTokens:
        from .csrf import CsrfTokens

        return CsrfTokens([self.gateway_secret or _process_key()])

    @property
    def cookie_domain(self) -> str | None:
        """The session cookie Domain option (as the Go code sets it), or None."""
        if self.is_production and self.prod_auth_domain:
            return "." + self.prod_auth_domain.lstrip(".")
        return None


class OtelSettings(EnvSettings):
    """The /otel span pipeline (services/otel; docs/migrating-traces.md)."""

    ingestion_addr: str = env_var("INGESTION_ADDR", DEFAULT_INGESTION_ADDR)  # the ingestion WAL's gRPC address
    pipeline: bool = env_var("OTEL_PIPELINE", False)  # start the pipeline at boot
    duckdb_path: str = env_var("OTEL_DUCKDB_PATH", DEFAULT_DUCKDB_PATH)  # this side's own DuckDB file
    poll_interval: float = env_var("OTEL_POLL_INTERVAL", 5.0, gt=0)  # seconds between polls
    batch_size: int = env_var("OTEL_BATCH_SIZE", 1000, gt=0)  # WAL entries per ReadSpans call
    read_timeout: float = env_var("OTEL_READ_TIMEOUT", 30.0, gt=0)  # seconds for one ReadSpans stream
    db_concurrency: int = env_var("OTEL_DB_CONCURRENCY", 4, gt=0)  # DuckDB queries in flight per owner
    socket_path: str | None = env_var("OTEL_SOCKET_PATH", None)  # the owner's Unix socket; default <duckdb>.sock
    query_timeout: float = env_var("OTEL_QUERY_TIMEOUT", 60.0, gt=0)  # seconds a follower waits for the owner

    @property
    def starts_at_boot(self) -> bool:
        """Run the poller from boot when ops configured the pipeline: INGESTION_ADDR
        given (even its default) or OTEL_PIPELINE on; else it starts on first use."""
        return self.pipeline or "ingestion_addr" in self.model_fields_set


class LlmSettings(EnvSettings):
    """``POST /llm/generate`` (services/llm)."""

    api_key: str = env_var("GEMINI_API_KEY", "", repr=False)  # unset: the route answers Go's 500
    base_url: str = env_var("GEMINI_BASE_URL", DEFAULT_GEMINI_BASE_URL)
    # Limit on one provider call (504 after); Go has none.
    timeout: float = env_var("LLM_TIMEOUT_SECONDS", DEFAULT_LLM_TIMEOUT, gt=0, allow_inf_nan=False)


@lru_cache(maxsize=1)
def _process_key() -> bytes:
    """Without GATEWAY_SECRET, a random key per process: tokens stay
    recognisable by the worker that issued them (recognition is never enforced)."""
    return secrets.token_bytes(32)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    return Settings.from_env(environ)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def get_otel_settings() -> OtelSettings:
    return OtelSettings.from_env()


@lru_cache(maxsize=1)
def get_llm_settings() -> LlmSettings:
    """Read once per process, like the Go backend reads its environment at boot."""
    return LlmSettings.from_env()


def check_settings(environ: Mapping[str, str] | None = None) -> None:
    """Validate every services setting now (gateway start): one SettingsError listing all bad ones."""
    bad = []
    for kind in (Settings, OtelSettings, LlmSettings):
        try:
            kind.from_env(environ)
        except SettingsError as exc:
            bad.append(str(exc))
    if bad:
        raise SettingsError("\n".join(bad))


def reset_settings() -> None:
    """Forget the cached settings (tests, or after ops changed the environment)."""
    get_settings.cache_clear()
    get_otel_settings.cache_clear()
    get_llm_settings.cache_clear()
