"""Parse and validate ``routes.yaml`` into frozen, hashable models.

    file ──read_file──► bytes ──compose──► plain data + lines ──pydantic──► GatewayConfig
                          (source.py: regular files only, capped; no aliases)   (models.py)

Validation runs in two passes over the same plain data, and both always run,
so one ``gateway check`` shows every problem at once, sorted by line:

1. the pydantic models (types, ranges, unknown keys, value formats), each
   error's ``loc`` mapped back to the line it was written on;
2. the checks a schema can't express: keys that only apply to some states,
   duplicate prefixes with overlapping methods, ``python`` routes no service
   serves (``serves_prefix``), ``shadow.writes`` only for dry-run services
   (``dry_run_ok``), and CORS origins read from the environment.

Every problem reads ``file:line: key.path: message`` with a did-you-mean hint
for typos; see problems.py for how the text is kept short.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from .models import (
    DEFAULT_PREFIX,
    DEFAULT_STATES,
    HTTP_METHODS,
    MAX_CORS_HEADERS,
    MAX_DIFF_PATHS,
    MAX_METHODS,
    MAX_ORIGINS,
    MAX_ROUTES,
    MAX_TRUSTED_PROXIES,
    NEEDS_PYTHON,
    RESERVED_PREFIX,
    ROUTE_STATES,
    CorsConfig,
    DiffSpec,
    GatewayConfig,
    LegacyConfig,
    LimitsConfig,
    RollbackSpec,
    RouteSpec,
    ShadowSpec,
    check_origin,
    check_prefix,
    check_url,
    internal_fields,
    json_schema,
    public_fields,
)
from .problems import Problem, RoutesError, did_you_mean, shown
from .source import MAX_FILE_BYTES, Document, Path, compose, key_path, read_file

__all__ = [
    "DEFAULT_PREFIX", "DEFAULT_STATES", "HTTP_METHODS", "NEEDS_PYTHON", "RESERVED_PREFIX", "ROUTE_STATES",
    "CorsConfig", "DiffSpec", "GatewayConfig", "LegacyConfig", "LimitsConfig", "Problem", "RollbackSpec",
    "RouteSpec", "RoutesError", "ShadowSpec", "ServesPrefix", "json_schema", "load_config", "parse_config",
]

ServesPrefix = Callable[[str], bool]

# List caps, checked on the raw data ("*" = any index) so an oversized list is
# one problem and is cut before pydantic looks at its items.
LIST_CAPS: dict[tuple[str, ...], int] = {
    ("routes",): MAX_ROUTES,
    ("trusted_proxies",): MAX_TRUSTED_PROXIES,
    ("routes", "*", "methods"): MAX_METHODS,
    ("routes", "*", "diff", "ignore"): MAX_DIFF_PATHS,
    ("routes", "*", "diff", "unordered"): MAX_DIFF_PATHS,
    ("routes", "*", "diff", "headers"): MAX_DIFF_PATHS,
    ("cors", "allow_origins"): MAX_ORIGINS,
    ("cors", "allow_methods"): MAX_METHODS,
    ("cors", "allow_headers"): MAX_CORS_HEADERS,
}
ONLY_FOR = {"percent": ("canary",), "rollback": ("canary",), "shadow": ("shadow",), "diff": ("shadow",)}
LIST_HINTS = {
    "routes": "must be a list of '- prefix: ... to: ...' entries",
    "trusted_proxies": "must be a list of IP addresses or CIDR networks",
    "methods": "must be a non-empty list such as [GET, POST]",
}


def parse_config(
    text: str | bytes,
    file: str = "routes.yaml",
    *,
    serves_prefix: ServesPrefix | None = None,
    dry_run_ok: ServesPrefix | None = None,
    legacy_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    deadline: float | None = None,
) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from YAML text or raise :class:`RoutesError`.

    ``serves_prefix(prefix)``: does a Python service module serve that prefix
    (``python`` routes no module serves are rejected). ``dry_run_ok(prefix)``:
    does it support dry runs (``shadow.writes``). ``legacy_url`` overrides
    ``legacy.url`` (the gateway passes env ``LEGACY_URL``). ``environ`` is
    where ``cors.allow_origins_env`` is looked up (default: the process
    environment). ``deadline`` (``time.monotonic()``) bounds the parse.
    """
    raw = text.encode() if isinstance(text, str) else text
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        problem = Problem(file, line, "<file>", f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        raise RoutesError([problem]) from None
    doc = compose(decoded, file, deadline=deadline)
    if doc.data is None:
        raise RoutesError([Problem(file, 1, "<file>", "file is empty; expected at least 'routes:'")])
    check = _Checker(file, doc)
    check.prepare()
    config = check.validate()
    check.semantics(serves_prefix, dry_run_ok)
    url = check.legacy_override(legacy_url)
    if config is not None:
        config = check.resolve_cors(config, os.environ if environ is None else environ)
    if check.problems or config is None:
        raise RoutesError(check.problems)
    if url is not None:
        config = config.model_copy(update={"legacy": config.legacy.model_copy(update={"url": url})})
    return config.model_copy(update={
        "source": file,
        "version": hashlib.sha256(raw).hexdigest()[:12],
        "default_line": doc.value_lines.get(("default",), 0),
    })


def load_config(
    path: str | os.PathLike[str],
    *,
    serves_prefix: ServesPrefix | None = None,
    dry_run_ok: ServesPrefix | None = None,
    legacy_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> GatewayConfig:
    """:func:`parse_config` of a file, read safely (regular files only, capped)."""
    data = read_file(path, max_bytes=max_bytes)
    return parse_config(data, os.fspath(path), serves_prefix=serves_prefix, dry_run_ok=dry_run_ok,
                        legacy_url=legacy_url, environ=environ, deadline=deadline)


class _Checker:
    """Both validation passes over one document, collecting problems with lines."""

    def __init__(self, file: str, doc: Document):
        self.file = file
        self.doc = doc
        self.problems: list[Problem] = list(doc.problems)

    def add(self, path: Path, message: str, *, key: bool = False, name: str | None = None) -> None:
        self.problems.append(Problem(self.file, self.doc.line(path, key=key), name or key_path(path) or "<file>",
                                     message))

    # -- before validation -------------------------------------------------------
    def prepare(self) -> None:
        """Cap lists, refuse the loader's own fields, give each route its line."""
        data = self.doc.data
        for pattern, cap in LIST_CAPS.items():
            for path, items in _lists_at(data, pattern):
                if len(items) > cap:
                    self.add(path, f"at most {cap:,} items, got {len(items):,}")
                    del items[cap:]
        if not isinstance(data, dict):
            return
        self._refuse_internal(data, (), GatewayConfig)
        routes = data.get("routes")
        if isinstance(routes, list):
            for i, item in enumerate(routes):
                if isinstance(item, dict):
                    self._refuse_internal(item, ("routes", i), RouteSpec)
                    item["line"] = self.doc.line(("routes", i))

    def _refuse_internal(self, mapping: dict[str, Any], path: Path, model: type[BaseModel]) -> None:
        for name in internal_fields(model) & mapping.keys():
            self.add((*path, name), _unknown_key(name, public_fields(model)), key=True)
            del mapping[name]

    # -- pass 1: the models --------------------------------------------------------
    def validate(self) -> GatewayConfig | None:
        try:
            return GatewayConfig.model_validate(self.doc.data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self._from_pydantic(error)
            return None

    def _from_pydantic(self, error: Any) -> None:
        loc: Path = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            parent = loc[:-1]
            self.add(parent, f"missing required key '{loc[-1]}'")
        elif kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = public_fields(model) if model is not None else []
            self.add(loc, _unknown_key(loc[-1], allowed), key=True)
        else:
            self.add(loc, _message(error, loc))

    # -- pass 2: what a schema can't say ------------------------------------------
    def semantics(self, serves_prefix: ServesPrefix | None, dry_run_ok: ServesPrefix | None) -> None:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        if data.get("default") == "python" and serves_prefix is not None and not serves_prefix("/"):
            self.add(("default",), "no Python service answers the paths no feature serves (a fallback service, "
                                   "services/fallback); the default must be 'go'")
        routes = data.get("routes")
        seen: dict[str, list[tuple[frozenset[str] | None, int]]] = {}
        for i, item in enumerate(routes if isinstance(routes, list) else []):
            if isinstance(item, dict):
                self._route(("routes", i), item, serves_prefix, dry_run_ok, seen)

    def _route(self, path: Path, item: dict[str, Any], serves_prefix: ServesPrefix | None,
               dry_run_ok: ServesPrefix | None, seen: dict[str, list[tuple[frozenset[str] | None, int]]]) -> None:
        prefix = item.get("prefix") if _valid(check_prefix, item.get("prefix")) else None
        to = item.get("to") if item.get("to") in ROUTE_STATES else None
        if to is not None:
            for name, states in ONLY_FOR.items():
                if name in item and to not in states:
                    self.add((*path, name), f"only applies to routes with to: {' or '.join(states)} "
                                            f"(this one is '{to}')", key=True)
            if to == "canary" and "percent" not in item:
                self.add((*path, "to"), "a canary route needs 'percent: N' (0-100, the share sent to Python)",
                         name=key_path((*path, "percent")))
            if to in NEEDS_PYTHON and prefix is not None and serves_prefix is not None and not serves_prefix(prefix):
                self.add((*path, "to"), f"no Python service module serves {prefix!r}; add one under services/ "
                                        "or route it to 'go'")
            shadow = item.get("shadow")
            writes = shadow.get("writes") is True if isinstance(shadow, dict) else False
            if to == "shadow" and writes and prefix is not None and dry_run_ok is not None and not dry_run_ok(prefix):
                self.add((*path, "shadow", "writes"),
                         f"the Python service for {prefix!r} does not support dry runs (Service.dry_run), so "
                         "writes can't be replayed to it safely; remove 'writes: true'")
        readable, methods = _methods_of(item.get("methods"))
        if prefix is None or not readable:
            return
        line = self.doc.line(path)
        for other, other_line in seen.get(prefix, []):
            if other is None or methods is None or other & methods:
                overlap = "every method" if other is None or methods is None else ", ".join(sorted(other & methods))
                self.add((*path, "prefix"), f"duplicate prefix {prefix!r} (also on line {other_line}) for {overlap}")
                return
        seen.setdefault(prefix, []).append((methods, line))

    def legacy_override(self, url: str | None) -> str | None:
        if not url:
            return None
        try:
            return check_url(url)
        except ValueError as exc:
            self.problems.append(Problem("$LEGACY_URL", 0, "LEGACY_URL", str(exc)))
            return None

    def resolve_cors(self, config: GatewayConfig, environ: Mapping[str, str]) -> GatewayConfig:
        """``allow_origins_env``: read the named variable now; its origins become ``allow_origins``."""
        cors = config.cors
        if cors is None or cors.allow_origins_env is None:
            return config
        name = cors.allow_origins_env
        origins = [o.strip() for o in environ.get(name, "").split(",") if o.strip()]
        where = ("cors", "allow_origins_env")
        if len(origins) > MAX_ORIGINS:
            self.add(where, f"${name} lists {len(origins):,} origins; at most {MAX_ORIGINS}")
        for origin in origins[:MAX_ORIGINS]:
            try:
                check_origin(origin)
            except ValueError as exc:
                self.add(where, f"${name}: {exc}")
        return config.model_copy(update={"cors": cors.model_copy(update={"allow_origins": tuple(origins)})})


def _unknown_key(name: Any, allowed: list[str]) -> str:
    return f"unknown key{did_you_mean(name, allowed)}; allowed: {', '.join(allowed)}"


def _message(error: Any, loc: Path) -> str:
    """A pydantic error in the words routes.yaml users already know."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    name = loc[-1] if loc else ""
    got = shown(value)
    if kind == "literal_error":
        states = {"to": ROUTE_STATES, "default": DEFAULT_STATES}.get(str(name))
        options = states or tuple(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return (f"unknown {'state' if states else 'value'} {got}{did_you_mean(value, options)}; "
                f"expected one of: {', '.join(options)}")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error") or error["msg"])
    simple = {
        "float_type": "must be a number", "float_parsing": "must be a number",
        "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
        "bool_type": "must be true or false", "bool_parsing": "must be true or false",
        "string_type": "must be a string", "finite_number": "must be a finite number",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    bounds = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
              "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}
    if kind in bounds:
        words, key = bounds[kind]
        bound = ctx.get(key)
        return f"must be {words} {bound:g}, got {got}" if isinstance(bound, (int, float)) else \
            f"must be {words} {bound}, got {got}"
    if kind in ("too_short", "string_too_short"):
        return LIST_HINTS.get(str(name), "must not be empty")
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping of key: value"
    if kind in ("tuple_type", "list_type", "frozen_set_type", "set_type", "iterable_type"):
        return LIST_HINTS.get(str(name), "must be a list")
    return str(error.get("msg", kind))


def _model_at(loc: Path) -> type[BaseModel] | None:
    """The model whose keys live at ``loc`` (for the list of allowed keys)."""
    model: type[BaseModel] | None = GatewayConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue  # a list index: the element model was found with the field
        field = model.model_fields.get(part)
        model = _inner_model(field.annotation) if field is not None else None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _lists_at(data: Any, pattern: tuple[str, ...], path: Path = ()) -> Iterable[tuple[Path, list[Any]]]:
    if not pattern:
        if isinstance(data, list):
            yield path, data
        return
    head, rest = pattern[0], pattern[1:]
    if head == "*" and isinstance(data, list):
        for i, item in enumerate(data):
            yield from _lists_at(item, rest, (*path, i))
    elif isinstance(data, dict) and head in data:
        yield from _lists_at(data[head], rest, (*path, head))


def _valid(check: Callable[[str], str], value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        check(value)
    except ValueError:
        return False
    return True


def _methods_of(value: Any) -> tuple[bool, frozenset[str] | None]:
    """(readable, the route's methods) for the duplicate check; None = every method."""
    if value is None:
        return True, None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return True, frozenset(v.upper() for v in value)
    return False, None
