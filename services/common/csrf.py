"""The legacy CSRF cookie (Echo ``CSRFWithConfig`` as the Go backend configures it).

Echo accepts *any* value in the ``csrf`` cookie (the cookie extractor compares
the cookie with itself), so the check is only "a ``csrf`` cookie is present".
What the gateway adds: the tokens it issues are signed with itsdangerous, so a
token can be recognised as ours (a future stricter mode). Signing is never enforced, because the Go backend
issues unsigned 32-char tokens that browsers keep sending. The key is
``GATEWAY_SECRET`` (never the session secret: an unauthenticated ``GET /csrf``
would otherwise give anyone a signature to test session-secret guesses against).

Token shape: ``<32 random [A-Za-z0-9]>.<signature>`` — cookie-safe (only
``[A-Za-z0-9_.-]``). The existing cookie value is always kept, as Echo does.
"""
from __future__ import annotations

import secrets as _secrets
import string
import time
from collections.abc import Sequence

from itsdangerous import Signer

from .cookies import format_set_cookie

COOKIE_NAME = "csrf"
HEADER_NAME = "X-CSRF-Token"
COOKIE_MAX_AGE = 86400
TOKEN_LENGTH = 32
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_ALPHABET = string.ascii_letters + string.digits
_SALT = b"junjo-gateway-csrf"


class CsrfTokens:
    """Issue gateway CSRF tokens, signed with ``keys[0]``."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("CsrfTokens needs at least one key")
        self._signers = [Signer(k, salt=_SALT) for k in keys]

    def issue(self) -> str:
        return self._signers[0].sign(random_token()).decode("ascii")


def random_token(length: int = TOKEN_LENGTH) -> str:
    """``length`` characters drawn uniformly from [A-Za-z0-9] (Echo's
    ``random.String``), from one ``os.urandom`` read instead of one per
    character: every answer of a protected route issues a token. Bytes from
    248 up are skipped, so each of the 62 characters is equally likely
    (248 = 4 × 62)."""
    out: list[str] = []
    while len(out) < length:
        out += [_ALPHABET[b % 62] for b in _secrets.token_bytes(length + 8) if b < 248]
    return "".join(out[:length])


def csrf_set_cookie(token: str, now: float | None = None) -> str:
    """``csrf=<token>; Expires=<now+24h>; HttpOnly; Secure; SameSite=Strict``
    (no Path, no Max-Age), exactly as Echo writes it."""
    issued = time.time() if now is None else now
    return format_set_cookie(
        COOKIE_NAME, token, expires=issued + COOKIE_MAX_AGE,
        http_only=True, secure=True, same_site="Strict",
    )
