"""The routes.yaml schema: frozen pydantic v2 models, unknown keys forbidden.

Frozen models are immutable and hashable: the forwarder pool keys on
``(legacy, trusted_proxies)``, canary rollbacks key on route specs, and a
table built from them can be shared by every request without copying.

Numbers, booleans and strings are *strict* (YAML already types them: ``5`` is
an int, ``"5"`` a string), so ``read_timeout: "5"`` or ``writes: 1`` are
errors rather than silently coerced; lists stay lax so YAML sequences become
tuples. Each field carries a description: they end up in the JSON Schema that
``gateway schema`` prints for editors.

A few fields are the gateway's own, never written in the file (the route's
``line``, the config's ``source`` and ``version``): they are ``exclude``-d and
hidden from the schema, and config.py refuses them as unknown keys.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from gateway.redact import redact_url

DEFAULT_STATES = ("go", "python")  # what `default:` may be
ROUTE_STATES = ("go", "python", "shadow", "canary")  # what a route's `to:` may be
NEEDS_PYTHON = frozenset({"python", "shadow", "canary"})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
RESERVED_PREFIX = "/_gateway"
DEFAULT_PREFIX = "*"  # the default route's prefix: below every other route

# Caps on list lengths (issue 14: a 1,000,000-item `methods` stalled serving for
# 22 s). config.py enforces them on the raw YAML before validation, so an
# oversized list costs one error, not one per item.
MAX_ROUTES = 1000
MAX_TRUSTED_PROXIES = 1000
MAX_METHODS = 16
MAX_DIFF_PATHS = 100  # per list: diff.ignore, diff.unordered, diff.headers
MAX_ORIGINS = 100
MAX_CORS_HEADERS = 100

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token: header names, methods
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s@]+$")


# -- value checks (each raises ValueError with the message users read) ---------
def check_url(url: str) -> str:
    """An http(s) base URL, without a trailing slash."""
    parts = urlsplit(url)
    shown = redact_url(url)  # the message reaches logs, health and the CLI
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {shown!r}")
    try:
        _ = parts.port  # urlsplit checks the port only when asked for it
    except ValueError:
        raise ValueError(f"URL has an invalid port: {shown!r}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"URL must not carry a query or fragment: {shown!r}")
    return url.rstrip("/")


def check_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        raise ValueError(f"prefix must start with '/', got {prefix!r}")
    if prefix != "/" and prefix.endswith("/"):
        raise ValueError(f"prefix must not end with '/' (write {prefix.rstrip('/')!r})")
    if "//" in prefix or any(seg in (".", "..") for seg in prefix.split("/")):
        raise ValueError(f"prefix must not contain empty, '.' or '..' segments: {prefix!r}")
    if any(c in prefix for c in "?#%\\ ") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        raise ValueError(f"prefix must be a plain path (no '?', '#', '%', '\\', spaces): {prefix!r}")
    if prefix == RESERVED_PREFIX or prefix.startswith(RESERVED_PREFIX + "/"):
        raise ValueError(f"{RESERVED_PREFIX}/ is the gateway's own admin surface and cannot be routed")
    return prefix


def check_origin(origin: str) -> str:
    """``scheme://host[:port]``, as browsers send it in ``Origin`` (compared exactly)."""
    if origin.endswith("/") and _ORIGIN.match(origin.rstrip("/")):
        raise ValueError(f"an origin has no path: write {origin.rstrip('/')!r}")
    if not _ORIGIN.match(origin):
        raise ValueError(f"not an origin such as 'https://app.example' or 'http://localhost:5153': {origin!r}")
    return origin


def _method(value: str) -> str:
    if value not in HTTP_METHODS:
        raise ValueError(f"unknown HTTP method {value!r}")
    return value


def _upper_all(value: Any) -> Any:
    """Method names are case-insensitive in routes.yaml (``[post]`` is POST)."""
    return [v.upper() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


def _token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"not a valid header name: {value!r}")
    return value


def _json_path(value: str) -> str:
    from gateway.migration.jsonpath import parse_json_path

    parse_json_path(value)  # raises ValueError naming what is wrong
    return value


def _proxy(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR network: {value!r}") from None
    return value


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(f"must be the name of an environment variable, such as JUNJO_ALLOW_ORIGINS: {value!r}")
    return value


def _ready_path(value: str) -> str:
    if not value.startswith("/") or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value) or "#" in value:
        raise ValueError(f"must be a path such as /ping (starting with '/', no spaces): {value!r}")
    return value


