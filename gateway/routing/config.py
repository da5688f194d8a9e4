"""Parse and validate ``routes.yaml`` into frozen dataclasses.

Every problem is reported with the file, the line and the key it concerns, and all
problems are collected before failing, so one ``gateway check`` run shows them all.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import yaml

DEFAULT_STATES = ("go", "python")  # what `default:` may be
ROUTE_STATES = ("go", "python", "shadow", "canary")  # what a route's `to:` may be
NEEDS_PYTHON = frozenset({"python", "shadow", "canary"})
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
RESERVED_PREFIX = "/_gateway"
DEFAULT_PREFIX = "*"  # the default route's prefix: below every other route

TOP_KEYS = {"legacy", "default", "routes", "trusted_proxies"}
LEGACY_KEYS = {"url", "connect_timeout", "read_timeout", "pool_size"}
ROUTE_KEYS = {"prefix", "to", "methods", "percent", "shadow", "diff", "rollback"}
SHADOW_KEYS = {"writes", "noise", "sample", "timeout"}
DIFF_KEYS = {"ignore", "unordered", "headers"}
ROLLBACK_KEYS = {"max_error_rate_increase", "max_p99_ratio", "min_requests"}


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LegacyConfig:
    url: str = "http://localhost:1323"
    connect_timeout: float = 2.0
    read_timeout: float = 60.0
    pool_size: int = 512


@dataclass(frozen=True)
class ShadowSpec:
    """How a `shadow` route replays to Python (all optional in routes.yaml)."""

    writes: bool = False  # replay unsafe methods too; Python runs them in dry-run mode
    noise: bool = False  # replay safe requests to Go twice and discount fields that differ
    sample: float = 1.0  # fraction of requests replayed
    timeout: float = 5.0  # seconds a replay may take before it counts as a Python error


@dataclass(frozen=True)
class DiffSpec:
    ignore: tuple[str, ...] = ()  # JSON paths that legitimately differ ("$[*].ID")
    unordered: tuple[str, ...] = ()  # JSON paths of arrays compared as multisets
    headers: tuple[str, ...] = ("content-type",)


@dataclass(frozen=True)
class RollbackSpec:
    """Move a canary back to Go when Python is worse than Go on the same route."""

    max_error_rate_increase: float = 0.05  # python 5xx rate may exceed go's by this much
    max_p99_ratio: float = 2.0  # python p99 may be at most this multiple of go's
    min_requests: int = 100  # per backend, before any verdict


@dataclass(frozen=True)
class RouteSpec:
    prefix: str
    to: str
    methods: frozenset[str] | None = None  # None = every method
    line: int = 0
    percent: float = 0.0  # canary: share of identities sent to Python
    shadow: ShadowSpec = field(default_factory=ShadowSpec)
    diff: DiffSpec = field(default_factory=DiffSpec)
    rollback: RollbackSpec | None = None  # canary only; None = no automatic rollback

    @property
    def is_default(self) -> bool:
        return self.prefix == DEFAULT_PREFIX

    def describe_state(self) -> str:
        """``go``, ``python``, ``shadow`` or ``canary 25%``."""
        return f"canary {self.percent:g}%" if self.to == "canary" else self.to

    def describe_methods(self) -> str:
        return ",".join(sorted(self.methods)) if self.methods else "*"


@dataclass(frozen=True)
class GatewayConfig:
    legacy: LegacyConfig = field(default_factory=LegacyConfig)
    default: str = "go"
    routes: tuple[RouteSpec, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    source: str = "<defaults>"
    version: str = ""  # sha256 of the file's bytes, first 12 hex digits
    default_line: int = 0

    @property
    def default_route(self) -> RouteSpec:
        """``default:`` as a route: it serves what no prefix covers."""
        return RouteSpec(prefix=DEFAULT_PREFIX, to=self.default, line=self.default_line)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Reader:
    """Walks the YAML node tree so every value keeps the line it came from."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node | None, key: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(Problem(self.file, line, key, message))

    @staticmethod
    def scalar(node: yaml.Node) -> Any:
        return yaml.SafeLoader("").construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, key: str, allowed: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, key, "must be a mapping of key: value")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            name = str(self.scalar(knode))
            where = f"{key}.{name}" if key else name
            if name not in allowed:
                hint = _did_you_mean(name, allowed)
                self.problem(knode, where, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")
                continue
            if name in out:
                self.problem(knode, where, "key given twice")
                continue
            out[name] = (knode, vnode)
        return out

    def number(self, node: yaml.Node, key: str, *, minimum: float, integer: bool = False) -> float | None:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or value < minimum:
            kind = "an integer" if integer else "a number of seconds"
            self.problem(node, key, f"must be {kind} ≥ {minimum}, got {value!r}")
            return None
        return value

    def string(self, node: yaml.Node, key: str) -> str | None:
        value = self.scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if not isinstance(value, str) or not value:
            self.problem(node, key, f"must be a non-empty string, got {value!r}")
            return None
        return value


def _check_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"URL scheme must be http or https, got {url!r}"
    if not parts.hostname:
        return f"URL has no host: {url!r}"
    try:
        parts.port
    except ValueError:
        return f"URL has an invalid port: {url!r}"
    if parts.query or parts.fragment:
        return f"URL must not carry a query or fragment: {url!r}"
    return None


def _check_prefix(prefix: str) -> str | None:
    if not prefix.startswith("/"):
        return f"prefix must start with '/', got {prefix!r}"
    if prefix != "/" and prefix.endswith("/"):
        return f"prefix must not end with '/' (write {prefix.rstrip('/')!r})"
    if "//" in prefix or any(seg in (".", "..") for seg in prefix.split("/")):
        return f"prefix must not contain empty, '.' or '..' segments: {prefix!r}"
    if any(c in prefix for c in "?#%\\ ") or any(ord(c) < 0x20 for c in prefix):
        return f"prefix must be a plain path (no '?', '#', '%', '\\', spaces): {prefix!r}"
    if prefix == RESERVED_PREFIX or prefix.startswith(RESERVED_PREFIX + "/"):
        return f"{RESERVED_PREFIX}/ is the gateway's own admin surface and cannot be routed"
    return None


ServesPrefix = Callable[[str], bool]


def parse_config(
    text: str | bytes,
    file: str = "routes.yaml",
    *,
    serves_prefix: ServesPrefix | None = None,
    env: dict[str, str] | None = None,
    dry_run_ok: ServesPrefix | None = None,
) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from YAML text or raise :class:`ConfigError`.

    ``serves_prefix(prefix)`` says whether a Python service module serves that
    prefix; ``python`` routes no module serves are rejected.
    """
    env = os.environ if env is None else env
    raw = text.encode() if isinstance(text, str) else text
    r = _Reader(file)
    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, 1, "<file>", f"not UTF-8 text: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, line, "<yaml>", f"invalid YAML: {reason}")]) from None
    if root is None:
        raise ConfigError([Problem(file, 1, "<file>", "file is empty; expected at least 'routes:'")])

    top = r.mapping(root, "", TOP_KEYS)
    legacy = _parse_legacy(r, top.get("legacy"), env)
    default, default_line = "go", 0
    if "default" in top:
        _, dnode = top["default"]
        default_line = dnode.start_mark.line + 1
        value = r.scalar(dnode) if isinstance(dnode, yaml.ScalarNode) else None
        if value not in DEFAULT_STATES:
            r.problem(dnode, "default", f"unknown state {value!r}{_did_you_mean(str(value), DEFAULT_STATES)}; expected one of: {', '.join(DEFAULT_STATES)}")
        elif value == "python" and serves_prefix is not None and not serves_prefix("/"):
            r.problem(dnode, "default", "no Python service serves every path; the default must be 'go'")
        else:
            default = value

    trusted: tuple[str, ...] = ()
    if "trusted_proxies" in top:
        trusted = _parse_trusted(r, top["trusted_proxies"][1])

    routes: list[RouteSpec] = []
    if "routes" in top:
        routes = _parse_routes(r, top["routes"][1], serves_prefix, dry_run_ok)

    if r.problems:
        raise ConfigError(r.problems)
    return GatewayConfig(
        legacy=legacy,
        default=default,
        default_line=default_line,
        routes=tuple(routes),
        trusted_proxies=trusted,
        source=file,
        version=hashlib.sha256(raw).hexdigest()[:12],
    )


def _parse_legacy(r: _Reader, item: tuple[yaml.Node, yaml.Node] | None, env: dict[str, str]) -> LegacyConfig:
    values: dict[str, Any] = {}
    if item is not None:
        fields = r.mapping(item[1], "legacy", LEGACY_KEYS)
        if "url" in fields:
            node = fields["url"][1]
            url = r.string(node, "legacy.url")
            if url is not None:
                err = _check_url(url)
                if err:
                    r.problem(node, "legacy.url", err)
                else:
                    values["url"] = url.rstrip("/")
        for name in ("connect_timeout", "read_timeout"):
            if name in fields:
                v = r.number(fields[name][1], f"legacy.{name}", minimum=0.001)
                if v is not None:
                    values[name] = float(v)
        if "pool_size" in fields:
            v = r.number(fields["pool_size"][1], "legacy.pool_size", minimum=1, integer=True)
            if v is not None:
                values["pool_size"] = int(v)
    override = env.get("LEGACY_URL")
    if override:
        err = _check_url(override)
        if err:
            r.problems.append(Problem("$LEGACY_URL", 0, "LEGACY_URL", err))
        else:
            values["url"] = override.rstrip("/")
    return LegacyConfig(**values)


def _parse_trusted(r: _Reader, node: yaml.Node) -> tuple[str, ...]:
    import ipaddress

    if not isinstance(node, yaml.SequenceNode):
        r.problem(node, "trusted_proxies", "must be a list of IP addresses or CIDR networks")
        return ()
    out = []
    for i, item in enumerate(node.value):
        value = r.scalar(item) if isinstance(item, yaml.ScalarNode) else None
        try:
            ipaddress.ip_network(str(value), strict=False)
            out.append(str(value))
        except ValueError:
            r.problem(item, f"trusted_proxies[{i}]", f"not an IP address or CIDR network: {value!r}")
    return tuple(out)


def _parse_routes(r: _Reader, node: yaml.Node, serves_prefix: ServesPrefix | None,
                  dry_run_ok: ServesPrefix | None = None) -> list[RouteSpec]:
    if not isinstance(node, yaml.SequenceNode):
        r.problem(node, "routes", "must be a list of '- prefix: ... to: ...' entries")
        return []
    routes: list[RouteSpec] = []
    seen: dict[str, list[RouteSpec]] = {}
    for i, item in enumerate(node.value):
        key = f"routes[{i}]"
        fields = r.mapping(item, key, ROUTE_KEYS)
        line = item.start_mark.line + 1
        for required in ("prefix", "to"):
            if required not in fields and isinstance(item, yaml.MappingNode):
                r.problem(item, key, f"missing required key '{required}'")
        prefix = to = None
        if "prefix" in fields:
            pnode = fields["prefix"][1]
            prefix = r.string(pnode, f"{key}.prefix")
            if prefix is not None and (err := _check_prefix(prefix)):
                r.problem(pnode, f"{key}.prefix", err)
                prefix = None
        if "to" in fields:
            tnode = fields["to"][1]
            to = r.scalar(tnode) if isinstance(tnode, yaml.ScalarNode) else None
            if to not in ROUTE_STATES:
                r.problem(tnode, f"{key}.to", f"unknown state {to!r}{_did_you_mean(str(to), ROUTE_STATES)}; expected one of: {', '.join(ROUTE_STATES)}")
                to = None
            elif to in NEEDS_PYTHON and prefix is not None and serves_prefix is not None and not serves_prefix(prefix):
                r.problem(tnode, f"{key}.to", f"no Python service module serves {prefix!r}; add one under services/ or route it to 'go'")
                to = None
        methods = None
        if "methods" in fields:
            methods = _parse_methods(r, fields["methods"][1], f"{key}.methods")
        extras = _parse_route_extras(r, fields, key, to)
        if prefix is None or to is None or extras is None:
            continue
        spec = RouteSpec(prefix=prefix, to=to, methods=methods, line=line, **extras)
        if spec.to == "shadow" and spec.shadow.writes and dry_run_ok is not None and not dry_run_ok(prefix):
            r.problem(fields["shadow"][1], f"{key}.shadow.writes",
                      f"the Python service for {prefix!r} does not support dry runs (Service.dry_run), "
                      "so writes can't be replayed to it safely; remove 'writes: true'")
            continue
        for other in seen.get(prefix, []):
            if other.methods is None or methods is None or other.methods & methods:
                overlap = "every method" if other.methods is None or methods is None else ", ".join(sorted(other.methods & methods))
                r.problem(fields["prefix"][1], f"{key}.prefix", f"duplicate prefix {prefix!r} (also on line {other.line}) for {overlap}")
                break
        else:
            seen.setdefault(prefix, []).append(spec)
            routes.append(spec)
    return routes


def _parse_route_extras(r: _Reader, fields: dict[str, tuple[yaml.Node, yaml.Node]], key: str,
                        to: str | None) -> dict[str, Any] | None:
    """percent / shadow / diff / rollback: each only where its state uses it."""
    out: dict[str, Any] = {}
    before = len(r.problems)
    only_for = {"percent": ("canary",), "shadow": ("shadow",), "rollback": ("canary",), "diff": ("shadow",)}
    for name, states in only_for.items():
        if name in fields and to is not None and to not in states:
            r.problem(fields[name][0], f"{key}.{name}", f"only applies to routes with to: {' or '.join(states)} (this one is '{to}')")
    if to == "canary":
        if "percent" not in fields:
            r.problem(fields["to"][1], f"{key}.percent", "a canary route needs 'percent: N' (0-100, the share sent to Python)")
        else:
            pct = r.number(fields["percent"][1], f"{key}.percent", minimum=0)
            if pct is not None and pct > 100:
                r.problem(fields["percent"][1], f"{key}.percent", f"must be between 0 and 100, got {pct!r}")
            elif pct is not None:
                out["percent"] = float(pct)
        if "rollback" in fields:
            out["rollback"] = RollbackSpec(**_parse_block(r, fields["rollback"][1], f"{key}.rollback", ROLLBACK_KEYS, {
                "max_error_rate_increase": ("number", 0.0), "max_p99_ratio": ("number", 1.0), "min_requests": ("int", 1)}))
    if to == "shadow":
        if "shadow" in fields:
            values = _parse_block(r, fields["shadow"][1], f"{key}.shadow", SHADOW_KEYS, {
                "writes": ("bool", 0), "noise": ("bool", 0), "sample": ("number", 0.0), "timeout": ("number", 0.001)})
            if values.get("sample", 0) > 1:
                r.problem(fields["shadow"][1], f"{key}.shadow.sample", "must be a fraction between 0 and 1")
            out["shadow"] = ShadowSpec(**values)
        if "diff" in fields:
            values = _parse_block(r, fields["diff"][1], f"{key}.diff", DIFF_KEYS, {
                "ignore": ("paths", 0), "unordered": ("paths", 0), "headers": ("strings", 0)})
            out["diff"] = DiffSpec(**values)
    return out if len(r.problems) == before else None


def _parse_block(r: _Reader, node: yaml.Node, key: str, allowed: set[str],
                 kinds: dict[str, tuple[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (_, vnode) in r.mapping(node, key, allowed).items():
        kind, minimum = kinds[name]
        where = f"{key}.{name}"
        if kind == "bool":
            value = r.scalar(vnode) if isinstance(vnode, yaml.ScalarNode) else None
            if not isinstance(value, bool):
                r.problem(vnode, where, f"must be true or false, got {value!r}")
            else:
                out[name] = value
        elif kind in ("number", "int"):
            value = r.number(vnode, where, minimum=minimum, integer=kind == "int")
            if value is not None:
                out[name] = value
        else:
            items = vnode.value if isinstance(vnode, yaml.SequenceNode) else None
            values = [r.scalar(i) for i in items if isinstance(i, yaml.ScalarNode)] if items is not None else None
            if values is None or not all(isinstance(v, str) and v for v in values):
                r.problem(vnode, where, "must be a list of strings")
                continue
            if kind == "paths":
                from gateway.migration.jsonpath import parse_json_path

                try:
                    for v in values:
                        parse_json_path(v)
                except ValueError as exc:
                    r.problem(vnode, where, str(exc))
                    continue
            out[name] = tuple(v.lower() if kind == "strings" else v for v in values)
    return out


def _parse_methods(r: _Reader, node: yaml.Node, key: str) -> frozenset[str] | None:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.problem(node, key, "must be a non-empty list such as [GET, POST]")
        return None
    out = set()
    for item in node.value:
        value = r.scalar(item) if isinstance(item, yaml.ScalarNode) else None
        name = str(value).upper()
        if name not in HTTP_METHODS:
            r.problem(item, key, f"unknown HTTP method {value!r}")
        else:
            out.add(name)
    return frozenset(out)


def load_config(path: str | os.PathLike[str], *, serves_prefix: ServesPrefix | None = None,
                dry_run_ok: ServesPrefix | None = None) -> GatewayConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(p), 0, "<file>", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_config(data, str(p), serves_prefix=serves_prefix, dry_run_ok=dry_run_ok)
