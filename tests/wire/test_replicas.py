"""Two gateway processes as two hosts: their own ports, routes.yaml, state and
metrics directories and DuckDB files; one PostgreSQL; one ingestion service.

What a user could see differ between replicas must not: the sign-in budget,
a canary's rollback, a routes.yaml flip, their session and their data, the
spans. Durations are printed (``-s``), never asserted; tools/bench/replicas.py
measures them for docs/deploy.md.
"""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_ingestion import FakeIngestion
from tests.support.otel_gen import send_bulk
from tests.support.replicas import (
    CANARY,
    TwoHosts,
    checks_before_refusal,
    flip_convergence,
    replica_config,
    rollback_reach,
    session_cookie,
    sign_in_codes,
    start_two_hosts,
)
from tests.support.waiting import until

SERVICE = "svc/two-hosts"


@pytest.fixture(scope="module")
def ingestion() -> Iterator[FakeIngestion]:
    fake = FakeIngestion().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, postgres, standin, ingestion) -> Iterator[TwoHosts]:
    root = tmp_path_factory.mktemp("two-hosts")
    pair = start_two_hosts(
        (root / "host-a", root / "host-b"), replica_config(standin.url), postgres.new_schema_url(),
        env={"INGESTION_ADDR": ingestion.internal_addr, "OTEL_POLL_INTERVAL": "0.2"},
        per_host=lambda home: {"OTEL_DUCKDB_PATH": str(home / "otel.duckdb")})
    yield pair
    pair.stop()


def test_the_frontend_journey_crosses_hosts(hosts):
    a, b = hosts.both
    r = httpx.post(a.url + "/users/create-first-user", json={"email": "ada@example.com", "password": "pw one"},
                   headers={"Cookie": "csrf=t"}, timeout=10)
    assert r.status_code == 200, r.text
    signed_in = httpx.post(b.url + "/sign-in", json={"email": "ada@example.com", "password": "pw one"}, timeout=10)
    assert signed_in.status_code == 200  # the user made on A signs in on B...
    cookie = {"Cookie": f"session={signed_in.cookies['session']}; csrf=t"}
    assert httpx.get(a.url + "/auth-test", headers=cookie).json() == {"userEmail": "ada@example.com"}  # ...used on A
    created = httpx.post(a.url + "/api_keys", json={"name": "ci"}, headers=cookie)
    assert created.status_code == 201
    assert [k["Key"] for k in httpx.get(b.url + "/api_keys", headers=cookie).json()] == [created.json()["Key"]]
    assert httpx.post(b.url + "/users", json={"email": "bob@example.com", "password": "pw two"},
                      headers=cookie).status_code == 200
    assert {u["Email"] for u in httpx.get(a.url + "/users", headers=cookie).json()} == \
        {"bob@example.com", "ada@example.com"}  # (in one second they tie: then in insertion order)
    assert httpx.delete(b.url + f"/api_keys/{created.json()['Key']}", headers=cookie).status_code == 204
    assert httpx.get(a.url + "/api_keys", headers=cookie).json() == []


def test_a_brute_force_run_split_over_both_hosts_gets_one_budget(hosts):
    # (The spray budget is counted the same way, by the same statement: tools/bench/replicas.py measures it.)
    guesses = sign_in_codes(hosts, [("ada@example.com", f"guess {n}") for n in range(10)], client="203.0.113.66")
    assert guesses == [401] * 5 + [429] * 5  # one process's pair budget, not two
    print(f"\nlimiter across two hosts: {checks_before_refusal(guesses)} password checks on one account "
          "before the first 429")


def test_a_rollback_verdict_reaches_the_other_host(hosts):
    a, b = hosts.both
    seconds = rollback_reach(hosts, CANARY + "/200")
    print(f"\nrollback verdict from host A seen by host B after {seconds:.2f} s")
    for _ in range(20):  # B sends every client to Go now, without a single Python error of its own
        with httpx.Client() as client:
            assert client.get(b.url + CANARY + "/200").status_code == 200


def test_a_routes_flip_applied_to_both_hosts_converges(hosts, standin):
    flipped = replica_config(standin.url, extra="  - prefix: /ping\n    to: python\n")
    seconds = flip_convergence(hosts, flipped)
    print(f"\nroutes.yaml flip live on both hosts after {seconds:.2f} s")
    for gw in hosts.both:
        assert gw.admin_get("/_gateway/explain", method="GET", path="/ping").json()["backend"] == "python"
    flip_convergence(hosts, replica_config(standin.url))  # as it was, for the other tests


def test_both_hosts_read_the_whole_ingestion_wal_and_answer_alike(hosts, ingestion):
    sent = send_bulk(ingestion.otlp_addr, "", 200, service=SERVICE)
    cookie = {"Cookie": session_cookie("ada@example.com")}
    roots_path = "/otel/service/svc%2Ftwo-hosts/root-spans"

    def all_spans_on(gw) -> bool:
        roots = httpx.get(gw.url + roots_path, headers=cookie, timeout=10).json()
        if len(roots) != sent // 10:  # one workflow root per 10-span trace
            return False
        nested = httpx.get(gw.url + f"/otel/trace/{roots[0]['trace_id']}/nested-spans", headers=cookie).json()
        return len(nested) == 10

    for gw in hosts.both:
        until(lambda gw=gw: all_spans_on(gw), timeout=30, what=f"every span on {gw.url}")
    roots = httpx.get(hosts.a.url + roots_path, headers=cookie).json()
    trace, span = roots[-1]["trace_id"], roots[-1]["span_id"]
    for path in ("/otel/span-service-names", roots_path, "/otel/service/svc%2Ftwo-hosts/root-spans-filtered",
                 f"/otel/trace/{trace}/nested-spans", f"/otel/trace/{trace}/span/{span}",
                 "/otel/spans/type/workflow/svc%2Ftwo-hosts"):
        answers = [httpx.get(gw.url + path, headers=cookie, timeout=10) for gw in hosts.both]
        assert answers[0].status_code == 200, path
        assert answers[0].content == answers[1].content, path
