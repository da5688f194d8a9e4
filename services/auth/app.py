"""The legacy auth and users routes (contract, "Routes"), served in-process."""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from services.common.cookies import format_set_cookie, get_cookie
from services.common.db import Database, DuplicateError, get_database, rfc3339
from services.common.echo_router import EchoRoute, EchoRouter
from services.common.protect import LegacyProtection
from services.common.responses import error_response, json_response
from services.common.session_codec import COOKIE_NAME as SESSION_COOKIE
from services.common.session_codec import SessionCodec
from services.common.settings import Settings, get_settings

from . import passwords
from .binding import BindError, bind_credentials, validate_sign_in
from .limiter import SignInLimiter
from .limiter_store import limiter_for

log = logging.getLogger(__name__)

SESSION_MAX_AGE = 2592000
SIGNED_OUT_EXPIRES = 1  # time.Unix(1, 0): "Thu, 01 Jan 1970 00:00:01 GMT"
_GO_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


class AuthService:
    """Handlers with their dependencies; every one is injectable for tests."""

    def __init__(
        self,
        *,
        db: Database | Callable[[], Database] = get_database,
        codec: SessionCodec | None = None,
        settings: Callable[[], Settings] = get_settings,
        limiter: SignInLimiter | None = None,
        clock: Callable[[], float] = time.time,
        bcrypt_cost: int = passwords.DEFAULT_COST,
    ) -> None:
        self._db = db
        self._codec = codec
        self._settings = settings
        # Counters kept beside the database (limiter_store.py): in PostgreSQL
        # for every replica, in a file of their own next to SQLite.
        self.limiter = limiter or limiter_for(lambda: self.db)
        self.clock = clock
        self.bcrypt_cost = bcrypt_cost

    @property
    def db(self) -> Database:
        return self._db if isinstance(self._db, Database) else self._db()

    @property
    def codec(self) -> SessionCodec:
        return self._codec or self._settings().session_codec

    # --- helpers ----------------------------------------------------------

    async def _hash(self, password: str) -> str:
        return await run_in_threadpool(passwords.hash_password, password, self.bcrypt_cost)

    def _session_cookie(self, value: str, now: float) -> str:
        return format_set_cookie(
            SESSION_COOKIE, value, path="/", domain=self._settings().cookie_domain,
            expires=now + SESSION_MAX_AGE, max_age=SESSION_MAX_AGE,
            http_only=True, secure=True, same_site="Strict",
        )

    # --- /sign-in, /sign-out, /auth-test, /csrf -----------------------------

    async def sign_in(self, request: Request) -> Response:
        try:
            creds = await bind_credentials(request, "SigninRequest")
        except BindError as exc:
            return error_response(400, str(exc))
        problem = validate_sign_in(creds)
        if problem:
            return error_response(400, problem)

        # The client as the gateway derived it: the forwarded client when the
        # socket peer is a trusted proxy (gateway/edge/client.py).
        ip = request.client.host if request.client else ""
        # Counted *before* the bcrypt check, and given back on success:
        # otherwise a burst of concurrent guesses would all pass the check
        # while the first ones are still hashing.
        wait = await run_in_threadpool(self.limiter.attempt, creds.email, ip)
        if wait:
            return error_response(
                429, f"Too many failed sign-in attempts; try again in {wait} seconds",
                headers=[("Retry-After", str(wait))],
            )
        db = self.db
        user = await db.run(db.get_user_by_email, creds.email)
        if user is None:
            await run_in_threadpool(passwords.burn_time, creds.password)
            ok = False
        else:
            ok = await run_in_threadpool(passwords.check_password, user.password_hash, creds.password)
        if user is None or not ok:
            return error_response(401, "invalid credentials")
        await run_in_threadpool(self.limiter.success, creds.email, ip)

        now = self.clock()
        values: dict[str, str] = {}
        existing = get_cookie(request.scope, SESSION_COOKIE)
        if existing is not None:
            decoded = self.codec.decode_values(existing, now)
            if decoded is None:
                return error_response(500, "failed to get session")
            values = decoded
        values["userEmail"] = user.email
        try:
            value = self.codec.encode_values(values, now)
        except ValueError:
            return error_response(500, "failed to save session")
        return json_response({"message": "signed in"},
                             headers=[("Set-Cookie", self._session_cookie(value, now))])

    async def sign_out(self, request: Request) -> Response:
        value = self.codec.encode_values({}, self.clock())
        cookie = format_set_cookie(
            SESSION_COOKIE, value, path="/", expires=SIGNED_OUT_EXPIRES, max_age=-1,
            secure=True, same_site="None",
        )
        return json_response({"message": "signed out"}, headers=[("Set-Cookie", cookie)])

    async def auth_test(self, request: Request) -> Response:
        return json_response({"userEmail": request.state.user_email})

    async def csrf(self, request: Request) -> Response:
        return json_response({"csrfToken": request.state.csrf_token})

    # --- /users -------------------------------------------------------------

    async def db_has_users(self, request: Request) -> Response:
        db = self.db
        try:
            exists = await db.run(db.has_users)
        except Exception:
            log.exception("db-has-users failed")
            return json_response({"error": "Failed to fetch user existence"}, 500)
        return json_response({"usersExist": exists})

    async def create_first_user(self, request: Request) -> Response:
        try:
            creds = await bind_credentials(request, "CreateUserRequest")
        except BindError as exc:
            return error_response(400, str(exc))
        db = self.db
        exists_msg = {"error": "Users already exist, cannot create first user."}
        try:
            if await db.run(db.has_users):
                return json_response(exists_msg, 400)
        except Exception:
            log.exception("create-first-user: existence check failed")
            return json_response({"error": "Failed check authorization for first user creation."}, 500)
        try:
            hashed = await self._hash(creds.password)
        except ValueError:
            return json_response({"error": "Failed to hash password"}, 500)
        try:
            created = await db.run(db.create_first_user, creds.email, hashed)
        except Exception:
            log.exception("create-first-user: insert failed")
            return json_response({"error": "Failed to create first user"}, 500)
        if created is None:  # another request won the race
            return json_response(exists_msg, 400)
        return json_response({"message": "First user created successfully"})

    async def create_user(self, request: Request) -> Response:
        try:
            creds = await bind_credentials(request, "CreateUserRequest")
        except BindError as exc:
            return error_response(400, str(exc))
        try:
            hashed = await self._hash(creds.password)
        except ValueError:
            return json_response({"error": "Failed to hash password"}, 500)
        db = self.db
        try:
            await db.run(db.create_user, creds.email, hashed)
        except DuplicateError:
            return json_response({"error": "A user with this email already exists"}, 409)
        except Exception:
            log.exception("create user failed")
            return json_response({"error": "Failed to create user"}, 500)
        return json_response({"message": "User created successfully"})

    async def list_users(self, request: Request) -> Response:
        db = self.db
        try:
            users = await db.run(db.list_users)
        except Exception:
            log.exception("list users failed")
            return json_response({"error": "Failed to list users"}, 500)
        return json_response(
            [{"ID": u.id, "Email": u.email, "CreatedAt": rfc3339(u.created_at)} for u in users]
        )

    async def delete_user(self, request: Request) -> Response:
        raw = request.path_params["id"]
        if not _GO_INT_RE.match(raw) or not -(2**63) <= int(raw) < 2**63:
            return error_response(400, "Invalid user ID format")
        db = self.db
        try:
            await db.run(db.delete_user, int(raw))
        except Exception:
            log.exception("delete user failed")
            return json_response({"error": "Failed to delete user"}, 500)
        return json_response({"message": "User deleted successfully"})

    # --- wiring ---------------------------------------------------------------

    def router(self) -> EchoRouter:
        return EchoRouter([
            EchoRoute("/sign-in", {"POST": self.sign_in}),
            EchoRoute("/sign-out", {"POST": self.sign_out}),
            EchoRoute("/auth-test", {"GET": self.auth_test}),
            EchoRoute("/csrf", {"GET": self.csrf}),
            EchoRoute("/users/db-has-users", {"GET": self.db_has_users}),
            EchoRoute("/users/create-first-user", {"POST": self.create_first_user}),
            EchoRoute("/users", {"GET": self.list_users, "POST": self.create_user}),
            EchoRoute("/users/:id", {"DELETE": self.delete_user}),
        ])


def create_app(**options) -> LegacyProtection:
    """The auth feature as one ASGI app (legacy CSRF + Auth around the routes).

    ``options`` go to :class:`AuthService`; ``codec`` and ``clock`` are shared
    with the protection layer.
    """
    service = AuthService(**options)
    protection = LegacyProtection(
        service.router(),
        codec=options.get("codec"),
        clock=options.get("clock", time.time),
        settings=options.get("settings", get_settings),
    )
    protection.service = service  # type: ignore[attr-defined]  # handy in tests
    return protection
