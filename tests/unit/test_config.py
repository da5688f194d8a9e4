"""routes.yaml validation: every problem names the file, the line and the key."""
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.routing.config import RoutesError, parse_config

SERVES = {"/ping", "/users", "/sign-in"}


def serves(prefix):
    return any(prefix == p or prefix.startswith(p + "/") for p in SERVES)


def problems(text):
    with pytest.raises(RoutesError) as info:
        parse_config(text, "routes.yaml", serves_prefix=serves, environ={})
    return [str(p) for p in info.value.problems]


def test_the_issue_example_parses():
    cfg = parse_config("""
legacy:
  url: http://localhost:1323
  connect_timeout: 2
  read_timeout: 60
default: go
routes:
  - prefix: /ping
    to: python
  - prefix: /users
    to: go
    methods: [GET, POST, DELETE]
""", serves_prefix=serves, environ={})
    assert cfg.legacy.url == "http://localhost:1323"
    assert cfg.legacy.connect_timeout == 2.0 and cfg.legacy.read_timeout == 60.0
    assert [(r.prefix, r.to, r.methods) for r in cfg.routes] == [
        ("/ping", "python", None), ("/users", "go", frozenset({"GET", "POST", "DELETE"}))]
    assert cfg.routes[0].line == 8
    assert len(cfg.version) == 12


def test_legacy_url_env_override():
    cfg = parse_config("routes: []\n", legacy_url="http://go:1323/")
    assert cfg.legacy.url == "http://go:1323"


def test_unknown_target_names_line_and_key_with_a_suggestion():
    assert problems("routes:\n  - prefix: /ping\n    to: pyton\n") == [
        "routes.yaml:3: routes[0].to: unknown state 'pyton' (did you mean 'python'?); expected one of: go, python, shadow, canary"]


def test_unknown_keys_are_errors_not_ignored():
    out = problems("legacy:\n  url: http://x:1\n  read_timout: 5\nroutes:\n  - prefix: /ping\n    too: go\n")
    assert out[0].startswith("routes.yaml:3: legacy.read_timout: unknown key (did you mean 'read_timeout'?)")
    assert any(p.startswith("routes.yaml:6: routes[0].too: unknown key (did you mean 'to'?)") for p in out)
    assert any("routes.yaml:5: routes[0]: missing required key 'to'" in p for p in out)
    assert problems("rotues: []\n")[0].startswith("routes.yaml:1: rotues: unknown key (did you mean 'routes'?)")


def test_duplicate_prefix_points_at_both_lines():
    out = problems("routes:\n  - prefix: /users\n    to: go\n  - prefix: /users\n    to: python\n")
    assert out == ["routes.yaml:4: routes[1].prefix: duplicate prefix '/users' (also on line 2) for every method"]


def test_same_prefix_with_disjoint_methods_is_allowed_but_overlap_is_not():
    parse_config("routes:\n  - {prefix: /users, to: go, methods: [GET]}\n  - {prefix: /users, to: python, methods: [POST]}\n",
                 serves_prefix=serves, environ={})
    out = problems("routes:\n  - {prefix: /users, to: go, methods: [GET, POST]}\n  - {prefix: /users, to: python, methods: [POST]}\n")
    assert out == ["routes.yaml:3: routes[1].prefix: duplicate prefix '/users' (also on line 2) for POST"]


@pytest.mark.parametrize("prefix,fragment", [
    ("users", "must start with '/'"),
    ("/users/", "must not end with '/'"),
    ("/a/../b", "'.' or '..' segments"),
    ("/_gateway/x", "admin surface"),
    ("/a%2Fb", "plain path"),
])
def test_bad_prefixes(prefix, fragment):
    out = problems(f"routes:\n  - prefix: '{prefix}'\n    to: go\n")
    assert len(out) == 1 and out[0].startswith("routes.yaml:2: routes[0].prefix:") and fragment in out[0]


def test_python_route_needs_a_service_module():
    assert problems("routes:\n  - prefix: /otel\n    to: python\n") == [
        "routes.yaml:3: routes[0].to: no Python service module serves '/otel'; add one under services/ or route it to 'go'"]
    # Sub-prefixes of a served prefix are fine.
    parse_config("routes:\n  - prefix: /users/db-has-users\n    to: python\n", serves_prefix=serves, environ={})


@pytest.mark.parametrize("url", ["ftp://x", "localhost:1323", "http://", "http://x:99999", "http://x/?a=1"])
def test_bad_urls(url):
    out = problems(f"legacy:\n  url: '{url}'\nroutes: []\n")
    assert len(out) == 1 and out[0].startswith("routes.yaml:2: legacy.url:")


def test_bad_numbers_methods_and_yaml():
    assert problems("legacy:\n  read_timeout: soon\n")[0].startswith("routes.yaml:2: legacy.read_timeout: must be a number")
    assert problems("routes:\n  - {prefix: /a, to: go, methods: [FETCH]}\n") == [
        "routes.yaml:2: routes[0].methods[0]: unknown HTTP method 'FETCH'"]
    out = problems("routes:\n  - prefix: /a\n    to: go\n   bad: indent\n")
    assert out[0].startswith("routes.yaml:4: <yaml>: invalid YAML")
    assert problems("")[0].startswith("routes.yaml:1: <file>: file is empty")


def test_all_problems_reported_at_once_in_line_order():
    out = problems("routes:\n  - {prefix: a, to: go}\n  - {prefix: /b, to: gone}\n")
    assert [p.split(":")[1] for p in out] == ["2", "3"]


# --- the models: immutable, hashable, every key of the new surface validated ----------

ROOT = Path(__file__).resolve().parents[2]


