"""The sign-in limiter behind a load balancer, over real sockets (issue 14).

The gateway trusts X-Forwarded-For from ``trusted_proxies`` only; the client it
derives from them is the address the limiter counts. The two attacks seen on a
gateway that counted the balancer's address instead: six guesses from one
client locked the owner out from another address, and one guess at each of 30
accounts from one client was never slowed.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from services.common.db import Database
from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway

OWNER, PASSWORD = "owner@example.com", "the owner's password"
ROUTES = "  - prefix: /sign-in\n    to: python\n"


def config(trusted: str) -> str:
    return routes_yaml("http://127.0.0.1:9", ROUTES) + f"trusted_proxies: [{trusted}]\n"


def start(home: Path, trusted: str) -> GatewayProc:
    db_path = home / "app_data.db"
    db = Database.from_url(f"sqlite:///{db_path}")
    db.create_user(OWNER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode())
    db.dispose()
    return start_gateway(config(trusted), home, env={"JUNJO_SQLITE_PATH": str(db_path)})


@pytest.fixture(scope="module")
def behind_balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """The test client plays the balancer: 127.0.0.1 is trusted."""
    gw = start(tmp_path_factory.mktemp("balanced"), "127.0.0.1/32")
    yield gw
    gw.stop()


def sign_in(gw: GatewayProc, client: str, email: str, password: str = "a wrong guess") -> httpx.Response:
    return httpx.post(gw.url + "/sign-in", json={"email": email, "password": password},
                      headers={"X-Forwarded-For": client}, timeout=10)


def test_a_guesser_cannot_lock_the_owner_out_from_another_address(behind_balancer):
    codes = [sign_in(behind_balancer, "203.0.113.66", OWNER).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]  # the guesser is stopped...
    r = sign_in(behind_balancer, "198.51.100.7", OWNER, PASSWORD)
    assert r.status_code == 200, r.text  # ...and the owner, elsewhere, signs in
    again = sign_in(behind_balancer, "203.0.113.66", OWNER)
    assert again.status_code == 429 and int(again.headers["retry-after"]) > 0


def test_spraying_one_guess_at_each_of_30_accounts_is_slowed(behind_balancer):
    answers = [sign_in(behind_balancer, "203.0.113.99", f"user{n}@example.com") for n in range(30)]
    codes = [r.status_code for r in answers]
    assert codes == [401] * 20 + [429] * 10  # the per-client budget (20) across accounts
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers[20:])
    # Another client behind the same balancer is not slowed by that one.
    assert sign_in(behind_balancer, "192.0.2.10", "someone@example.com").status_code == 401


def test_forwarded_addresses_from_an_untrusted_peer_buy_no_attempts(tmp_path):
    gw = start(tmp_path, "10.0.0.0/8")  # the test client is not a trusted proxy here
    try:
        codes = [sign_in(gw, f"203.0.113.{n}", OWNER).status_code for n in range(6)]
        assert codes == [401] * 5 + [429]  # a new X-Forwarded-For per guess changes nothing
    finally:
        gw.stop()
