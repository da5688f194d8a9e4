"""The gateway's own surface (/_gateway/) on a running gateway, over real sockets:
what an anonymous client sees next to what the admin token sees, and the
secrets neither of them — nor the log, nor the CLI — ever shows (issue 14)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.gateway_proc import routes_yaml
from tests.support.standin import free_port
from tests.support.waiting import until

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"


def _with_credentials(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://ops:{PASSWORD}@{parts.netloc}"


# -- credentials in URLs: redacted everywhere ------------------------------------------


def test_a_password_in_legacy_url_never_shows(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url), env={"LEGACY_URL": _with_credentials(standin.url)})
    masked = f"http://ops:***@127.0.0.1:{urlsplit(standin.url).port}"
    assert httpx.get(gw.url + "/_standin/small").status_code == 200  # it forwards as before
    answers = {path: (httpx.get(gw.url + path), gw.admin_get(path))
               for path in ("/_gateway/health", "/_gateway/ready", "/_gateway/routes")}
    for path, (anonymous, admin) in answers.items():
        assert PASSWORD not in anonymous.text and PASSWORD not in admin.text, path
    # The admin still sees which backend, with the password masked.
    assert answers["/_gateway/health"][1].json()["upstream"]["url"] == masked
    assert answers["/_gateway/routes"][1].json()["legacy"] == masked
    assert masked in answers["/_gateway/ready"][1].json()["legacy"]
    # A rejected edit quoting a credentialed URL: the error in health and in the log.
    gw.write_config(routes_yaml("http://ops:" + PASSWORD + "@127.0.0.1:notaport"))
    until(lambda: gw.admin_get("/_gateway/health").json()["status"] == "degraded", what="the rejected edit")
    error = gw.admin_get("/_gateway/health").json()["config"]["error"]
    assert "'http://ops:***@127.0.0.1:notaport'" in error and PASSWORD not in error
    until(lambda: "routes.yaml rejected" in gw.output(), what="the rejection's log line")
    log = gw.output()
    assert PASSWORD not in log
    assert f"legacy {masked}" in log  # the startup line


def test_a_password_in_legacy_url_is_masked_in_the_502_log_line(gateway_factory):
    dead = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(routes_yaml(dead), env={"LEGACY_URL": _with_credentials(dead),
                                                 "GATEWAY_DEBUG_ERRORS": "1"})  # the body carries the detail too
    r = httpx.get(gw.url + "/users", headers={"X-Request-Id": "req-creds-1"})
    assert r.status_code == 502 and PASSWORD not in r.text
    assert f"http://ops:***@127.0.0.1:{urlsplit(dead).port}" in r.text
    line = until(lambda: next((ln for ln in gw.output().splitlines() if "req-creds-1" in ln), None),
                 what="the 502's log line")
    assert "http://ops:***@" in line and PASSWORD not in gw.output()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_a_password_in_legacy_url_is_masked_in_the_cli(tmp_path):
    config = tmp_path / "routes.yaml"
    config.write_text(routes_yaml("http://localhost:1323", "  - prefix: /ping\n    to: python\n"))
    env = {"LEGACY_URL": "http://ops:" + PASSWORD + "@10.0.0.5:1323", "GATEWAY_ADMIN_TOKEN": ""}
    runs = {
        "routes": _cli("routes", "--config", str(config), env=env),
        "routes --json": _cli("routes", "--json", "--config", str(config), env=env),
        "check": _cli("check", str(config), env=env),
        "explain": _cli("explain", "GET", "/users", "--config", str(config), env=env),
    }
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
        assert PASSWORD not in run.stdout + run.stderr, name
        assert "http://ops:***@10.0.0.5:1323" in run.stdout, (name, run.stdout)
    assert json.loads(runs["routes --json"].stdout)["legacy"] == "http://ops:***@10.0.0.5:1323"
    # A malformed LEGACY_URL is named, its password masked.
    bad = _cli("routes", "--config", str(config), env={"LEGACY_URL": "http://ops:" + PASSWORD + "@h:port"})
    assert bad.returncode != 0 and "LEGACY_URL" in bad.stderr and PASSWORD not in bad.stderr


# -- explain answers from the code path routing takes ---------------------------------

ECHO_PY = "  - prefix: /_standin/echo\n    to: python\n"  # tests/fakeservices/whoami answers it
# Raw request targets, sent byte for byte: what explain says must be what happens.
TARGETS = [
    "/_standin/echo?x=1",  # a query: the route's
    "/_standin/echo%3Fx%3D1",  # an escaped '?': one segment 'echo?x=1', no query → the default
    "/_standin/echo%3Fx%3D1?y=2",
    "/_standin%2Fecho",  # an encoded slash stays inside its segment → the default
    "/_standin/ech%6F",  # an escaped plain letter decodes → the route's
    "/_standin/echo/",  # a trailing slash is below the prefix
    "/_standin/echo?",  # an empty query
    "/_standin/echoes",  # not on a segment boundary
    "/_standin/echo/../x",  # dot segments: 400
    "/_standin/%2e%2e/echo",
    "//_standin/echo",  # an empty segment: 400
    "/_standin//echo",
    "/_gateway/health",  # the gateway's own, whatever the table says
    "/%5Fgateway/health",
    "/_gateway%2Fhealth",  # never reaches a backend either
    "/_gatewayx/health",  # not the admin prefix: routed
]


def _raw_get(port: int, target: str, request_id: str) -> tuple[int, bytes]:
    import socket
    head = f"GET {target} HTTP/1.1\r\nHost: gw\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _access_log(gw, request_id: str) -> dict | None:
    for line in gw.output().splitlines():
        if "gateway.access:" in line:
            record = json.loads(line.split("gateway.access: ", 1)[1])
            if record["request_id"] == request_id:
                return record
    return None


def test_explain_agrees_with_routing_on_raw_targets(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, ECHO_PY))
    for n, target in enumerate(TARGETS):
        explained = gw.admin_get("/_gateway/explain", path=target).json()
        status, raw = _raw_get(gw.port, target, f"xr-{n}")
        if explained["state"] == "admin":
            # Answered by the gateway itself: no access-log line, no backend saw it.
            assert status in (200, 401, 404) and b'"method"' not in raw and b"python" not in raw, (target, raw)
            assert _access_log(gw, f"xr-{n}") is None, target
            continue
        record = until(lambda: _access_log(gw, f"xr-{n}"), what=f"the access-log line of {target}")
        if explained.get("status") == 400:
            assert (status, record["backend"]) == (400, "gateway") and b"Bad request path" in raw, (target, raw)
            continue
        assert record["backend"] == explained["backend"], (target, explained, record)
        assert record["route"] == explained["route"]["prefix"], (target, explained, record)


def test_explain_names_the_admin_surface_and_rejected_paths(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, ECHO_PY))
    health = gw.admin_get("/_gateway/explain", path="/_gateway/health").json()
    assert (health["state"], health["backend"], health["route"]) == ("admin", "gateway", None)
    escaped = gw.admin_get("/_gateway/explain", path="/_standin/echo%3Fx%3D1").json()
    assert escaped["path"] == "/_standin/echo?x=1" and escaped["route"]["prefix"] == "*"
    query = gw.admin_get("/_gateway/explain", path="/_standin/echo?x=1", method="POST").json()
    assert query["path"] == "/_standin/echo" and query["backend"] == "python" and query["method"] == "POST"
    dots = gw.admin_get("/_gateway/explain", path="/_standin/echo/../x").json()
    assert dots["status"] == 400 and "dot-segments" in dots["reason"]