# -- field types -----------------------------------------------------------------
Seconds = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Size = Annotated[int, Field(strict=True, gt=0)]
Flag = Annotated[bool, Field(strict=True)]
Text = Annotated[str, Field(strict=True, min_length=1)]
Method = Annotated[str, Field(strict=True), AfterValidator(_method)]
Methods = Annotated[frozenset[Method], BeforeValidator(_upper_all), Field(min_length=1, max_length=MAX_METHODS)]
JsonPath = Annotated[str, Field(strict=True, min_length=1), AfterValidator(_json_path)]
HeaderName = Annotated[str, Field(strict=True, min_length=1), AfterValidator(_token)]
Origin = Annotated[str, Field(strict=True), AfterValidator(check_origin)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegacyConfig(_Model):
    """The legacy backend and the connection pool to it."""

    url: Annotated[str, Field(strict=True), AfterValidator(check_url)] = Field(
        default="http://localhost:1323", description="The legacy backend's base URL (env LEGACY_URL overrides).")
    connect_timeout: Seconds = Field(default=2.0, description="Seconds to open a connection to the backend.")
    read_timeout: Seconds = Field(default=60.0,
                                  description="Seconds to wait for response headers / between body chunks.")
    pool_size: Size = Field(default=512, description="Upstream keep-alive connections at most.")
    ready_path: Annotated[str, Field(strict=True), AfterValidator(_ready_path)] = Field(
        default="/", description="GET here answering below 500 means the backend is ready (/_gateway/ready).")
    total_timeout: Seconds | None = Field(
        default=None, description="Seconds for a whole upstream exchange (headers + body); null = no limit.")
    body_pool_share: Annotated[float, Field(strict=True, gt=0, le=1)] = Field(
        default=0.5, description="Requests with a body may hold at most this fraction of pool_size connections.")


class CorsConfig(_Model):
    """CORS answered at the edge. Without a ``cors:`` block the gateway adds none."""

    allow_origins: Annotated[tuple[Origin, ...], Field(min_length=1, max_length=MAX_ORIGINS)] | None = Field(
        default=None, description="Origins allowed, compared exactly. Or use allow_origins_env.")
    allow_origins_env: Annotated[str, Field(strict=True), AfterValidator(_env_name)] | None = Field(
        default=None, description="Environment variable holding a comma-separated origin list, read at load; "
                          "empty or unset = reflect any origin (the legacy's default).")
    allow_methods: Annotated[tuple[Method, ...], BeforeValidator(_upper_all),
                             Field(min_length=1, max_length=MAX_METHODS)] = Field(
        default=("GET", "POST", "PUT", "DELETE", "OPTIONS"), description="Access-Control-Allow-Methods of a preflight.")
    allow_headers: Annotated[tuple[HeaderName, ...], Field(max_length=MAX_CORS_HEADERS)] = Field(
        default=("Origin", "Content-Type", "Accept", "X-CSRF-Token"),
        description="Access-Control-Allow-Headers of a preflight; empty = echo the request's.")
    allow_credentials: Flag = Field(default=True, description="Send Access-Control-Allow-Credentials: true.")
    answer_every_options: Flag = Field(
        default=True, description="Echo's behaviour: answer every OPTIONS with 204 here; false = only preflights "
                          "(OPTIONS + Origin + Access-Control-Request-Method).")

    @model_validator(mode="after")
    def _one_origin_source(self) -> CorsConfig:
        if self.allow_origins is not None and self.allow_origins_env is not None:
            raise ValueError("give allow_origins or allow_origins_env, not both")
        if self.allow_origins is None and self.allow_origins_env is None:
            raise ValueError("needs allow_origins (a list of origins) or allow_origins_env (the name of an "
                             "environment variable holding them, comma-separated)")
        return self

    @property
    def origins(self) -> tuple[str, ...]:
        """The origins in force (after load, env ones included); empty = any origin."""
        return self.allow_origins or ()


class LimitsConfig(_Model):
    """Protocol limits at the edge (nginx/Envoy-like defaults)."""

    request_line: Size = Field(default=8192, description="Bytes of the request line.")
    header_line: Size = Field(default=8192, description="Bytes of one request header field.")
    header_count: Size = Field(default=100, description="Request header fields.")
    head_size: Size = Field(default=32768, description="Bytes of the whole request head.")
    head_timeout: Seconds = Field(default=10.0, description="Seconds to receive a whole request head.")
    body_idle_timeout: Seconds = Field(default=30.0, description="Seconds without a request body byte.")
    keepalive_timeout: Seconds = Field(default=5.0, description="Seconds an idle client connection stays open.")
    send_timeout: Seconds = Field(default=60.0, description="Seconds a client may read none of its answer.")
    max_connections: Size = Field(default=4096, description="Client connections per worker.")
    upstream_head_size: Size = Field(default=65536, description="Bytes of an upstream response head.")
    upstream_header_count: Size = Field(default=200, description="Upstream response header fields.")
    python_body: Size = Field(default=1048576, description="Bytes of request body into a Python route (413 beyond).")


class ShadowSpec(_Model):
    """How a `shadow` route replays to Python (all optional in routes.yaml)."""

    writes: Flag = Field(default=False, description="Replay unsafe methods too; Python runs them in dry-run mode.")
    noise: Flag = Field(default=False, description="Replay safe requests to Go twice and discount fields that differ.")
    sample: Annotated[float, Field(strict=True, ge=0, le=1)] = Field(default=1.0, description="Fraction replayed.")
    timeout: Seconds = Field(default=5.0, description="Seconds a replay may take before it counts as a Python error.")


class DiffSpec(_Model):
    ignore: Annotated[tuple[JsonPath, ...], Field(max_length=MAX_DIFF_PATHS)] = Field(
        default=(), description='JSON paths that legitimately differ ("$[*].ID").')
    unordered: Annotated[tuple[JsonPath, ...], Field(max_length=MAX_DIFF_PATHS)] = Field(
        default=(), description="JSON paths of arrays compared as multisets.")
    headers: Annotated[tuple[Annotated[HeaderName, AfterValidator(str.lower)], ...],
                       Field(max_length=MAX_DIFF_PATHS)] = Field(
        default=("content-type",), description="Response headers compared.")


class RollbackSpec(_Model):
    """Move a canary back to Go when Python is worse than Go on the same route."""

    max_error_rate_increase: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] = Field(
        default=0.05, description="Python's 5xx rate may exceed Go's by this much.")
    max_p99_ratio: Annotated[float, Field(strict=True, ge=1, allow_inf_nan=False)] = Field(
        default=2.0, description="Python's latency tail may be at most this multiple of Go's.")
    min_requests: Annotated[int, Field(strict=True, ge=1)] = Field(
        default=100, description="Requests per backend before any verdict.")