def test_configs_are_frozen_and_hashable():
    cfg = parse_config(ROOT.joinpath("routes.yaml").read_text(), serves_prefix=serves, environ={})
    again = parse_config(ROOT.joinpath("routes.yaml").read_text(), serves_prefix=serves, environ={})
    assert cfg == again and hash(cfg) == hash(again)
    assert {(cfg.legacy, cfg.trusted_proxies): 1}[(again.legacy, again.trusted_proxies)] == 1
    with pytest.raises(ValidationError, match="frozen"):
        cfg.legacy.url = "http://elsewhere"  # type: ignore[misc]
    assert cfg.default_route.is_default and cfg.default_route.to == "go"


def test_new_surface_defaults():
    cfg = parse_config("routes:\n  - {prefix: /ping, to: python, max_body: 2048}\n", serves_prefix=serves, environ={})
    legacy, limits = cfg.legacy, cfg.limits
    assert (legacy.ready_path, legacy.total_timeout, legacy.body_pool_share, legacy.pool_size) == ("/", None, 0.5, 512)
    assert cfg.cors is None
    assert limits.model_dump() == {
        "request_line": 8192, "header_line": 8192, "header_count": 100, "head_size": 32768, "head_timeout": 10,
        "body_idle_timeout": 30, "keepalive_timeout": 5, "send_timeout": 60, "max_connections": 4096,
        "upstream_head_size": 65536,
        "upstream_header_count": 200, "python_body": 1048576}
    assert cfg.routes[0].max_body == 2048


def test_new_surface_values_parse():
    cfg = parse_config("""
legacy: {url: 'http://go:1323', ready_path: /ping, total_timeout: 120, body_pool_share: 1}
limits: {head_timeout: 2.5, python_body: 65536, max_connections: 10}
routes:
  - {prefix: /users, to: go, max_body: 10}   # kept on go: rolling back stays a one-line edit
""", environ={})
    assert (cfg.legacy.ready_path, cfg.legacy.total_timeout, cfg.legacy.body_pool_share) == ("/ping", 120.0, 1.0)
    assert (cfg.limits.head_timeout, cfg.limits.python_body, cfg.limits.max_connections) == (2.5, 65536, 10)
    assert cfg.routes[0].max_body == 10


@pytest.mark.parametrize("text,expected", [
    ("legacy:\n  ready_path: ping\n", "routes.yaml:2: legacy.ready_path: must be a path such as /ping"),
    ("legacy:\n  total_timeout: 0\n", "routes.yaml:2: legacy.total_timeout: must be greater than 0, got 0"),
    ("legacy:\n  body_pool_share: 0\n", "routes.yaml:2: legacy.body_pool_share: must be greater than 0, got 0"),
    ("legacy:\n  body_pool_share: 1.5\n", "routes.yaml:2: legacy.body_pool_share: must be at most 1, got 1.5"),
    ("legacy:\n  pool_size: 2.5\n", "routes.yaml:2: legacy.pool_size: must be an integer, got 2.5"),
    ("limits:\n  head_size: -1\n", "routes.yaml:2: limits.head_size: must be greater than 0, got -1"),
    ("limits:\n  head_timeout: .inf\n", "routes.yaml:2: limits.head_timeout: must be a finite number"),
    ("limits:\n  header_count: '100'\n", "routes.yaml:2: limits.header_count: must be an integer, got '100'"),
    ("limits:\n  python_bdy: 5\n", "routes.yaml:2: limits.python_bdy: unknown key (did you mean 'python_body'?)"),
    ("routes:\n  - {prefix: /a, to: go, max_body: 0}\n", "routes.yaml:2: routes[0].max_body: must be greater than 0"),
    ("routes:\n  - {prefix: /a, to: go, max_body: true}\n", "routes.yaml:2: routes[0].max_body: must be an integer"),
    ("routes:\n  - {prefix: /a, to: go, line: 9}\n", "routes.yaml:2: routes[0].line: unknown key"),
    ("version: abc\n", "routes.yaml:1: version: unknown key"),
])
def test_new_surface_is_validated(text, expected):
    out = problems(text)
    assert len(out) == 1 and out[0].startswith(expected), out


def test_state_specific_keys_and_canary_needs_percent():
    out = problems("routes:\n  - prefix: /users\n    to: go\n    percent: 5\n  - prefix: /ping\n    to: canary\n")
    assert out == [
        "routes.yaml:4: routes[0].percent: only applies to routes with to: canary (this one is 'go')",
        "routes.yaml:6: routes[1].percent: a canary route needs 'percent: N' (0-100, the share sent to Python)"]


def test_shadow_writes_only_for_dry_run_services_and_json_paths_checked():
    text = ("routes:\n  - prefix: /users\n    to: shadow\n    shadow: {writes: true}\n"
            "    diff: {ignore: ['$.ok', 'no-dollar']}\n")
    with pytest.raises(RoutesError) as info:
        parse_config(text, serves_prefix=serves, dry_run_ok=lambda p: False, environ={})
    out = [str(p) for p in info.value.problems]
    assert out[0].startswith("routes.yaml:4: routes[0].shadow.writes: the Python service for '/users' does not "
                             "support dry runs")
    assert out[1].startswith("routes.yaml:5: routes[0].diff.ignore[1]:")
    parse_config(text.replace(", 'no-dollar'", ""), serves_prefix=serves, dry_run_ok=lambda p: True, environ={})


def test_error_text_is_capped_but_every_problem_is_kept():
    routes = "".join(f"  - {{prefix: /r{i}, to: nowhere{'x' * 500}}}\n" for i in range(30))
    with pytest.raises(RoutesError) as info:
        parse_config("routes:\n" + routes, environ={})
    assert len(info.value.problems) == 30
    lines = str(info.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "… and 10 more problem(s)"
    assert all(len(line) <= 300 for line in lines)
