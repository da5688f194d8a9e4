"""``X-Gateway-Target: go|python``: force a backend, for ops and tests only.

Honoured only when the request also carries ``X-Gateway-Admin-Token`` equal to
the token ops configured (env ``GATEWAY_ADMIN_TOKEN``; without it the feature
is off). Both headers are removed from every request, feature on or off, so
the token never reaches a backend.
"""
from __future__ import annotations

import hmac
from typing import Any

_TARGET = b"x-gateway-target"
_TOKEN = b"x-gateway-admin-token"


def take_override(scope: dict[str, Any], token: str | None) -> str | None:
    headers = scope["headers"]
    target = given = None
    for name, value in headers:
        if name == _TARGET:
            target = value.decode("latin-1").strip().lower()
        elif name == _TOKEN:
            given = value
    if target is None and given is None:
        return None
    scope["headers"] = [(n, v) for n, v in headers if n != _TARGET and n != _TOKEN]
    if token is None or given is None or not hmac.compare_digest(given, token.encode()):
        return None
    return target if target in ("go", "python") else None
