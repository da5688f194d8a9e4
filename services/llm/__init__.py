"""The legacy Gemini proxy, ``POST /llm/generate``.

Forwards the frontend's generateContent request to Gemini with the server's
``GEMINI_API_KEY`` (header ``x-goog-api-key``) and returns the provider's body
verbatim with status 200, as the Go backend does. Env: ``GEMINI_API_KEY``,
``GEMINI_BASE_URL`` (default ``https://generativelanguage.googleapis.com``),
``LLM_TIMEOUT_SECONDS`` (default 60). See docs/migrating-api-keys-and-llm.md.
"""
from services.registry import Service

from .app import (
    GEMINI_REQUEST,
    LlmService,
    LlmSettings,
    create_app,
    get_llm_settings,
    llm_settings_from_env,
    provider_body,
    reset_llm_settings,
)

PREFIXES = ("/llm",)

_LLM = LlmService()
_APP = create_app(service=_LLM)

# shutdown: close the provider client's pooled connections at a graceful stop.
SERVICE = Service(name="llm", prefixes=PREFIXES, app=_APP, shutdown=_LLM.aclose)

__all__ = ["SERVICE", "PREFIXES", "GEMINI_REQUEST", "LlmService", "LlmSettings", "create_app",
           "get_llm_settings", "llm_settings_from_env", "provider_body", "reset_llm_settings"]
