"""Sign-in, sessions, CSRF token and user management (the legacy auth routes).

Serves ``/sign-in``, ``/sign-out``, ``/auth-test``, ``/csrf`` and ``/users/...``
exactly as the Go backend does, minting gorilla-compatible ``session`` cookies
so either side can serve any request. See docs/auth.md.
"""
from starlette.types import Scope

from services.common import SettingsError, close_database, get_cookie, get_settings
from services.common.db import open_at_startup
from services.registry import Service

from .app import AuthService, create_app
from .limiter_store import close_stores

PREFIXES = ("/sign-in", "/sign-out", "/auth-test", "/csrf", "/users")


def signed_in_email(scope: Scope) -> str | None:
    """The signed-in user's email, for sticky canaries; None when not signed in."""
    value = get_cookie(scope, "session")
    if not value:
        return None
    try:
        return get_settings().session_codec.decode(value)
    except SettingsError:
        return None  # no session secret configured: nobody is signed in as far as we can tell


def _shutdown() -> None:
    close_stores()
    close_database()


SERVICE = Service(name="auth", prefixes=PREFIXES, app=create_app(), identity=signed_in_email,
                  startup=open_at_startup, shutdown=_shutdown)

__all__ = ["SERVICE", "AuthService", "create_app", "PREFIXES", "signed_in_email"]
