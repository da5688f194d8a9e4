"""Environment settings shared by the Python feature modules.

Read once per process (``get_settings()`` caches); tests call
``reset_settings()`` after changing the environment.

| variable | meaning |
|---|---|
| ``JUNJO_SESSION_SECRET`` | current session secret; its raw UTF-8 bytes are the HMAC key (required) |
| ``JUNJO_SESSION_SECRETS_PREVIOUS`` | comma-separated older secrets still accepted when decoding |
| ``JUNJO_ENV`` | ``production`` adds the session cookie ``Domain`` |
| ``JUNJO_PROD_AUTH_DOMAIN`` | the production cookie domain |
| ``JUNJO_SQLITE_PATH`` | SQLite file (default ``data/app_data.db`` relative to CWD) |
| ``DATABASE_URL`` | full SQLAlchemy URL, overrides ``JUNJO_SQLITE_PATH`` |
| ``JUNJO_SQLITE_JOURNAL_MODE`` | ``delete`` (default: the legacy's rollback journal, while Go shares the file) or ``wal`` (only once Python owns the file alone) |
| ``GATEWAY_SECRET`` | key for the gateway's own signed values (csrf tokens); random per process when unset |
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .csrf import CsrfTokens
    from .session_codec import SessionCodec

DEFAULT_SQLITE_PATH = "data/app_data.db"

# Journal modes the SQLite file may be run in. "delete" is the legacy's own
# choice (it sets it at every boot); "wal" is for a file Python owns alone.
SQLITE_JOURNAL_MODES = ("delete", "wal")
DEFAULT_SQLITE_JOURNAL_MODE = "delete"


class ConfigError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    session_secret: str
    previous_session_secrets: tuple[str, ...]
    env: str
    prod_auth_domain: str
    sqlite_path: str
    database_url: str | None
    # As given; checked by parse_journal_mode() when the database is opened
    # (and by `gateway serve` before it starts), not here: a typo must not
    # break the session handling of every route that reads these settings.
    sqlite_journal_mode: str = DEFAULT_SQLITE_JOURNAL_MODE
    # Key for what the gateway signs itself (csrf tokens). Never derived from
    # the session secret: a signed token handed to anyone would otherwise let
    # them test guesses of JUNJO_SESSION_SECRET offline.
    gateway_secret: bytes = b""

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def session_secrets(self) -> tuple[bytes, ...]:
        """Every accepted secret as raw bytes, the current (minting) one first."""
        if not self.session_secret:
            raise ConfigError(
                "JUNJO_SESSION_SECRET is not set: set it to the same value as the legacy backend"
            )
        return tuple(
            s.encode("utf-8") for s in (self.session_secret, *self.previous_session_secrets)
        )

    @cached_property
    def session_codec(self) -> "SessionCodec":
        """The process-wide codec: mints with the current secret, accepts all."""
        from .session_codec import SessionCodec

        return SessionCodec(self.session_secrets)

    @cached_property
    def csrf_tokens(self) -> "CsrfTokens":
        from .csrf import CsrfTokens

        return CsrfTokens([self.gateway_secret or _process_key()])

    @property
    def cookie_domain(self) -> str | None:
        """The session cookie Domain option (as the Go code sets it), or None."""
        if self.is_production and self.prod_auth_domain:
            return "." + self.prod_auth_domain.lstrip(".")
        return None


@lru_cache(maxsize=1)
def _process_key() -> bytes:
    """Without GATEWAY_SECRET, a random key per process: tokens stay
    recognisable by the worker that issued them (recognition is never enforced)."""
    return secrets.token_bytes(32)


def parse_journal_mode(raw: str | None) -> str:
    """``JUNJO_SQLITE_JOURNAL_MODE`` checked: one of :data:`SQLITE_JOURNAL_MODES`
    (any case; empty = the default), else :class:`ConfigError`."""
    value = (raw or "").strip().lower() or DEFAULT_SQLITE_JOURNAL_MODE
    if value not in SQLITE_JOURNAL_MODES:
        raise ConfigError(
            f"JUNJO_SQLITE_JOURNAL_MODE={raw!r} is not supported: use 'delete' (the default; "
            "required while the Go backend shares the file) or 'wal' (only once Python owns "
            "the file alone)"
        )
    return value


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    previous = tuple(
        s for s in (p.strip() for p in env.get("JUNJO_SESSION_SECRETS_PREVIOUS", "").split(",")) if s
    )
    return Settings(
        session_secret=env.get("JUNJO_SESSION_SECRET", ""),
        previous_session_secrets=previous,
        env=env.get("JUNJO_ENV", ""),
        prod_auth_domain=env.get("JUNJO_PROD_AUTH_DOMAIN", "").strip(),
        sqlite_path=env.get("JUNJO_SQLITE_PATH", "") or DEFAULT_SQLITE_PATH,
        database_url=env.get("DATABASE_URL") or None,
        sqlite_journal_mode=env.get("JUNJO_SQLITE_JOURNAL_MODE", "") or DEFAULT_SQLITE_JOURNAL_MODE,
        gateway_secret=env.get("GATEWAY_SECRET", "").encode("utf-8"),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return settings_from_env()


def reset_settings() -> None:
    """Forget the cached settings (tests, or after ops changed the environment)."""
    get_settings.cache_clear()
