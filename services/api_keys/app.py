"""The legacy ``/api_keys`` routes (contract, "Routes"), served in-process.

* ``POST /api_keys`` ``{"name"}``: 201 ``{"ID","Key","Name","CreatedAt"}``;
  400 ``{"message":"Invalid request body: …"}`` or ``{"message":"Validation failed: …"}``;
  500 ``{"message":"Failed to save API key"}``.
* ``GET /api_keys``: 200 ``[…]`` newest first (``[]`` when empty);
  500 ``{"message":"Failed to retrieve API keys"}``.
* ``DELETE /api_keys/:key``: 204 (no body); 404 ``{"message":"API key not found"}``;
  500 ``{"message":"Failed to delete API key"}``.

IDs are ``gonanoid.New()`` (21 chars of ``_-0-9a-zA-Z``), keys
``gonanoid.Generate(alphanumeric, 64)``, both from :mod:`secrets`.
"""
from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from services.common.db import ApiKey, Database, get_database, rfc3339
from services.common.echo_router import EchoRoute, EchoRouter
from services.common.gobind import STRING, BindError, Struct, bind_request
from services.common.protect import LegacyProtection
from services.common.responses import error_response, json_response
from services.common.settings import Settings, get_settings

log = logging.getLogger(__name__)

# go-nanoid v2.1.0's defaultAlphabet and defaultSize (gonanoid.New()).
NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NANOID_SIZE = 21
# The legacy's generateSecureKey(64) alphabet.
KEY_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
KEY_SIZE = 64

# type CreateAPIKeyRequest struct { Name string `json:"name" validate:"required"` }
# in the legacy's package api_keys (the Go stand-in's is package main).
CREATE_REQUEST = Struct("CreateAPIKeyRequest", "api_keys", (("Name", "name", STRING),))
MSG_REQUIRED = ("Key: 'CreateAPIKeyRequest.Name' Error:Field validation for 'Name' "
                "failed on the 'required' tag")


def new_id() -> str:
    """``gonanoid.New()``: 21 characters, uniform over the default alphabet."""
    return "".join(secrets.choice(NANOID_ALPHABET) for _ in range(NANOID_SIZE))


def new_key() -> str:
    """``gonanoid.Generate(alphanumeric, 64)``."""
    return "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_SIZE))


def key_json(k: ApiKey) -> dict:
    """The sqlc ``ApiKey`` struct as ``encoding/json`` writes it (field order kept)."""
    return {"ID": k.id, "Key": k.key, "Name": k.name, "CreatedAt": rfc3339(k.created_at)}


def _db_error(exc: BaseException) -> str:
    """The driver's own message, never SQLAlchemy's text (it echoes the bound
    parameters, i.e. the API key)."""
    orig = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {orig if orig is not None else type(exc).__name__}"


class ApiKeysService:
    """Handlers with their dependencies; all injectable for tests."""

    def __init__(
        self,
        *,
        db: Database | Callable[[], Database] = get_database,
        id_factory: Callable[[], str] = new_id,
        key_factory: Callable[[], str] = new_key,
    ) -> None:
        self._db = db
        self.id_factory = id_factory
        self.key_factory = key_factory

    @property
    def db(self) -> Database:
        return self._db if isinstance(self._db, Database) else self._db()

    async def create(self, request: Request) -> Response:
        try:
            bound = await bind_request(request, CREATE_REQUEST)
        except BindError as exc:
            return error_response(400, f"Invalid request body: {exc}")
        name = bound["Name"]
        if name == "":
            return error_response(400, f"Validation failed: {MSG_REQUIRED}")
        key, key_id = self.key_factory(), self.id_factory()
        db = self.db
        try:
            created = await db.run(db.create_api_key, key_id, key, name)
        except Exception as exc:  # DuplicateError included: Go answers the same 500
            log.error("failed to create API key in database: %s", _db_error(exc))
            return error_response(500, "Failed to save API key")
        return json_response(key_json(created), 201)

    async def list(self, request: Request) -> Response:
        db = self.db
        try:
            keys = await db.run(db.list_api_keys)
        except Exception as exc:
            log.error("failed to list API keys: %s", _db_error(exc))
            return error_response(500, "Failed to retrieve API keys")
        return json_response([key_json(k) for k in keys])

    async def delete(self, request: Request) -> Response:
        key = request.path_params["key"]
        db = self.db
        try:
            if await db.run(db.get_api_key, key) is None:
                return error_response(404, "API key not found")
            await db.run(db.delete_api_key, key)
        except Exception as exc:
            log.error("failed to delete API key: %s", _db_error(exc))
            return error_response(500, "Failed to delete API key")
        return Response(status_code=204)

    def router(self) -> EchoRouter:
        return EchoRouter([
            EchoRoute("/api_keys", {"GET": self.list, "POST": self.create}),
            EchoRoute("/api_keys/:key", {"DELETE": self.delete}),
        ])


def create_app(*, settings: Callable[[], Settings] = get_settings, codec=None,
               clock: Callable[[], float] = time.time, **options) -> LegacyProtection:
    """The api_keys feature as one ASGI app (legacy CSRF + Auth around the routes).

    ``options`` go to :class:`ApiKeysService`; ``settings``, ``codec`` and
    ``clock`` to the protection layer.
    """
    service = ApiKeysService(**options)
    protection = LegacyProtection(service.router(), codec=codec, clock=clock, settings=settings)
    protection.service = service  # type: ignore[attr-defined]  # handy in tests
    return protection
