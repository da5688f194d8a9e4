"""Valid configurations an operator most likely did not mean: logged loudly, shown in health.

A warning never rejects a file (the legacy itself runs this way); it is
logged at start and at every reload that keeps it, listed in
``/_gateway/health`` (the short ``code`` for anyone, the ``detail`` with the
admin token) and printed by ``gateway check``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .models import GatewayConfig

CORS_ANY_ORIGIN = "cors_any_origin"


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    code: str  # short and stable: what anyone may see, what alerts match on
    detail: str  # what it means and what to do: the log and the admin view


def config_warnings(config: GatewayConfig) -> tuple[ConfigWarning, ...]:
    """Every warning ``config`` deserves, in a stable order."""
    found = [_cors_any_origin(config)]
    return tuple(w for w in found if w is not None)


def _cors_any_origin(config: GatewayConfig) -> ConfigWarning | None:
    """CORS reflects every origin because the variable naming the origins is empty or unset.

    ``allow_origins`` written out can't be empty (the schema wants one origin
    at least), so an empty list always means the variable was forgotten:
    the legacy's development default, left on by omission."""
    cors = config.cors
    if cors is None or cors.origins:
        return None
    name = cors.allow_origins_env or "cors.allow_origins"
    if cors.allow_credentials:
        means = ("every origin is reflected with credentials: any web site can call this API with its visitors' "
                 "cookies (the legacy's development default; only the 'null' origin is refused)")
    else:
        means = "every origin is reflected: any web site can read this API's answers (the legacy's default)"
    return ConfigWarning(CORS_ANY_ORIGIN, (
        f"CORS is open to ANY origin: routes.yaml's cors.allow_origins_env names ${name}, which is empty or unset, "
        f"so {means}. In production set {name} to the frontend's origin(s), e.g. "
        f"{name}=https://app.example.com (docs/deploy.md)."))
