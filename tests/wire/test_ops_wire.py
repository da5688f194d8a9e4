"""Operating the gateway, over real sockets: metrics, request ids, access log,
several workers, graceful shutdown."""
from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx

from tests.support.gateway_proc import routes_yaml
from tests.support.waiting import until as _until

PING_PY = "  - prefix: /ping\n    to: python\n"


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_are_scraped_after_real_traffic(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, PING_PY))
    with httpx.Client(base_url=gw.url) as c:
        for _ in range(5):
            assert c.get("/ping").status_code == 200
        for _ in range(3):
            assert c.get("/_standin/small").status_code == 200
        assert c.get("/_standin/status/503").status_code == 503
        scraped = c.get("/_gateway/metrics", headers={"Authorization": f"Bearer {gw.admin_token}"})  # as Prometheus
    # The classic text format, which every Prometheus version accepts.
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = scraped.text
    assert metric(text, "gateway_requests_total", route="/ping", backend="python", status="2xx") == 5
    assert metric(text, "gateway_requests_total", route="*", backend="go", status="2xx") == 3
    assert metric(text, "gateway_requests_total", route="*", backend="go", status="5xx") == 1
    assert metric(text, "gateway_request_duration_seconds_count", route="/ping", backend="python") == 5
    assert metric(text, "gateway_request_duration_seconds_bucket", route="/ping", backend="python", le="+Inf") == 5
    assert "# TYPE gateway_request_duration_seconds histogram" in text
    assert metric(text, "gateway_config_reloads_total", outcome="error") == 0


def test_upstream_errors_and_reloads_are_counted(gateway_factory, dead_url):
    gw = gateway_factory(routes_yaml(dead_url))
    assert httpx.get(gw.url + "/users").status_code == 502
    gw.apply_config(gw.config.read_text() + "  # edited\n")
    gw.write_config("routes:\n  - prefix: /x\n    to: nowhere\n")
    _until(lambda: httpx.get(gw.url + "/_gateway/health").json()["status"] == "degraded")
    text = gw.admin_get("/_gateway/metrics").text
    assert metric(text, "gateway_upstream_errors_total", route="*", kind="ConnectError") == 1
    assert metric(text, "gateway_config_reloads_total", outcome="ok") == 1
    assert metric(text, "gateway_config_reloads_total", outcome="error") == 1
    assert metric(text, "gateway_config_error") == 1
    health = gw.admin_get("/_gateway/health").json()
    assert "routes.yaml:3: routes[0].to: unknown state 'nowhere'" in health["config"]["error"]


