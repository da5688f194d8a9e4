"""Retiring Go in the route table: `default: python`, the fallback for unknown
paths, which tables still need the legacy backend, and `gateway check`'s warning.

The fallback's answers are checked in process here; tests/wire/test_retire_readiness.py
compares them with the Go stand-in's over real sockets.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.routing.compile import compile_table
from gateway.routing.config import RoutesError, parse_config
from services.common.session_codec import SessionCodec
from services.common.settings import reset_settings
from services.registry import CATCH_ALL, Registry, Service, discover
from tests.support.gateway_proc import gateway_cli

REPO = Path(__file__).resolve().parents[2]
REGISTRY = discover(["services"])
UNAUTHORIZED = b'{"message":"Unauthorized: No valid session"}\n'
NOT_FOUND = b'{"message":"Not Found"}\n'


async def _noop(scope, receive, send):  # pragma: no cover - never called
    pass


def table(text: str, registry: Registry = REGISTRY):
    config = parse_config(text, serves_prefix=registry.serves, dry_run_ok=registry.dry_run_ok)
    return compile_table(config, registry, _noop)


# ---- default: python ---------------------------------------------------------------

def test_default_python_is_accepted_and_serves_every_path_by_its_owner():
    t = table("default: python\nroutes:\n  - {prefix: /ping, to: python}\n")
    assert t.default.state == "python" and t.default.service.name == CATCH_ALL
    dispatch = t.default.service.app
    assert dispatch.app_for("/users/7") is REGISTRY.services["auth"].app
    assert dispatch.app_for("/api_keys/k") is REGISTRY.services["api_keys"].app
    assert dispatch.app_for("/otel/span-service-names") is REGISTRY.services["otel"].app
    for unknown in ("/", "/nope", "/users-admin", "/api"):
        assert dispatch.app_for(unknown) is REGISTRY.services["fallback"].app, unknown


def test_default_python_is_refused_without_a_fallback_service():
    registry = Registry({"ping": Service("ping", ("/ping",), _noop)})
    with pytest.raises(RoutesError) as err:
        table("default: python\nroutes: []\n", registry)
    assert "routes.yaml:1: default: no Python service answers the paths no feature serves" in str(err.value)


def test_the_fallback_serves_no_prefix_of_its_own():
    # A typo'd prefix must still be refused, not answered 404 by the fallback.
    assert REGISTRY.owner_of("/nope") is None
    with pytest.raises(RoutesError) as err:
        table("routes:\n  - {prefix: /user, to: python}\n")
    assert "no Python service module serves '/user'" in str(err.value)
    assert REGISTRY.serves("/")  # a "/" route (every path) is the catch-all, like the default


@pytest.mark.parametrize("modules, error", [
    ({"a": "SERVICE = Service('a', (), APP, fallback=True)", "b": "SERVICE = Service('b', (), APP, fallback=True)"},
     "services a, b are each a fallback"),
    ({"a": "SERVICE = Service('a', ('/a',), APP, fallback=True)"}, "fallback service 'a' declares prefixes"),
])
def test_discover_refuses_ambiguous_fallbacks(tmp_path, monkeypatch, modules, error):
    name = f"retire_fallbacks_{len(modules)}"  # one package per case: imports are cached
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, body in modules.items():
        (package / module).mkdir()
        (package / module / "__init__.py").write_text(
            "from services.registry import Service\nasync def APP(scope, receive, send): pass\n" + body + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=error):
        discover([name])


# ---- which tables need Go ---------------------------------------------------------

@pytest.mark.parametrize("text, needs", [
    ("default: python\nroutes:\n  - {prefix: /users, to: python}\n", []),
    ("default: go\nroutes:\n  - {prefix: /users, to: python}\n", ["*"]),
    ("default: python\nroutes:\n  - {prefix: /users, to: go, methods: [GET]}\n", ["/users"]),
    ("default: python\nroutes:\n  - {prefix: /users, to: shadow}\n", ["/users"]),
    ("default: python\nroutes:\n  - {prefix: /users, to: canary, percent: 100}\n", ["/users"]),
])
def test_legacy_routes_follow_the_table(text, needs):
    t = table(text)
    assert [r.prefix for r in t.legacy_routes] == needs
    assert t.describe()["legacy_in_use"] is bool(needs)


# ---- the fallback's answers (the legacy's, for unknown paths) -----------------------

@pytest.fixture
def fallback(monkeypatch) -> Iterator[Callable[..., httpx.Response]]:
    """Requests to the catch-all (what `default: python` serves), in process."""
    monkeypatch.setenv("JUNJO_SESSION_SECRET", "unit-secret")
    reset_settings()
    app = REGISTRY.catch_all.app

    def request(method: str, path: str, **kwargs) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.example") as c:
                return await c.request(method, path, **kwargs)
        return asyncio.run(go())

    yield request
    reset_settings()


def _session(email: str = "ada@example.com") -> str:
    return SessionCodec([b"unit-secret"]).encode(email)


@pytest.mark.parametrize("method, cookies, status, body", [
    ("GET", {}, 401, UNAUTHORIZED),
    ("GET", {"session": "garbage"}, 401, UNAUTHORIZED),
    ("GET", {"session": "ok"}, 404, NOT_FOUND),
    ("DELETE", {"session": "ok"}, 400, b'{"message":"missing value in cookies"}\n'),  # CSRF before auth
    ("POST", {"csrf": "t"}, 401, UNAUTHORIZED),
    ("PUT", {"csrf": "t", "session": "ok"}, 404, NOT_FOUND),
    ("HEAD", {"session": "ok"}, 404, b""),
])
def test_unknown_paths_answer_like_the_legacy(fallback, method, cookies, status, body):
    if cookies.get("session") == "ok":
        cookies = {**cookies, "session": _session()}
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    r = fallback(method, "/no/such/route", headers={"Cookie": header} if header else {})
    assert (r.status_code, r.content) == (status, body)
    if status != 400:
        assert [c.split("=")[0] for c in r.headers.get_list("set-cookie")] == ["csrf"]
        assert r.headers["vary"] == "Cookie"
    else:
        assert not r.headers.get_list("set-cookie")


def test_known_paths_still_reach_their_service(fallback):
    r = fallback("GET", "/ping")
    assert (r.status_code, r.content) == (200, b"pong")
    r = fallback("GET", "/auth-test", headers={"Cookie": f"session={_session()}"})
    assert (r.status_code, r.json()) == (200, {"userEmail": "ada@example.com"})


# ---- gateway check: a warning when routes still need a Go that does not answer -------

def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "routes.yaml"
    cfg.write_text(text)
    return gateway_cli("check", *args, str(cfg), env={**_env(), "LEGACY_URL": ""})


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "LEGACY_URL"}


@pytest.mark.parametrize("routes, named", [
    ("default: go\nroutes:\n  - {prefix: /ping, to: python}\n", "default: go"),
    ("default: python\nroutes:\n  - {prefix: /users, to: shadow}\n", "/users (shadow)"),
    ("default: python\nroutes:\n  - {prefix: /otel, to: go, methods: [GET]}\n", "/otel [GET] (go)"),
    ("default: python\nroutes:\n  - {prefix: /users, to: canary, percent: 5}\n", "/users (canary 5%)"),
])
def test_check_warns_when_routes_need_a_backend_that_is_gone(tmp_path, routes, named):
    dead = f"http://127.0.0.1:{_dead_port()}"
    out = _check(tmp_path, f"legacy:\n  url: {dead}\n  ready_path: /ping\n{routes}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("OK")
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, out.stderr
    assert f"the legacy backend at {dead} does not answer (GET {dead}/ping" in warnings[0]
    assert named in warnings[0]


def test_check_is_quiet_when_nothing_needs_go(tmp_path):
    dead = f"http://127.0.0.1:{_dead_port()}"
    out = _check(tmp_path, f"legacy:\n  url: {dead}\ndefault: python\nroutes:\n  - {{prefix: /users, to: python}}\n")
    assert out.returncode == 0 and out.stderr == "", out.stderr


class _Status(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status, warned", [(200, False), (404, False), (503, True)])
def test_check_asks_the_ready_path_like_the_readiness_probe(tmp_path, status, warned):
    handler = type("Handler", (_Status,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        out = _check(tmp_path, f"legacy:\n  url: {url}\ndefault: go\nroutes: []\n")
    finally:
        server.shutdown()
        server.server_close()
    assert out.returncode == 0
    assert ("warning:" in out.stderr) is warned, out.stderr
    if warned:
        assert f"is not ready (GET {url}/ answered 503)" in out.stderr


def test_check_no_probe_never_contacts_the_backend(tmp_path):
    dead = f"http://127.0.0.1:{_dead_port()}"
    out = _check(tmp_path, f"legacy:\n  url: {dead}\ndefault: go\nroutes: []\n", "--no-probe")
    assert out.returncode == 0 and out.stderr == ""


def test_the_documented_end_state_needs_no_go():
    """docs/deploy.md's routes.yaml for the retired stack: valid, all python, every prefix of the repo's file."""
    import re

    import yaml

    doc = (REPO / "docs" / "deploy.md").read_text()
    section = doc.split("## Retiring the Go backend", 1)[1]
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL) if "default: python" in b)
    t = table(block)
    assert not t.legacy_routes and t.default.state == "python"
    repo_prefixes = {r["prefix"] for r in yaml.safe_load((REPO / "routes.yaml").read_text())["routes"]}
    assert {r.prefix for r in t.routes} == repo_prefixes
