"""routes.yaml validation: every problem names the file, the line and the key."""
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.routing.config import ConfigError, parse_config

SERVES = {"/ping", "/users", "/sign-in"}


def serves(prefix):
    return any(prefix == p or prefix.startswith(p + "/") for p in SERVES)


def problems(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "routes.yaml", serves_prefix=serves, env={})
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
""", serves_prefix=serves, env={})
    assert cfg.legacy.url == "http://localhost:1323"
    assert cfg.legacy.connect_timeout == 2.0 and cfg.legacy.read_timeout == 60.0
    assert [(r.prefix, r.to, r.methods) for r in cfg.routes] == [
        ("/ping", "python", None), ("/users", "go", frozenset({"GET", "POST", "DELETE"}))]
    assert cfg.routes[0].line == 8
    assert len(cfg.version) == 12


def test_legacy_url_env_override():
    cfg = parse_config("routes: []\n", env={"LEGACY_URL": "http://go:1323/"})
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
                 serves_prefix=serves, env={})
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
    parse_config("routes:\n  - prefix: /users/db-has-users\n    to: python\n", serves_prefix=serves, env={})


@pytest.mark.parametrize("url", ["ftp://x", "localhost:1323", "http://", "http://x:99999", "http://x/?a=1"])
def test_bad_urls(url):
    out = problems(f"legacy:\n  url: '{url}'\nroutes: []\n")
    assert len(out) == 1 and out[0].startswith("routes.yaml:2: legacy.url:")


def test_bad_numbers_methods_and_yaml():
    assert problems("legacy:\n  read_timeout: soon\n")[0].startswith("routes.yaml:2: legacy.read_timeout: must be a number")
    assert problems("routes:\n  - {prefix: /a, to: go, methods: [FETCH]}\n") == [
        "routes.yaml:2: routes[0].methods: unknown HTTP method 'FETCH'"]
    out = problems("routes:\n  - prefix: /a\n    to: go\n   bad: indent\n")
    assert out[0].startswith("routes.yaml:4: <yaml>: invalid YAML")
    assert problems("")[0].startswith("routes.yaml:1: <file>: file is empty")


def test_all_problems_reported_at_once_in_line_order():
    out = problems("routes:\n  - {prefix: a, to: go}\n  - {prefix: /b, to: gone}\n")
    assert [p.split(":")[1] for p in out] == ["2", "3"]


def _gateway(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_check_cli_prints_table_or_errors(tmp_path: Path):
    good = tmp_path / "routes.yaml"
    good.write_text("routes:\n  - prefix: /ping\n    to: python\n")
    out = _gateway("check", str(good))
    assert out.returncode == 0, out.stderr
    assert "/ping" in out.stdout and "python" in out.stdout and "(default)" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - prefix: /ping\n    to: pyton\n")
    out = _gateway("check", str(bad))
    assert out.returncode == 1
    assert f"{bad}:3: routes[0].to: unknown state 'pyton'" in out.stderr


def test_explain_cli(tmp_path: Path):
    cfg = tmp_path / "routes.yaml"
    cfg.write_text("routes:\n  - prefix: /ping\n    to: python\n")
    out = _gateway("explain", "GET", "/ping", "--config", str(cfg))
    assert out.returncode == 0 and out.stdout.startswith("GET /ping → python (service 'ping')")
    out = _gateway("explain", "GET", "/users/7", "--config", str(cfg))
    assert "→ go (http://localhost:1323)" in out.stdout and "default" in out.stdout
    out = _gateway("explain", "GET", "/ping/../users", "--config", str(cfg))
    assert "rejected with 400" in out.stdout