def test_request_id_and_traceparent(gateway):
    with httpx.Client(base_url=gateway.url) as c:
        r = c.get("/_standin/echo", headers={"X-Request-Id": "abc-123",
                                             "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        assert r.headers["x-request-id"] == "abc-123"
        sent = {n.lower(): v for n, v in r.json()["headers"]}
        assert sent["x-request-id"] == "abc-123"
        assert sent["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        # Started when absent or malformed.
        r = c.get("/_standin/echo", headers={"X-Request-Id": "bad id with spaces", "traceparent": "junk"})
        sent = {n.lower(): v for n, v in r.json()["headers"]}
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        assert sent["x-request-id"] == r.headers["x-request-id"]
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", sent["traceparent"])
        # Python routes answer with one too.
        assert "x-request-id" in c.get("/ping").headers


def test_access_log_is_json_and_names_the_backend(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, PING_PY))
    httpx.get(gw.url + "/ping", headers={"X-Request-Id": "req-py"})
    httpx.get(gw.url + "/_standin/small", headers={"X-Request-Id": "req-go"})

    def lines():
        return {rec["request_id"]: rec for rec in gw.access_records()}

    _until(lambda: {"req-py", "req-go"} <= set(lines()))
    recs = lines()
    assert recs["req-py"]["backend"] == "python" and recs["req-py"]["service"] == "ping"
    assert recs["req-py"]["route"] == "/ping" and recs["req-py"]["state"] == "python"
    assert recs["req-go"]["backend"] == "go" and recs["req-go"]["state"] == "go"
    for rec in recs.values():
        assert {"method", "path", "status", "ms", "route", "state", "backend", "trace_id"} <= set(rec)



def test_two_workers_converge_on_a_reload_and_metrics_add_up(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /ping\n    to: go\n"), args=["--workers", "2"])

    def fresh_health() -> dict:
        # A new connection each time, so the kernel spreads them over workers.
        with httpx.Client() as c:
            return c.get(gw.url + "/_gateway/health", headers={"X-Gateway-Admin-Token": gw.admin_token}).json()

    pids = set()
    _until(lambda: len(pids.update([fresh_health()["pid"]]) or pids) == 2, timeout=20)
    old = fresh_health()["config"]["version"]  # before the edit: a fast reload must not hide it
    gw.write_config(routes_yaml(standin.url, PING_PY))
    new_version = None

    def all_new() -> bool:
        nonlocal new_version
        seen = {}
        for _ in range(20):
            h = fresh_health()
            seen[h["pid"]] = h["config"]["version"]
        versions = set(seen.values())
        if len(seen) == 2 and len(versions) == 1:
            new_version = versions.pop()
            return True
        return False

    _until(lambda: all_new() and new_version != old)
    n = 40
    for _ in range(n):
        with httpx.Client() as c:
            assert c.get(gw.url + "/ping").text == "pong"
    # Each worker publishes within a second; a scrape from either sees the sum.
    _until(lambda: metric(gw.admin_get("/_gateway/metrics").text,
                          "gateway_requests_total", route="/ping", backend="python") == n)


def test_sigterm_finishes_in_flight_requests_then_exits(gateway_factory, standin):
    gw = gateway_factory(routes_yaml(standin.url), args=["--graceful-timeout", "10"])
    result: dict = {}

    def slow_call():
        try:
            result["response"] = httpx.get(gw.url + "/_standin/slow?ms=1500", timeout=20)
        except httpx.HTTPError as exc:  # pragma: no cover - reported below
            result["error"] = exc

    t = threading.Thread(target=slow_call)
    t.start()
    _until(lambda: httpx.get(standin.url + "/_standin/stats").json()["active_requests"] >= 1)
    gw.proc.send_signal(signal.SIGTERM)
    # New connections are refused once shutdown begins...
    _until(lambda: _refused(gw.url))
    t.join(20)
    # ...while the request already in flight completes normally.
    assert "error" not in result, result.get("error")
    assert result["response"].status_code == 200 and result["response"].text == "slow"
    # uvicorn re-raises SIGTERM after its clean shutdown, so the exit status is
    # "terminated by SIGTERM" — what init systems expect — after a full drain.
    assert gw.proc.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gw.output()
    # The metrics directory `gateway serve` made for its workers goes with it.
    made = re.search(r"shared through file (/\S+)/rollbacks\.json", gw.output())
    assert made and not os.path.exists(made.group(1)), made


def _refused(url: str) -> bool:
    try:
        httpx.get(url + "/_gateway/health", timeout=1)
        return False
    except httpx.HTTPError:
        return True


def test_health_says_the_trace_pipeline_is_behind_when_ingestion_is_down(gateway_factory, standin, tmp_path):
    from tests.support.standin import free_port
    env = {"INGESTION_ADDR": f"127.0.0.1:{free_port()}", "OTEL_DUCKDB_PATH": str(tmp_path / "otel.duckdb"),
           "OTEL_POLL_INTERVAL": "0.2"}
    gw = gateway_factory(routes_yaml(standin.url), env=env)  # the pipeline starts at boot

    def otel() -> dict:
        return gw.admin_get("/_gateway/health").json()["services"]["otel"]

    _until(lambda: otel().get("poller", {}).get("behind") is True)
    status = otel()
    assert status["role"] == "owner" and status["poller"]["last_error"]
    assert status["poller"]["behind_by_s"] >= 0


def test_sighup_reloads_even_when_the_file_looks_unchanged(gateway_factory, standin):
    import os
    # Same length (trailing spaces are fine in YAML), and the mtime is put back:
    # polling can't tell the file changed, so only the signal can reload it.
    gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /ping\n    to: go    \n"))
    st = os.stat(gw.config)
    gw.config.write_text(routes_yaml(standin.url, "  - prefix: /ping\n    to: python\n"))
    os.utime(gw.config, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(gw.config).st_size == st.st_size
    time.sleep(0.6)  # several poll intervals
    assert gw.admin_get("/_gateway/routes").json()["routes"][0]["state"] == "go"
    gw.proc.send_signal(signal.SIGHUP)
    _until(lambda: gw.admin_get("/_gateway/routes").json()["routes"][0]["state"] == "python")
