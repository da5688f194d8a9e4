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
