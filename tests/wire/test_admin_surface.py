"""The gateway's own surface (/_gateway/) on a running gateway, over real sockets:
what an anonymous client sees next to what the admin token sees, and the
secrets neither of them — nor the log, nor the CLI — ever shows (issue 14)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.gateway_proc import gateway_cli, routes_yaml
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


def test_a_password_in_legacy_url_is_masked_in_the_502_log_line(gateway_factory, dead_url):
    dead = dead_url
    gw = gateway_factory(routes_yaml(dead), env={"LEGACY_URL": _with_credentials(dead),
                                                 "GATEWAY_DEBUG_ERRORS": "1"})  # the body carries the detail too
    r = httpx.get(gw.url + "/users", headers={"X-Request-Id": "req-creds-1"})
    assert r.status_code == 502 and PASSWORD not in r.text
    assert f"http://ops:***@127.0.0.1:{urlsplit(dead).port}" in r.text
    line = until(lambda: next((ln for ln in gw.lines() if "req-creds-1" in ln), None),
                 what="the 502's log line")
    assert "http://ops:***@" in line and PASSWORD not in gw.output()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    return gateway_cli(*args, env={**os.environ, **env})


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
    for record in gw.access_records():
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
        record = until(lambda rid=f"xr-{n}": _access_log(gw, rid), what=f"the access-log line of {target}")
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


# -- who sees what ----------------------------------------------------------------------

PUBLIC_HEALTH = {"status", "uptime_s", "warnings"}  # all anyone sees of /_gateway/health
CLOSED = ("/_gateway/routes", "/_gateway/explain?path=/users&user=ada@example.com", "/_gateway/metrics",
          "/_gateway/status", "/_gateway/status.json")


def _get(gw, path: str, **headers: str) -> httpx.Response:
    return httpx.get(gw.url + path, headers=headers, timeout=10)


def test_anonymous_health_and_ready_are_status_words_and_numbers(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))
    health, ready = _get(gw, "/_gateway/health"), _get(gw, "/_gateway/ready")
    assert health.status_code == 200 and set(health.json()) == PUBLIC_HEALTH
    assert health.json()["status"] == "ok"
    assert all(set(w) == {"code"} for w in health.json()["warnings"])  # codes only, no detail
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    for r in (health, ready):
        assert "127.0.0.1" not in r.text and "routes.yaml" not in r.text and str(gw.proc.pid) not in r.text
        assert r.headers["cache-control"] == "no-store"
    # A wrong token is no token: liveness never fails on credentials, and shows nothing more.
    assert set(_get(gw, "/_gateway/health", **{"X-Gateway-Admin-Token": "wrong"}).json()) == PUBLIC_HEALTH
    # The admin token sees the detail ops need.
    full = gw.admin_get("/_gateway/health").json()
    assert full["pid"] == gw.proc.pid and full["config"]["path"] == str(gw.config)
    assert full["upstream"]["url"] == standin.url and "services" in full
    assert gw.admin_get("/_gateway/ready").json() == {"ready": True, "legacy": f"GET {standin.url}/ping answered 200"}


def test_a_rejected_edit_shows_degraded_to_anyone_and_the_error_only_with_the_token(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))
    gw.write_config("routes:\n  - prefix: /x\n    to: nowhere\n")
    until(lambda: _get(gw, "/_gateway/health").json()["status"] == "degraded", what="the rejected edit")
    anonymous = _get(gw, "/_gateway/health")
    assert set(anonymous.json()) == PUBLIC_HEALTH and "nowhere" not in anonymous.text
    error = gw.admin_get("/_gateway/health").json()["config"]["error"]
    assert f"{gw.config}:3: routes[0].to: unknown state 'nowhere'" in error


def test_ready_says_503_to_anyone_and_why_to_the_token(gateway_factory, dead_url):
    dead = dead_url
    gw = gateway_factory(routes_yaml(dead))
    r = _get(gw, "/_gateway/ready")
    assert r.status_code == 503 and r.json() == {"ready": False}
    r = gw.admin_get("/_gateway/ready")
    assert r.status_code == 503 and r.json()["legacy"].startswith(f"GET {dead}/ping failed")


def test_the_rest_of_the_surface_needs_the_token(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))
    token = gw.admin_token
    import base64
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    for path in CLOSED:
        for headers in ({}, {"X-Gateway-Admin-Token": "wrong"}, {"Authorization": "Bearer wrong"},
                        {"Authorization": f"Bearer {token[:-1]}"}, {"Authorization": f"Basic {basic[:-4]}"},
                        {"Authorization": token}):
            r = _get(gw, path, **headers)
            assert r.status_code == 401, (path, headers, r.status_code)
            assert r.headers.get_list("www-authenticate") == ['Bearer realm="gateway admin"',
                                                             'Basic realm="gateway admin", charset="UTF-8"']
            assert "X-Gateway-Admin-Token" in r.json()["message"]
            assert "ada@example.com" not in r.text and "go" not in r.json()  # nothing of the answer leaks
            assert r.headers["cache-control"] == "no-store"
        for headers in ({"X-Gateway-Admin-Token": token}, {"Authorization": f"Bearer {token}"},
                        {"Authorization": f"bearer {token}"}, {"Authorization": f"Basic {basic}"}):
            r = _get(gw, path, **headers)
            assert r.status_code == 200, (path, headers, r.text)
            assert r.headers["cache-control"] == "no-store"
    explained = gw.admin_get("/_gateway/explain", path="/users", user="ada@example.com").json()
    assert explained["backend"] == "go"


def test_without_a_configured_token_the_rest_answers_403_saying_how_to_open_it(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url), env={"GATEWAY_ADMIN_TOKEN": ""})
    for path in CLOSED:
        for headers in ({}, {"X-Gateway-Admin-Token": ""}, {"Authorization": "Bearer"}):
            r = _get(gw, path, **headers)
            assert r.status_code == 403, (path, headers)
            assert "GATEWAY_ADMIN_TOKEN" in r.json()["message"]
    assert set(_get(gw, "/_gateway/health").json()) == PUBLIC_HEALTH
    # The log is written in batches: wait for this line itself, not for any output.
    until(lambda: "GATEWAY_ADMIN_TOKEN is not set" in gw.output(), what="the start's warning")


def test_no_admin_answer_redirects_or_builds_a_url_from_the_host_header(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))
    paths = ["/_gateway/health/", "/_gateway/ready/", "/_gateway/routes/", "/_gateway/status/", "/_gateway",
             "/_gateway/", "/_gateway/nope", "/_gateway/health//", "/%5Fgateway/health/", "/_gateway%2Fhealth/"]
    for path in paths:
        for headers in ({}, {"X-Gateway-Admin-Token": gw.admin_token}):
            r = httpx.get(gw.url + path, headers={"Host": "evil.example", **headers}, timeout=10)
            assert r.status_code in (400, 404), (path, r.status_code, r.headers)  # 400: '//' is refused
            assert "location" not in r.headers and "evil.example" not in r.text, path
    # The exact paths answer, whatever Host says, and never echo it.
    for path in ("/_gateway/health", "/_gateway/ready", *CLOSED):
        r = httpx.get(gw.url + path, headers={"Host": "evil.example", "X-Gateway-Admin-Token": gw.admin_token})
        assert r.status_code == 200 and "evil.example" not in r.text, path


def test_the_admin_surface_never_answers_cors_whatever_the_path_looks_like(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))  # junjo's CORS block: any origin reflected elsewhere
    origin = {"Origin": "https://evil.example"}
    preflight = {**origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    assert httpx.get(gw.url + "/_standin/small", headers=origin).headers["access-control-allow-origin"] \
        == "https://evil.example"  # the rest of the gateway does answer CORS
    for path in ("/_gateway/health", "/_gateway/ready", "/%5Fgateway/health", *CLOSED, "/_gateway/nope"):
        for token in ({}, {"X-Gateway-Admin-Token": gw.admin_token}):
            r = httpx.get(gw.url + path, headers={**origin, **token})
            assert not [k for k in r.headers if k.startswith("access-control-")], (path, r.headers)
            r = httpx.options(gw.url + path, headers={**preflight, **token})
            assert r.status_code in (404, 405) and not [k for k in r.headers if k.startswith("access-control-")]


def test_shadow_diff_samples_never_show_addresses_or_tokens(gateway_factory, standin):
    # raw_head (the request head as Go received it) is compared: Python's mirror has none,
    # so the sample shows Go's — the request line with the client's query in it.
    mirror = ("  - prefix: /_standin/echo/mirror\n    to: shadow\n"
              "    diff:\n      ignore: [\"$.headers\", \"$.dry_run_writes\"]\n")
    gw = gateway_factory(routes_yaml(standin.url, mirror))
    # A token_urlsafe(32)-shaped key, fixed: about 1 in 10,000 fresh ones reads
    # as a word to the masking heuristic (gateway/redact.py, looks_random).
    key = "Vq3tXe9LmK2pR7sB0wYc-4HjN8dZ_gFa6UoT1iQbE5x"
    assert httpx.get(gw.url + f"/_standin/echo/mirror/ok?email=ada.lovelace@example.com&ref={key}").status_code == 200

    def sample() -> str | None:
        routes = {r["prefix"]: r for r in gw.admin_get("/_gateway/status.json").json()["routes"]}
        diffs = routes["/_standin/echo/mirror"]["top_differences"]
        return next((d["sample"] for d in diffs if d["field"] == "body:$.raw_head"), None)

    shown = until(sample, what="the raw_head difference's sample")
    assert "<email len=24>" in shown and "<token len=43>" in shown, shown
    assert "GET /_standin/echo/mirror/ok?email=" in shown  # the rest stays readable
    for page in (gw.admin_get("/_gateway/status.json").text, gw.admin_get("/_gateway/status").text):
        assert "lovelace" not in page and key not in page
