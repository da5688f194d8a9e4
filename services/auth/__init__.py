"""Sign-in, sessions, CSRF token and user management (the legacy auth routes).

Serves ``/sign-in``, ``/sign-out``, ``/auth-test``, ``/csrf`` and ``/users/...``
exactly as the Go backend does, minting gorilla-compatible ``session`` cookies
so either side can serve any request. See docs/auth.md.
"""
from services.registry import Service

from .app import AuthService, create_app

PREFIXES = ("/sign-in", "/sign-out", "/auth-test", "/csrf", "/users")

SERVICE = Service(name="auth", prefixes=PREFIXES, app=create_app())

__all__ = ["SERVICE", "AuthService", "create_app", "PREFIXES"]
