"""Who may read the admin surface: whoever presents ``GATEWAY_ADMIN_TOKEN``.

The token is accepted in three places, for three kinds of client:

* ``X-Gateway-Admin-Token: <token>`` — curl, scripts, the tests (the same
  header the ``X-Gateway-Backend`` override takes);
* ``Authorization: Bearer <token>`` — Prometheus' ``authorization`` /
  ``bearer_token_file`` scrape settings, and most HTTP tooling;
* ``Authorization: Basic`` with the token as the password (any user name) —
  a browser's own login prompt, so a person can open the status page; the
  401 answer offers it.

Compared with ``hmac.compare_digest`` (constant time). Without a configured
token nothing is accepted: the closed endpoints answer 403 saying how to
open them, rather than being open by default.
"""
from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from starlette.responses import JSONResponse, Response

TOKEN_HEADER = b"x-gateway-admin-token"
REALM = 'realm="gateway admin"'


def presented_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The admin token a request carries, if any (the header first, then Authorization)."""
    authorization = None
    for name, value in headers:
        name = name.lower()
        if name == TOKEN_HEADER:
            return value.strip()
        if name == b"authorization" and authorization is None:
            authorization = value
    return _from_authorization(authorization) if authorization is not None else None


def _from_authorization(value: bytes) -> bytes | None:
    scheme, _, credentials = value.strip().partition(b" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == b"bearer":
        return credentials
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return None
        _, colon, password = decoded.partition(b":")
        return password if colon else None
    return None


class AdminAccess:
    """The admin token check, and the answers for those who fail it."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def configured(self) -> bool:
        return self._token is not None

    def allows(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        if self._token is None:
            return False
        given = presented_token(headers)
        return given is not None and hmac.compare_digest(given, self._token)

    def refusal(self, path: str) -> Response:
        """403 when no token is configured (nobody can get in), 401 otherwise."""
        if self._token is None:
            return JSONResponse({"message": (
                f"{path} is closed: it needs the admin token, and this gateway has none. Set GATEWAY_ADMIN_TOKEN "
                "(a long random value) and send it as X-Gateway-Admin-Token or Authorization: Bearer. "
                "/_gateway/health and /_gateway/ready stay open.")}, status_code=403)
        answer = JSONResponse(
            {"message": f"{path} needs the admin token: send X-Gateway-Admin-Token: <GATEWAY_ADMIN_TOKEN> "
                        "or Authorization: Bearer <GATEWAY_ADMIN_TOKEN>."},
            status_code=401,
        )
        # Two challenges: Bearer for tools; Basic makes a browser ask (the token is the password).
        answer.raw_headers += [(b"www-authenticate", f"Bearer {REALM}".encode()),
                               (b"www-authenticate", f'Basic {REALM}, charset="UTF-8"'.encode())]
        return answer
