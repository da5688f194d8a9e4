"""/otel through the real gateway: two workers while the poller writes, and
answer-for-answer parity with the Go stand-in on the same rows."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from services.otel.store import SpanStore
from tests.support.fake_ingestion import FakeIngestion
from tests.support.gateway_proc import routes_yaml
from tests.support.otel_gen import send_bulk
from tests.support.otel_spans import SECRET, all_rows, cookie, serving_pipeline, sid, tid
from tests.support.standin import start_standin


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    yield from serving_pipeline(tmp_path_factory)


def _gateway_env(db: Path, fake: FakeIngestion) -> dict[str, str]:
    return {"OTEL_DUCKDB_PATH": str(db), "INGESTION_ADDR": fake.internal_addr, "OTEL_POLL_INTERVAL": "0.2",
            "JUNJO_SESSION_SECRET": SECRET}


OTEL_ROUTE = "  - prefix: /otel\n    to: python\n"


def test_two_workers_serve_while_the_poller_writes(gateway_factory, tmp_path):
    fake = FakeIngestion().start()
    try:
        send_bulk(fake.otlp_addr, "", 300, service="svc/one")
        gw = gateway_factory(routes_yaml("http://127.0.0.1:9", OTEL_ROUTE),
                             env=_gateway_env(tmp_path / "o.duckdb", fake), args=["--workers", "2"])
        stop = threading.Event()

        def writer():
            n = 0
            while not stop.is_set():
                send_bulk(fake.otlp_addr, "", 50, service=f"w{n}")
                n += 1
                time.sleep(0.05)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        statuses = []
        try:
            deadline = time.monotonic() + 8
            seen_svc = False
            while time.monotonic() < deadline:
                with httpx.Client(base_url=gw.url, headers={"Cookie": cookie()}) as c:  # new connection each time
                    r = c.get("/otel/span-service-names")
                    statuses.append(r.status_code)
                    if r.status_code == 200 and "svc/one" in r.json():
                        seen_svc = True
                        rr = c.get("/otel/service/svc%2Fone/root-spans")
                        statuses.append(rr.status_code)
                        assert len(rr.json()) == 30
                if seen_svc and len(statuses) > 40:
                    break
            assert seen_svc
        finally:
            stop.set()
            t.join(5)
        assert set(statuses) == {200}, statuses
        lock = Path(str(tmp_path / "o.duckdb") + ".lock")
        owner_pid = int(lock.read_text())
        assert owner_pid != gw.proc.pid  # a worker owns it, not the supervisor
        # The owner worker dies: a surviving (or restarted) worker takes over.
        os.kill(owner_pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                with httpx.Client(base_url=gw.url, headers={"Cookie": cookie()}, timeout=10) as c:
                    r = c.get("/otel/service/svc%2Fone/root-spans")
                    ok = r.status_code == 200 and len(r.json()) == 30
            except httpx.HTTPError:
                pass
            if not ok:
                time.sleep(0.2)
        assert ok, gw.output()[-3000:]
        assert int(lock.read_text()) != owner_pid
    finally:
        fake.stop()


def test_parity_with_the_go_standin(gateway_factory, tmp_path, pipeline):
    fixture = tmp_path / "spans.json"
    fixture.write_text(json.dumps(pipeline.store.dump_rows()))
    standin = start_standin(str(tmp_path / "app.db"), env={"STANDIN_SPANS_JSON": str(fixture),
                                                           "JUNJO_SESSION_SECRET": SECRET})
    try:
        # One gateway sends /otel to Go, the other to Python; both read the same rows.
        go_gw = gateway_factory(routes_yaml(standin.url, "  - prefix: /otel\n    to: go\n"),
                                env={"JUNJO_SESSION_SECRET": SECRET})
        py_dir = tmp_path / "py"
        py_dir.mkdir()
        db_copy = py_dir / "copy.duckdb"
        copy = SpanStore(str(db_copy))
        copy.ingest(all_rows(), b"\x00" * 16)
        copy.close()
        from tests.support.gateway_proc import start_gateway
        py_gw = start_gateway(routes_yaml(standin.url, OTEL_ROUTE), py_dir,
                              env={"JUNJO_SESSION_SECRET": SECRET, "OTEL_DUCKDB_PATH": str(db_copy),
                                   "INGESTION_ADDR": "127.0.0.1:9"})
        try:
            paths = [
                "/otel/span-service-names", "/otel/span-service-names?pretty",
                "/otel/service/%C3%BC%20x/root-spans", "/otel/spans/type/workflow/%C3%BC%20x",
                "/otel/service/many/root-spans", "/otel/service/other%20service/root-spans?pretty=1",
                "/otel/service/nobody/root-spans",
                f"/otel/trace/{tid(1)}/nested-spans", f"/otel/trace/{tid(2)}/nested-spans?pretty",
                f"/otel/trace/{tid(1)}/span/{sid(1)}", f"/otel/trace/{tid(4)}/span/{sid(30)}",
                f"/otel/trace/{tid(4)}/span/{sid(31)}",
            ]
            for path in paths:
                go = httpx.get(go_gw.url + path, headers={"Cookie": cookie()})
                py = httpx.get(py_gw.url + path, headers={"Cookie": cookie()})
                assert (py.status_code, py.headers["content-type"]) == (go.status_code, go.headers["content-type"]), path
                if path.endswith("/many/root-spans"):
                    # LIMIT 500 over equal-free start times: same set, same order
                    assert py.json() == go.json(), path
                assert py.content == go.content, f"{path}\n go: {go.content[:400]!r}\n py: {py.content[:400]!r}"
            # Deliberate difference: with %2F in the path Echo matches the still-escaped
            # text, so a service name holding a slash is unreachable on the legacy.
            for path in ["/otel/service/svc%20a%2Fb%20%C3%BC/root-spans",
                         "/otel/spans/type/workflow/svc%20a%2Fb%20%C3%BC"]:
                go = httpx.get(go_gw.url + path, headers={"Cookie": cookie()})
                py = httpx.get(py_gw.url + path, headers={"Cookie": cookie()})
                assert go.content == b"[]\n" and py.status_code == 200 and len(py.json()) >= 1
            # Deliberate difference (docs/migrating-traces.md): lower-case escapes
            # differ from Go's own escaping, so Echo keeps them in the param and
            # finds nothing; Python decodes them. Browsers send upper case, which
            # both sides decode alike (the parity loop above).
            lower, upper = "/otel/service/%c3%bc%20x/root-spans", "/otel/service/%C3%BC%20x/root-spans"
            go = httpx.get(go_gw.url + lower, headers={"Cookie": cookie()})
            py = httpx.get(py_gw.url + lower, headers={"Cookie": cookie()})
            assert (go.status_code, go.content) == (200, b"[]\n")
            go_upper = httpx.get(go_gw.url + upper, headers={"Cookie": cookie()})
            assert py.status_code == 200 and py.content == go_upper.content != b"[]\n"
        finally:
            py_gw.stop()
    finally:
        standin.stop()
