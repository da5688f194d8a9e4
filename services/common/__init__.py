"""What every Python feature module shares to behave like the legacy Go backend.

* :func:`protect` — wrap a feature's ASGI app in the legacy CSRF + Auth
  middleware (signed-in email in ``request.state.user_email``, CSRF token in
  ``request.state.csrf_token``).
* :func:`json_response` / :func:`error_response` / :func:`go_json` — Echo's
  ``c.JSON`` bytes and ``{"message": ...}`` errors.
* :class:`SessionCodec` — the gorilla ``session`` cookie.
* :func:`get_database` / :class:`Database` — the shared legacy SQLite.
* :func:`get_settings` — environment (JUNJO_SESSION_SECRET, ...).
"""
from .cookies import format_set_cookie, get_cookie, http_date
from .csrf import CsrfTokens, csrf_set_cookie
from .db import ApiKey, Database, DuplicateError, User, close_database, get_database, rfc3339, set_database
from .protect import PUBLIC_PATHS, LegacyProtection, protect
from .responses import error_response, go_json, json_response
from .session_codec import SessionCodec
from .settings import Settings, SettingsError, get_settings, reset_settings, settings_from_env

__all__ = [
    "ApiKey", "close_database", "CsrfTokens", "Database", "DuplicateError", "LegacyProtection",
    "PUBLIC_PATHS", "SessionCodec", "Settings", "SettingsError", "User", "csrf_set_cookie", "error_response",
    "format_set_cookie", "get_cookie", "get_database", "get_settings", "go_json", "http_date",
    "json_response", "protect", "reset_settings", "rfc3339", "set_database", "settings_from_env",
]
