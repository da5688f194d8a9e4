"""``X-Gateway-Backend: go|python``: force a backend, for ops and tests only.

Honoured only when the request also carries ``X-Gateway-Admin-Token`` equal to
the token ops configured (env ``GATEWAY_ADMIN_TOKEN``; without it the feature
is off). Both headers are removed from every request, feature on or off, so
the token never reaches a backend. The header's old name, ``X-Gateway-Target``,
is removed too but no longer honoured.
"""
from __future__ import annotations

import hmac

from starlette.types import Scope

_BACKEND = b"x-gateway-backend"
_OLD_NAME = b"x-gateway-target"
_TOKEN = b"x-gateway-admin-token"
_OURS = frozenset({_BACKEND, _OLD_NAME, _TOKEN})


def take_override(scope: Scope, token: str | None) -> str | None:
    """The backend the request forces (``"go"`` or ``"python"``), or None."""
    headers = scope["headers"]
    backend = given = None
    present = False
    for name, value in headers:
        if name in _OURS:
            present = True
            if name == _BACKEND:
                backend = value.decode("latin-1").strip().lower()
            elif name == _TOKEN:
                given = value
    if not present:
        return None
    scope["headers"] = [(n, v) for n, v in headers if n not in _OURS]
    if token is None or given is None or not hmac.compare_digest(given, token.encode()):
        return None
    return backend if backend in ("go", "python") else None
