"""CORS from routes.yaml on a running gateway: a reload changes the policy,
no `cors:` block adds nothing, the admin surface never answers CORS."""
from __future__ import annotations

import httpx

from tests.support.gateway_proc import routes_yaml
from tests.support.waiting import until

PING_PY = "  - prefix: /ping\n    to: python\n"
PREFLIGHT = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}


def test_a_reload_changes_the_policy_and_without_cors_nothing_is_added(gateway_factory, standin):
    block = "cors:\n  allow_origins: [https://a.example]\n"
    gw = gateway_factory(block + routes_yaml(standin.url, PING_PY, cors=""))
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        r = c.options("/users", headers=PREFLIGHT)
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "https://a.example"
        assert c.get("/ping", headers={"Origin": "https://a.example"}).headers["access-control-allow-origin"] \
            == "https://a.example"

        gw.write_config(block.replace("a.example", "b.example") + routes_yaml(standin.url, PING_PY, cors=""))
        until(lambda: "access-control-allow-origin" not in c.options("/users", headers=PREFLIGHT).headers,
              what="the reloaded policy")
        r = c.get("/ping", headers={"Origin": "https://b.example"})
        assert r.headers["access-control-allow-origin"] == "https://b.example"

        # No cors: block: the gateway adds nothing. The stand-in's own (Echo) CORS
        # now answers the preflight (it reflects any origin), and a Python route's
        # answer carries no CORS header at all.
        gw.write_config(routes_yaml(standin.url, PING_PY, cors=""))
        until(lambda: c.options("/users", headers=PREFLIGHT).headers.get("access-control-allow-origin")
              == "https://a.example", what="the stand-in answering the preflight")
        r = c.get("/ping", headers={"Origin": "https://a.example"})
        assert r.status_code == 200
        assert not [k for k in r.headers if k.startswith("access-control-")], r.headers
        assert "Origin" not in r.headers.get_list("vary")  # (Python's /ping varies on Cookie itself)
        r = c.get("/_standin/small", headers={"Origin": "https://b.example"})
        assert r.headers.get_list("vary") == ["Origin"]  # the stand-in's, passed through once


def test_the_admin_surface_never_answers_cors(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url))  # the junjo block, any origin reflected
    r = httpx.get(gw.url + "/_gateway/health", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and not [k for k in r.headers if k.startswith("access-control-")]
    assert "vary" not in r.headers
    assert httpx.options(gw.url + "/_gateway/health", headers=PREFLIGHT).status_code == 405


def test_cors_left_open_by_omission_is_warned_at_start_on_reload_and_in_health(gateway_factory, standin):
    # routes.yaml names JUNJO_ALLOW_ORIGINS, and nobody set it: any origin is reflected.
    text = routes_yaml(standin.url, PING_PY)
    gw = gateway_factory(text, env={"JUNJO_ALLOW_ORIGINS": ""})
    until(lambda: "CONFIG WARNING [cors_any_origin]" in gw.output(), what="the start's warning")
    assert httpx.get(gw.url + "/_gateway/health").json()["warnings"] == [{"code": "cors_any_origin"}]
    (full,) = gw.admin_get("/_gateway/health").json()["warnings"]
    assert full["code"] == "cors_any_origin" and "JUNJO_ALLOW_ORIGINS" in full["detail"]
    gw.apply_config(text + "# edited, origins still unset\n")  # a reload that keeps it so says it again
    until(lambda: gw.output().count("CONFIG WARNING [cors_any_origin]") == 2, what="the reload's warning")

    listed = gateway_factory(text, env={"JUNJO_ALLOW_ORIGINS": "https://app.example"})
    assert httpx.get(listed.url + "/_gateway/health").json()["warnings"] == []
    assert "CONFIG WARNING" not in listed.output()


def test_the_null_origin_is_never_reflected_with_credentials(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, PING_PY), env={"JUNJO_ALLOW_ORIGINS": ""})
    null = {"Origin": "null"}
    # The legacy (Echo, any origin when the list is empty) reflects it with credentials...
    go = httpx.get(standin.url + "/_standin/small", headers=null)
    assert go.headers["access-control-allow-origin"] == "null"
    assert go.headers["access-control-allow-credentials"] == "true"
    # ...the gateway does not, on Go and Python routes and preflights alike; real origins still are.
    for r in (httpx.get(gw.url + "/_standin/small", headers=null), httpx.get(gw.url + "/ping", headers=null),
              httpx.options(gw.url + "/users", headers={**null, "Access-Control-Request-Method": "POST"})):
        assert r.status_code in (200, 204)
        assert not [k for k in r.headers if k.startswith("access-control-")], r.headers
        assert "Origin" in r.headers.get_list("vary")
    r = httpx.get(gw.url + "/ping", headers={"Origin": "https://anything.example"})
    assert r.headers["access-control-allow-origin"] == "https://anything.example"
