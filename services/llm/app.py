"""``POST /llm/generate``: the legacy Gemini proxy, served in-process.

What the Go handler does, step by step (checked against the Go stand-in):

1. ``c.Bind`` into the legacy ``GeminiRequest`` struct; any bind error → 400
   ``{"error":"<err.Error()>"}``, Echo's text, e.g. ``code=400, message=unexpected
   EOF, internal=unexpected EOF`` or ``code=415, message=Unsupported Media Type``.
2. Only then: ``GEMINI_API_KEY`` unset → 500
   ``{"error":"GEMINI_API_KEY environment variable is not set"}``.
3. ``model`` defaults to ``gemini-2.5-flash``; the struct is re-marshalled
   (unknown fields dropped, Go's ``omitempty`` rules, ``"contents":null`` when
   absent) and POSTed to ``{base}/v1beta/models/{model}:generateContent`` with
   ``Content-Type: application/json`` and ``x-goog-api-key`` (the key is
   never put in the URL).
4. The provider's body comes back **verbatim with status 200, whatever the
   provider's status**, as ``Content-Type: application/json``.
5. A transport error → 500 ``{"error":"Post \\"<url>\\": <reason>"}``.

Deliberate differences: the provider call is bounded by
``LLM_TIMEOUT_SECONDS`` (default 60; Go has no timeout) and a timeout answers
504 ``{"error": ...}``; redirects are not followed (Go's client would follow
them and re-send ``x-goog-api-key`` to another host), so a 3xx body is passed
through like any other status.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from services.common.echo_router import EchoRoute, EchoRouter
from services.common.gobind import FLOAT64, INT, STRING, BindError, Ptr, Slice, Struct, bind_request
from services.common.protect import LegacyProtection
from services.common.responses import go_json, json_response
from services.common.settings import LlmSettings, Settings, get_llm_settings, get_settings

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-2.5-flash"
MSG_NO_KEY = "GEMINI_API_KEY environment variable is not set"
MIME_JSON = "application/json"

# The legacy's schemas.go (package llm).
_PART = Struct("GeminiPart", "llm", (("Text", "text", STRING),))
_CONTENT = Struct("GeminiContent", "llm", (("Role", "role", STRING), ("Parts", "parts", Slice(_PART))))
_GEN_CONFIG = Struct("GenerationConfig", "llm", (
    ("StopSequences", "stopSequences", Slice(STRING)),
    ("ResponseMimeType", "responseMimeType", STRING),
    ("Temperature", "temperature", FLOAT64),
    ("TopP", "topP", FLOAT64),
    ("TopK", "topK", INT),
))
_SYSTEM = Struct("SystemInstruction", "llm", (("Parts", "parts", Slice(_PART)),))
GEMINI_REQUEST = Struct("GeminiRequest", "llm", (
    ("Model", "model", STRING),
    ("Contents", "contents", Slice(_CONTENT)),
    ("GenerationConfig", "generationConfig", Ptr(_GEN_CONFIG)),
    ("SystemInstruction", "system_instruction", Ptr(_SYSTEM)),
))


def llm_settings_from_env(environ: Mapping[str, str] | None = None) -> LlmSettings:
    """GEMINI_API_KEY, GEMINI_BASE_URL, LLM_TIMEOUT_SECONDS (services/common/settings.py)."""
    return LlmSettings.from_env(environ)


def reset_llm_settings() -> None:
    get_llm_settings.cache_clear()


# --- the provider body, as json.Marshal(GeminiRequest) writes it ---------------

def _parts(parts: list | None) -> list | None:
    return None if parts is None else [{"text": p["Text"]} for p in parts]


def provider_body(req: dict[str, Any]) -> bytes:
    out: dict[str, Any] = {}
    if req["Model"]:
        out["model"] = req["Model"]
    contents = req["Contents"]
    if contents is None:
        out["contents"] = None
    else:
        out["contents"] = []
        for c in contents:
            item: dict[str, Any] = {}
            if c["Role"]:
                item["role"] = c["Role"]
            item["parts"] = _parts(c["Parts"])
            out["contents"].append(item)
    gc = req["GenerationConfig"]
    if gc is not None:
        g: dict[str, Any] = {}
        if gc["StopSequences"]:
            g["stopSequences"] = gc["StopSequences"]
        if gc["ResponseMimeType"]:
            g["responseMimeType"] = gc["ResponseMimeType"]
        if gc["Temperature"] != 0:
            g["temperature"] = gc["Temperature"]
        if gc["TopP"] != 0:
            g["topP"] = gc["TopP"]
        if gc["TopK"] != 0:
            g["topK"] = gc["TopK"]
        out["generationConfig"] = g
    si = req["SystemInstruction"]
    if si is not None:
        out["system_instruction"] = {"parts": _parts(si["Parts"])}
    return go_json(out)


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class LlmService:
    """The handler with its dependencies; all injectable for tests.

    One ``httpx.AsyncClient`` per service (per process), created on first use;
    it only talks to the provider, so it keeps no cookies that matter.
    """

    def __init__(
        self,
        *,
        llm_settings: Callable[[], LlmSettings] = get_llm_settings,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = llm_settings
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(self._settings().timeout),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def generate(self, request: Request) -> Response:
        # Go binds first and checks the key only then: a bad body is a 400
        # carrying Echo's err.Error() text, with or without a key.
        try:
            req = await bind_request(request, GEMINI_REQUEST)
        except BindError as exc:
            return _error(400, str(exc))
        settings = self._settings()
        if not settings.api_key:
            return _error(500, MSG_NO_KEY)
        if not req["Model"]:
            req["Model"] = DEFAULT_MODEL
        payload = provider_body(req)
        url = settings.base_url.rstrip("/") + "/v1beta/models/" + req["Model"] + ":generateContent"
        try:
            outgoing = self.client.build_request(
                "POST", url, content=payload,
                headers={"Content-Type": MIME_JSON, "x-goog-api-key": settings.api_key},
                timeout=httpx.Timeout(settings.timeout),
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            return _error(500, f'parse "{url}": {exc}')
        started = time.monotonic()
        try:
            async with asyncio.timeout(settings.timeout):
                resp = await self.client.send(outgoing)
                try:
                    raw = await resp.aread()
                finally:
                    await resp.aclose()
        except (TimeoutError, httpx.TimeoutException):
            log.warning("LLM provider timed out after %.1f s (POST %s)", time.monotonic() - started, url)
            return _error(504, f'Post "{url}": the LLM provider did not answer within '
                               f'{settings.timeout:g} seconds (LLM_TIMEOUT_SECONDS)')
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("LLM provider request failed (POST %s): %s", url, reason)
            return _error(500, f'Post "{url}": {reason}')
        if resp.status_code != 200:
            log.info("LLM provider answered %s for POST %s (passed through as 200)", resp.status_code, url)
        return Response(raw, status_code=200, media_type=MIME_JSON)

    def router(self) -> EchoRouter:
        return EchoRouter([EchoRoute("/llm/generate", {"POST": self.generate})])


def create_app(*, settings: Callable[[], Settings] = get_settings, codec=None,
               clock: Callable[[], float] = time.time, service: LlmService | None = None,
               **options) -> LegacyProtection:
    """The llm feature as one ASGI app (legacy CSRF + Auth around the route).

    ``options`` go to a new :class:`LlmService` unless ``service`` is given;
    ``settings``, ``codec`` and ``clock`` to the protection layer.
    """
    if service is None:
        service = LlmService(**options)
    protection = LegacyProtection(service.router(), codec=codec, clock=clock, settings=settings)
    protection.service = service  # type: ignore[attr-defined]  # handy in tests
    return protection
