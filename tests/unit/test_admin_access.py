"""gateway/ops/access.py: where the admin token may come from, and the refusals."""
from __future__ import annotations

import base64
import json

import pytest

from gateway.ops.access import AdminAccess, presented_token

TOKEN = "test-admin-token-0123456789"


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize("headers,token", [
    ([(b"x-gateway-admin-token", b"abc")], b"abc"),
    ([(b"X-Gateway-Admin-Token", b" abc ")], b"abc"),
    ([(b"authorization", b"Bearer abc")], b"abc"),
    ([(b"authorization", b"bearer   abc")], b"abc"),  # the scheme is case-insensitive (RFC 9110)
    ([(b"authorization", basic("anyone", "abc"))], b"abc"),
    ([(b"authorization", basic("", "a:b"))], b"a:b"),  # the password may hold ':'
    ([(b"authorization", b"Bearer x"), (b"x-gateway-admin-token", b"abc")], b"abc"),  # the header wins
    ([(b"authorization", b"abc")], None),  # no scheme
    ([(b"authorization", b"Basic !!!")], None),
    ([(b"authorization", b"Basic " + base64.b64encode(b"nocolon"))], None),
    ([(b"authorization", b"Digest abc")], None),
    ([], None),
])
def test_where_the_token_is_read(headers, token):
    assert presented_token(headers) == token


def test_allows_only_the_configured_token():
    access = AdminAccess(TOKEN)
    assert access.allows([(b"x-gateway-admin-token", TOKEN.encode())])
    assert access.allows([(b"authorization", b"Bearer " + TOKEN.encode())])
    assert access.allows([(b"authorization", basic("admin", TOKEN))])
    for wrong in (TOKEN[:-1], TOKEN + "x", "", TOKEN.upper()):
        assert not access.allows([(b"x-gateway-admin-token", wrong.encode())])
    assert not access.allows([])


@pytest.mark.parametrize("token", [None, ""])
def test_without_a_token_nothing_is_allowed_and_the_refusal_is_403(token):
    access = AdminAccess(token)
    assert not access.configured
    assert not access.allows([(b"x-gateway-admin-token", b"")])
    refusal = access.refusal("/_gateway/routes")
    assert refusal.status_code == 403
    assert "GATEWAY_ADMIN_TOKEN" in json.loads(refusal.body)["message"]


def test_the_401_offers_bearer_and_a_browser_prompt():
    refusal = AdminAccess(TOKEN).refusal("/_gateway/status")
    assert refusal.status_code == 401
    challenges = [v for k, v in refusal.raw_headers if k == b"www-authenticate"]
    assert challenges == [b'Bearer realm="gateway admin"', b'Basic realm="gateway admin", charset="UTF-8"']
    assert TOKEN not in refusal.body.decode()
