"""The `gateway` command line as a user runs it: check, explain, schema."""
from __future__ import annotations

import json
from pathlib import Path

from tests.support.gateway_proc import gateway_cli

ROOT = Path(__file__).resolve().parents[2]


def _gateway(*args, cwd=None):
    return gateway_cli(*args, cwd=cwd)


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


def test_explain_cli_takes_the_target_as_a_client_sends_it(tmp_path: Path):
    cfg = tmp_path / "routes.yaml"
    cfg.write_text("routes:\n  - prefix: /ping\n    to: python\n")
    out = _gateway("explain", "GET", "/ping?x=1", "--config", str(cfg))
    assert out.stdout.startswith("GET /ping?x=1 → python (service 'ping')") and "matched as: /ping" in out.stdout
    out = _gateway("explain", "GET", "/ping%3Fx%3D1", "--config", str(cfg))  # one segment: no route covers it
    assert out.stdout.startswith("GET /ping%3Fx%3D1 → go") and "default" in out.stdout
    out = _gateway("explain", "GET", "/_gateway/health", "--config", str(cfg))
    assert out.stdout.startswith("GET /_gateway/health → the gateway itself (admin surface)")
    out = _gateway("explain", "GET", "/_gateway/health", "--config", str(cfg), "--json")
    assert json.loads(out.stdout)["state"] == "admin"


# --- the JSON Schema for editors ---------------------------------------------------------

def test_schema_accepts_the_repo_routes_yaml_and_rejects_a_typo():
    import jsonschema
    import yaml

    out = _gateway("schema")
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    routes = yaml.safe_load(ROOT.joinpath("routes.yaml").read_text())
    assert not list(validator.iter_errors(routes))
    routes["legacy"]["read_timout"] = 5
    routes["routes"][0]["to"] = "pyton"
    errors = sorted(e.message for e in validator.iter_errors(routes))
    assert len(errors) == 2 and any("read_timout" in e for e in errors) and any("pyton" in e for e in errors)
    assert "line" not in json.dumps(schema["$defs"]["RouteSpec"]["properties"])  # the loader's, not the file's
