"""Sticky canaries: the same user always lands on the same side of a route.

A user is identified by the signed-in email when an identity provider is
registered (the auth service decodes the legacy session cookie), else by a
``gw_id`` cookie the gateway sets once, signed with itsdangerous so a forged or
edited one is recognised and replaced. Each (route prefix, identity) hashes to
a fixed point in [0, 100); the user goes to Python when that point is below the
route's percentage. Raising the percentage therefore only ever moves users from
Go to Python, never back, and 0 / 100 mean all Go / all Python.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from functools import cached_property

from itsdangerous import BadSignature, Signer
from starlette.types import Scope

log = logging.getLogger("gateway.canary")

COOKIE = "gw_id"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers honour

Identity = Callable[[Scope], "str | None"]


def bucket(prefix: str, identity: str) -> float:
    """A stable point in [0, 100) for this identity on this route."""
    digest = hashlib.sha256(f"{prefix}\x00{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def process_secret() -> bytes:
    """Without GATEWAY_SECRET (the gateway's settings hand it to the chooser), a
    random key per process.

    Never derived from the session secret: that would hand every anonymous
    client a signed value to test guesses of that secret offline.
    """
    log.warning("GATEWAY_SECRET is not set: canary cookies are signed with a per-process key, so an "
                "anonymous client's side won't stick across workers or restarts (signed-in users still do)")
    return secrets.token_bytes(32)


def _cookie(scope: Scope, name: str) -> str | None:
    prefix = name + "="
    for header, value in scope["headers"]:
        if header == b"cookie":
            for part in value.decode("latin-1").split(";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix):]
    return None


class CanaryChooser:
    def __init__(self, identity: Identity | None = None, secret: bytes | None = None):
        self.identity = identity
        self._secret = secret

    @cached_property
    def signer(self) -> Signer:
        # Built on first use: a gateway without canary routes needs no key (nor the warning).
        return Signer(self._secret or process_secret(), salt="gw-canary")

    def identify(self, scope: Scope) -> tuple[str, bytes | None]:
        """(identity, Set-Cookie value to add or None)."""
        if self.identity is not None:
            try:
                user = self.identity(scope)
            except Exception:  # a broken provider must not fail the request
                log.exception("identity provider failed; falling back to the gw_id cookie")
                user = None
            if user:
                return "user:" + user, None
        raw = _cookie(scope, COOKIE)
        if raw:
            try:
                return "client:" + self.signer.unsign(raw).decode(), None
            except BadSignature:
                pass  # forged or from another deployment: issue a fresh one
        client_id = secrets.token_urlsafe(12)
        signed = self.signer.sign(client_id.encode())
        cookie = (COOKIE.encode() + b"=" + signed + b"; Path=/; Max-Age=" + str(COOKIE_MAX_AGE).encode()
                  + b"; HttpOnly; SameSite=Lax")
        return "client:" + client_id, cookie

    def choose(self, prefix: str, percent: float, scope: Scope) -> tuple[str, bytes | None]:
        """("go" | "python", Set-Cookie to add or None)."""
        if percent <= 0:
            return "go", None
        if percent >= 100:
            return "python", None
        identity, cookie = self.identify(scope)
        return ("python" if bucket(prefix, identity) < percent else "go"), cookie

    @staticmethod
    def for_user(prefix: str, percent: float, email: str) -> str:
        """Which side a signed-in user gets (explain --user)."""
        if percent <= 0:
            return "go"
        if percent >= 100:
            return "python"
        return "python" if bucket(prefix, "user:" + email) < percent else "go"
