"""The end state: Go retired. No legacy process anywhere, and the product still works.

The stack, as docker-compose.retired.yml runs it, on loopback ports:

* the gateway (`gateway serve`), every route `python` and `default: python`,
  `legacy.url` pointing at a port nothing listens on;
* the ValidateApiKey gRPC server, started and supervised by `gateway serve`
  itself (VALIDATE_API_KEY_ADDR), answering from the gateway's SQLite file;
* a fake ingestion service (tests/support/fake_ingestion.py) that, like the real
  one, opens its ports only once its start-up ValidateApiKey call got an
  answer, checks every export's API key with that server, and whose WAL the
  gateway's own poller (the only span pipeline) reads.

The frontend's journey runs through it with a browser-like cookie jar: setup
check, first user, sign in, users page, an API key, spans exported with that
key and served by /otel, sign out.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from services.otel.proto import ingestion_pb2, ingestion_pb2_grpc
from tests.support.browser_jar import BrowserJar, set_cookie
from tests.support.fake_ingestion import FakeIngestion
from tests.support.gateway_proc import GatewayProc, gateway_cli, routes_yaml, start_gateway
from tests.support.processes import alive, children
from tests.support.standin import free_port, refused_port
from tests.support.waiting import until

REPO = Path(__file__).resolve().parents[2]
SECRET = "retired-stack-secret"
FRONTEND = "http://localhost:5153"
ADMIN, ADMIN_PW = "admin@retired.example", "retired first user pw"
MEMBER, MEMBER_PW = "member@retired.example", "retired member pw"
SERVICE = "retired-svc"
UNAUTHORIZED = b'{"message":"Unauthorized: No valid session"}\n'
# Every prefix the legacy serves, each on python, like the repo's routes.yaml at the end.
PREFIXES = ("/ping", "/sign-in", "/sign-out", "/auth-test", "/csrf", "/users", "/api_keys", "/llm", "/otel")
STARTED = re.compile(r"ValidateApiKey server on (\S+) started \(pid (\d+)\)")


def all_python(legacy_url: str) -> str:
    routes = "".join(f"  - prefix: {p}\n    to: python\n" for p in PREFIXES)
    return routes_yaml(legacy_url, routes, default="python")


def nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def server_pids(gw: GatewayProc) -> list[int]:
    return [int(m.group(2)) for m in STARTED.finditer(gw.output())]


def auth_processes(port: int) -> list[int]:
    """Processes running the ValidateApiKey server on ``port`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"services.otel.auth_service" in argv and str(port).encode() in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def uvicorn_workers(gw: GatewayProc) -> list[int]:
    """The worker processes of a --workers gateway: forked by uvicorn's
    supervisor, its children but the ValidateApiKey server."""
    return [pid for pid, argv in children(gw.proc.pid) if b"services.otel.auth_service" not in argv]


def validate(addr: str, key: str, timeout: float = 10) -> bool:
    with grpc.insecure_channel(addr) as channel:
        stub = ingestion_pb2_grpc.InternalAuthServiceStub(channel)
        request = ingestion_pb2.ValidateApiKeyRequest(api_key=key)
        return stub.ValidateApiKey(request, timeout=timeout, wait_for_ready=True).is_valid


@dataclass
class Retired:
    gw: GatewayProc
    ingestion: FakeIngestion
    auth_addr: str
    legacy_port: int


def gateway_env(root: Path, auth_addr: str, ingestion_addr: str) -> dict[str, str]:
    return {
        "JUNJO_SESSION_SECRET": SECRET, "JUNJO_SESSION_SECRETS_PREVIOUS": "", "JUNJO_ENV": "",
        "JUNJO_ALLOW_ORIGINS": FRONTEND, "DATABASE_URL": "",
        "JUNJO_SQLITE_PATH": str(root / "app_data.db"),  # a new file: no Go ever made it
        "OTEL_DUCKDB_PATH": str(root / "otel.duckdb"),
        "INGESTION_ADDR": ingestion_addr, "OTEL_POLL_INTERVAL": "0.2",
        "VALIDATE_API_KEY_ADDR": auth_addr,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retired]:
    root = tmp_path_factory.mktemp("retired")
    # Nothing ever listens on the legacy port: it is held for the whole module
    # (refused_port), as two free_port() calls once returned the same port and
    # the validate-API-key server listened on "Go's" port.
    with refused_port() as legacy_port:
        auth_addr = f"127.0.0.1:{free_port()}"
        ingestion = FakeIngestion(auth_addr=auth_addr)
        # Ingestion first, as compose may start it: it waits for its start-up call
        # to be answered before it opens its ports.
        failure: list[BaseException] = []

        def boot() -> None:
            try:
                ingestion.start(startup_check=True)
            except Exception as exc:
                failure.append(exc)

        booting = threading.Thread(target=boot, daemon=True)
        booting.start()
        gw = start_gateway(all_python(f"http://127.0.0.1:{legacy_port}"), root,
                           env=gateway_env(root, auth_addr, ingestion.internal_addr))
        try:
            booting.join(60)
            assert not booting.is_alive() and not failure, f"ingestion did not boot: {failure} {gw.output()[-2000:]}"
            yield Retired(gw, ingestion, auth_addr, legacy_port)
        finally:
            gw.stop()
            ingestion.stop()


def test_ingestion_boots_on_the_gateways_validate_api_key_answer(stack):
    # The one start-up call got an answer (no such key), not an error: ingestion opened its ports.
    assert stack.ingestion.startup_answer is False
    assert len(server_pids(stack.gw)) == 1
    assert nothing_listens(stack.legacy_port)


def test_ready_and_health_with_no_go_anywhere(stack):
    r = stack.gw.admin_get("/_gateway/ready")
    assert r.status_code == 200 and r.json()["ready"] is True, r.text
    health = stack.gw.admin_get("/_gateway/health").json()
    assert health["status"] == "ok"
    routes = stack.gw.admin_get("/_gateway/routes").json()
    assert routes["default"] == "python" and routes["legacy_in_use"] is False
    assert {r["state"] for r in routes["routes"]} == {"python"}


def test_gateway_check_has_nothing_to_warn_about(stack):
    # As production runs it: the frontend's origin set, so no open-CORS warning either.
    env = {**os.environ, "JUNJO_ALLOW_ORIGINS": "https://app.example.com"}
    out = gateway_cli("check", str(stack.gw.config), env=env)
    assert out.returncode == 0 and "warning" not in out.stderr, out.stderr


def test_the_frontends_whole_journey(stack):
    gw = stack.gw
    with BrowserJar(gw.url) as jar:
        # The setup page: a database no Go ever touched.
        r = jar.get("/users/db-has-users")
        assert (r.status_code, r.json()) == (200, {"usersExist": False})
        assert "csrf" in jar.cookies
        r = jar.post("/users/create-first-user", json={"email": ADMIN, "password": ADMIN_PW})
        assert (r.status_code, r.content) == (200, b'{"message":"First user created successfully"}\n')
        assert jar.get("/users/db-has-users").json() == {"usersExist": True}

        # Sign in.
        assert jar.get("/csrf").status_code == 200
        r = jar.post("/sign-in", json={"email": ADMIN, "password": ADMIN_PW})
        assert (r.status_code, r.content) == (200, b'{"message":"signed in"}\n'), r.text
        assert set_cookie(r, "session").attr("Max-Age") == "2592000"
        assert jar.get("/auth-test").json() == {"userEmail": ADMIN}

        # The users page.
        r = jar.post("/users", json={"email": MEMBER, "password": MEMBER_PW})
        assert (r.status_code, r.content) == (200, b'{"message":"User created successfully"}\n')
        users = jar.get("/users").json()
        assert {u["Email"] for u in users} == {MEMBER, ADMIN}
        assert [u["CreatedAt"] for u in users] == sorted((u["CreatedAt"] for u in users), reverse=True)

        # An API key, then the list.
        r = jar.post("/api_keys", json={"name": "retired"})
        assert r.status_code == 201, r.text
        key = r.json()["Key"]
        assert len(key) == 64 and key in [k["Key"] for k in jar.get("/api_keys").json()]

        # The ingestion service asks the gateway's server about that key...
        assert validate(stack.auth_addr, key) is True
        assert validate(stack.auth_addr, key.lower() if key != key.lower() else key.upper()) is False
        # ...so an SDK exporting with it is accepted, and one with a wrong key is not.
        exported = subprocess.run(
            [sys.executable, "-m", "tests.support.otel_gen", "junjo", "--endpoint", stack.ingestion.otlp_addr,
             "--api-key", key, "--service", SERVICE, "--runs", "1"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert exported.returncode == 0, exported.stderr
        with grpc.insecure_channel(stack.ingestion.otlp_addr) as channel, pytest.raises(grpc.RpcError) as refused:
            TraceServiceStub(channel).Export(ExportTraceServiceRequest(),
                                             metadata=[("x-junjo-api-key", "x" * 64)], timeout=10)
        assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid API key")

        # The spans reach /otel through the gateway's own poller.
        until(lambda: jar.get("/otel/span-service-names").json() == [SERVICE], 60,
              f"{SERVICE} served by /otel (health: {gw.admin_get('/_gateway/health').json()['services'].get('otel')})")
        roots = jar.get(f"/otel/service/{SERVICE}/root-spans").json()
        assert roots and all(s["service_name"] == SERVICE and s["parent_span_id"] is None for s in roots)
        workflows = jar.get(f"/otel/spans/type/workflow/{SERVICE}").json()
        assert len(workflows) == 1
        nested = jar.get(f"/otel/trace/{workflows[0]['trace_id']}/nested-spans").json()
        assert {s["trace_id"] for s in nested} == {workflows[0]["trace_id"]}
        assert len(nested) == len(stack.ingestion.wal) > 1  # the run's one trace, every span of it

        # A deleted key is refused by the server from then on.
        assert jar.delete(f"/api_keys/{key}").status_code == 204
        assert validate(stack.auth_addr, key) is False

        # A path no feature serves: the legacy's answer.
        r = jar.get("/no/such/page")
        assert (r.status_code, r.content) == (404, b'{"message":"Not Found"}\n')

        # Sign out.
        r = jar.post("/sign-out")
        assert (r.status_code, r.content) == (200, b'{"message":"signed out"}\n')
        assert "session" not in jar.cookies
        assert (jar.get("/auth-test").status_code, jar.get("/no/such/page").content) == (401, UNAUTHORIZED)


def test_the_frontend_calls_cross_origin(stack):
    """The unchanged frontend calls the API from its own origin, with credentials."""
    preflight = httpx.options(stack.gw.url + "/api_keys", timeout=10, headers={
        "Origin": FRONTEND, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-csrf-token"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    assert preflight.headers["access-control-allow-credentials"] == "true"
    r = httpx.get(stack.gw.url + "/users/db-has-users", headers={"Origin": FRONTEND}, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == FRONTEND


def test_nothing_was_ever_sent_to_go(stack):
    def served() -> list[str]:
        metrics = stack.gw.admin_get("/_gateway/metrics").text
        return [line for line in metrics.splitlines() if line.startswith("gateway_requests_total{")]

    # Requests of its own on every route family, signed out (401s count too):
    # under xdist the journey may have run on another worker's stack.
    with httpx.Client(base_url=stack.gw.url) as client:
        for path in ("/ping", "/csrf", "/users/db-has-users", "/auth-test", "/users", "/api_keys",
                     "/otel/span-service-names", "/no-such-route"):
            client.get(path)
    # Workers publish their counts once a second: wait for them to show.
    counted = until(lambda: any('route="/otel"' in line for line in served()) and served(), 15,
                    "the requests in /_gateway/metrics")
    assert not [line for line in counted if 'backend="go"' in line], counted
    metrics = stack.gw.admin_get("/_gateway/metrics").text
    assert "gateway_upstream_errors_total{" not in metrics
    assert nothing_listens(stack.legacy_port)


def test_the_validate_api_key_server_is_restarted_when_it_dies(stack):
    (first,) = server_pids(stack.gw)
    assert auth_processes(int(stack.auth_addr.rsplit(":", 1)[1])) == [first]
    os.kill(first, signal.SIGKILL)
    pids = until(lambda: (p := server_pids(stack.gw)) and len(p) == 2 and p, 30, "a second server started")
    assert pids[1] != first and not alive(first)
    assert "was killed by SIGKILL; restarting in" in stack.gw.output()
    assert validate(stack.auth_addr, "startup-readiness-check") is False  # answering again


def test_sigterm_stops_the_server_with_the_gateway(stack):
    """Last in this module: stops the shared gateway."""
    pid = server_pids(stack.gw)[-1]
    stack.gw.proc.send_signal(signal.SIGTERM)
    assert stack.gw.proc.wait(30) in (0, -signal.SIGTERM)
    assert not alive(pid)
    # Stopped by the gateway (its stdin closed, or SIGTERM if it lingers), not left running.
    assert re.search(rf"ValidateApiKey server on \S+ stopped \(pid {pid}, ", stack.gw.output())


# ---- one server per host, however the gateway runs --------------------------------

def lone_gateway(tmp_path: Path, *args: str) -> tuple[GatewayProc, str]:
    auth_addr = f"127.0.0.1:{free_port()}"
    env = gateway_env(tmp_path, auth_addr, f"127.0.0.1:{free_port()}")
    gw = start_gateway(all_python(f"http://127.0.0.1:{free_port()}"), tmp_path, env=env, args=list(args))
    return gw, auth_addr


def test_one_server_for_all_workers(tmp_path):
    gw, auth_addr = lone_gateway(tmp_path, "--workers", "2")
    try:
        assert validate(auth_addr, "startup-readiness-check") is False
        workers = until(lambda: len(w := uvicorn_workers(gw)) == 2 and w, 30, "two uvicorn workers")
        assert all(httpx.get(gw.url + "/ping", timeout=10).content == b"pong" for _ in range(4))
        port = int(auth_addr.rsplit(":", 1)[1])
        assert auth_processes(port) == server_pids(gw) and len(server_pids(gw)) == 1
        # Started by `gateway serve` itself, not by a worker.
        assert [pid for pid, argv in children(gw.proc.pid) if b"services.otel.auth_service" in argv] == \
            server_pids(gw)
        assert not any(children(worker) for worker in workers)
    finally:
        assert gw.stop(30) == 0  # uvicorn's supervisor exits 0 after SIGTERM
    assert not auth_processes(port)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_server_does_not_outlive_a_killed_gateway(tmp_path, workers):
    """With two workers, forked from gateway serve: they outlive its SIGKILL
    (orphans, as uvicorn leaves them), but hold no end of the server's stdin."""
    gw, auth_addr = lone_gateway(tmp_path, "--workers", workers)
    orphans: list[int] = []
    try:
        assert validate(auth_addr, "startup-readiness-check") is False
        (pid,) = server_pids(gw)
        if workers == "2":
            orphans = until(lambda: len(w := uvicorn_workers(gw)) == 2 and w, 30, "two uvicorn workers")
        gw.proc.kill()  # no chance to stop anything: the server sees its stdin close
        gw.proc.wait(10)
        until(lambda: not alive(pid), 30, "the orphaned server to exit")
    finally:
        gw.stop()
        for orphan in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)