class RouteSpec(_Model):
    prefix: Annotated[str, Field(strict=True), AfterValidator(check_prefix)] = Field(
        description="Path prefix, matched on segment boundaries (/users covers /users/7).")
    to: Literal["go", "python", "shadow", "canary"] = Field(description="The route's state.")
    methods: Methods | None = Field(default=None, description="Only these methods (default: every method).")
    percent: Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)] = Field(
        default=0.0, description="canary: share of users sent to Python (0-100).")
    shadow: ShadowSpec = Field(default=ShadowSpec(), description="shadow: how requests are replayed to Python.")
    diff: DiffSpec = Field(default=DiffSpec(), description="shadow: how answers are compared.")
    rollback: RollbackSpec | None = Field(default=None, description="canary: move back to Go automatically.")
    max_body: Size | None = Field(
        default=None, description="Bytes of request body into Python for this route (default limits.python_body).")
    line: SkipJsonSchema[int] = Field(default=0, exclude=True)  # where routes.yaml says it (set by the loader)

    @property
    def is_default(self) -> bool:
        return self.prefix == DEFAULT_PREFIX

    def describe_state(self) -> str:
        """``go``, ``python``, ``shadow`` or ``canary 25%``."""
        return f"canary {self.percent:g}%" if self.to == "canary" else self.to

    def describe_methods(self) -> str:
        return ",".join(sorted(self.methods)) if self.methods else "*"


class GatewayConfig(_Model):
    legacy: LegacyConfig = Field(default=LegacyConfig(), description="The legacy backend.")
    default: Literal["go", "python"] = Field(default="go", description="Where paths no route covers go.")
    routes: Annotated[tuple[RouteSpec, ...], Field(max_length=MAX_ROUTES)] = Field(
        default=(), description="Longest prefix wins, then methods.")
    trusted_proxies: Annotated[tuple[Annotated[str, Field(strict=True), AfterValidator(_proxy)], ...],
                               Field(max_length=MAX_TRUSTED_PROXIES)] = Field(
        default=(), description="X-Forwarded-* accepted only from these addresses / CIDR networks.")
    cors: CorsConfig | None = Field(default=None, description="CORS at the edge; absent = none added.")
    limits: LimitsConfig = Field(default=LimitsConfig(), description="Protocol limits (all optional).")
    # The loader's, never the file's:
    source: SkipJsonSchema[str] = Field(default="<defaults>", exclude=True)
    version: SkipJsonSchema[str] = Field(default="", exclude=True)  # sha256 of the file's bytes, 12 hex digits
    default_line: SkipJsonSchema[int] = Field(default=0, exclude=True)

    @property
    def default_route(self) -> RouteSpec:
        """``default:`` as a route: it serves what no prefix covers ("*" is no valid prefix,
        hence built without validation)."""
        return RouteSpec.model_construct(prefix=DEFAULT_PREFIX, to=self.default, line=self.default_line)


def internal_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields the loader sets, which a routes.yaml may not."""
    return frozenset(name for name, info in model.model_fields.items() if info.exclude)


def public_fields(model: type[BaseModel]) -> list[str]:
    return sorted(name for name, info in model.model_fields.items() if not info.exclude)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of routes.yaml, for editors (yaml-language-server)."""
    schema = GatewayConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "routes.yaml",
            "description": "The strangler gateway's route table (see the README's routes.yaml section)."}
