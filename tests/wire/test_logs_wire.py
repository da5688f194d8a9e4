"""The gateway's output, read from a real ``gateway serve`` process: one JSON
object per line (uvicorn's lines too), a stdout nobody reads stalls no request,
and a SIGTERM in the middle of traffic loses no access-log line."""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import signal
import threading
import uuid

import httpx

from tests.support.gateway_proc import GatewayProc, routes_yaml
from tests.support.waiting import until

PING_PY = "  - prefix: /ping\n    to: python\n"
ACCESS_FIELDS = {"time", "level", "logger", "method", "path", "status", "ms", "route", "state", "backend",
                 "service", "client", "request_id", "trace_id"}


def parse_lines(text: str) -> list[dict]:
    """Each line as JSON, nothing before the object: json.loads on the raw line."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        record = json.loads(line)  # fails on any prefix, suffix or non-JSON line
        assert isinstance(record, dict), f"line {number} is not an object: {line!r}"
        dt.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        records.append(record)
    return records


def stop(gw: GatewayProc) -> None:
    gw.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises SIGTERM after a clean shutdown: "killed by SIGTERM" is the normal end.
    assert gw.proc.wait(30) in (0, -signal.SIGTERM)


def test_every_line_of_output_is_one_json_object(gateway_factory, standin):
    """Two workers, so the lines from worker processes (forked by gateway serve,
    and which configure their logging afresh) are covered too."""
    gw = gateway_factory(routes_yaml(standin.url, PING_PY), args=["--workers", "2"])
    ids = [f"json-{i}" for i in range(20)]
    with httpx.Client(base_url=gw.url) as c:
        for request_id in ids:
            assert c.get("/ping", headers={"X-Request-Id": request_id}).status_code == 200
        c.get("/_standin/small", headers={"X-Request-Id": "json-go"})
        c.get("/api_keys/sk-secret-value-123", headers={"X-Request-Id": "json-secret"})
        assert c.get("/a/%2e%2e/b", headers={"X-Request-Id": "json-bad"}).status_code == 400
    stop(gw)

    records = parse_lines(gw.output())
    messages = [(r["logger"], r["message"]) for r in records if "message" in r]
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert any(m.startswith("Started parent process") for _, m in messages)
    assert sum(m.startswith("Finished server process") for _, m in messages) == 2  # each worker's last line
    assert any(logger == "gateway" and m.startswith("gateway up:") for logger, m in messages)

    access = {r["request_id"]: r for r in records if r["logger"] == "gateway.access"}
    assert set(ids) | {"json-go", "json-secret", "json-bad"} <= set(access)
    for record in access.values():
        assert ACCESS_FIELDS <= set(record), record
        assert record["level"] == "info"
    ping = access["json-0"]
    assert (ping["method"], ping["path"], ping["status"]) == ("GET", "/ping", 200)
    assert (ping["route"], ping["state"], ping["backend"], ping["service"]) == ("/ping", "python", "python", "ping")
    assert ping["client"] == "127.0.0.1" and ping["ms"] >= 0
    go = access["json-go"]
    assert (go["backend"], go["state"], go["service"]) == ("go", "go", None)
    assert access["json-secret"]["path"] == "/api_keys/<redacted>"
    assert "sk-secret-value-123" not in gw.output()
    assert (access["json-bad"]["status"], access["json-bad"]["state"]) == (400, None)


def test_a_stdout_nobody_reads_stalls_no_request(standin, tmp_path):
    """The gateway's stdout is a pipe shrunk to one page that nobody reads
    while 400 requests (~40 pipe-fulls of access log) go through: every one is
    answered, and every line arrives once somebody reads."""
    from tests.support.gateway_proc import start_gateway

    gw = start_gateway(routes_yaml(standin.url, PING_PY), tmp_path, stdout_pipe=True)
    try:
        assert gw.proc.stdout is not None
        fcntl.fcntl(gw.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        ids = [f"stall-{i}" for i in range(400)]
        with httpx.Client(base_url=gw.url, timeout=30) as c:  # the timeout only ends a hang
            for request_id in ids:
                assert c.get("/ping", headers={"X-Request-Id": request_id}).text == "pong"

        seen: list[dict] = []

        def read() -> None:
            assert gw.proc.stdout is not None
            for line in gw.proc.stdout:
                seen.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        until(lambda: set(ids) <= {r.get("request_id") for r in seen}, what="every access line")
        assert [r["request_id"] for r in seen if r.get("request_id", "").startswith("stall-")] == ids
    finally:
        gw.stop()


def test_sigterm_during_traffic_loses_no_access_line(gateway_factory, standin):
    """Requests keep coming when SIGTERM arrives: every request that was
    answered has its line in the output once the process has exited, and
    uvicorn's last line comes after them."""
    gw = gateway_factory(routes_yaml(standin.url, PING_PY), args=["--graceful-timeout", "10"])
    answered: list[str] = []
    stopping = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            i = 0
            while True:
                request_id = f"term-{n}-{i}-{uuid.uuid4().hex[:8]}"
                path = "/_standin/slow?ms=20" if i % 2 else "/ping"
                try:
                    r = c.get(path, headers={"X-Request-Id": request_id})
                except httpx.HTTPError:
                    if stopping.is_set():
                        return  # refused or closed: the gateway is going away
                    raise
                assert r.status_code == 200
                answered.append(request_id)
                i += 1

    clients = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    for t in clients:
        t.start()
    until(lambda: len(answered) >= 300, what="traffic under way")
    stopping.set()
    gw.proc.send_signal(signal.SIGTERM)
    for t in clients:
        t.join(60)
        assert not t.is_alive()
    assert gw.proc.wait(30) in (0, -signal.SIGTERM)

    records = parse_lines(gw.output())
    logged = {r["request_id"] for r in records if r["logger"] == "gateway.access"}
    missing = [request_id for request_id in answered if request_id not in logged]
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no access line: {missing[:5]}"
    assert records[-1]["message"].startswith("Finished server process")


def test_behind_a_trusted_proxy_the_line_names_the_client_and_the_peer(gateway_factory, standin):
    """As nginx's realip module: ``client`` is the address the gateway derives
    from a trusted proxy's X-Forwarded-For (what the limiter keys on), ``peer``
    the socket it came through; an untrusted header changes nothing."""
    gw = gateway_factory("trusted_proxies: [127.0.0.0/8]\n" + routes_yaml(standin.url, PING_PY))
    with httpx.Client(base_url=gw.url) as c:
        # A Python route, a Go one, and a path refused before routing (400).
        for path in ("/ping", "/_standin/small", "/a/%2e%2e/b"):
            c.get(path, headers={"X-Request-Id": f"via-lb{path.replace('/', '-').replace('%', '')}",
                                 "X-Forwarded-For": "198.51.100.4, 203.0.113.9"})
    plain = gateway_factory(routes_yaml(standin.url, PING_PY))
    httpx.get(plain.url + "/ping", headers={"X-Request-Id": "no-lb", "X-Forwarded-For": "203.0.113.9"})

    def record(gw: GatewayProc, request_id: str) -> dict | None:
        return next((r for r in gw.access_records() if r["request_id"] == request_id), None)

    for request_id in ("via-lb-ping", "via-lb-_standin-small", "via-lb-a-2e2e-b"):
        line = until(lambda rid=request_id: record(gw, rid), 10, what=request_id)
        assert (line["client"], line["peer"]) == ("203.0.113.9", "127.0.0.1"), line
    line = until(lambda: record(plain, "no-lb"), 10, what="no-lb")
    assert line["client"] == "127.0.0.1" and "peer" not in line
