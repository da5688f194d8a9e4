"""The client address the gateway derives, and hands to Python services."""
from __future__ import annotations

import pytest

from gateway.edge.client import scope_for_python
from gateway.upstream.headers import TrustedProxies, forwarded_client

LB = TrustedProxies(["10.0.0.0/8"])


@pytest.mark.parametrize("peer,xff,client", [
    ("10.0.0.5", ["203.0.113.66"], "203.0.113.66"),  # one trusted balancer
    ("10.0.0.5", ["198.51.100.1, 203.0.113.66"], "203.0.113.66"),  # the client's own claim is left of it
    ("10.0.0.5", ["203.0.113.66, 10.0.0.9"], "203.0.113.66"),  # two trusted hops
    ("10.0.0.5", ["1.1.1.1", "203.0.113.66"], "203.0.113.66"),  # repeated headers join in order
    ("10.0.0.5", ["10.0.0.7, 10.0.0.9"], "10.0.0.7"),  # all trusted: the leftmost
    ("10.0.0.5", [], "10.0.0.5"),  # a trusted peer that forwards nothing
    ("192.0.2.1", ["203.0.113.66"], "192.0.2.1"),  # an untrusted peer's header is ignored
])
def test_forwarded_client(peer, xff, client):
    headers = [(b"x-forwarded-for", v.encode()) for v in xff]
    assert forwarded_client(headers, peer, LB) == client


def test_python_gets_the_derived_client_and_the_gateway_keeps_the_peer():
    scope = {"type": "http", "client": ("10.0.0.5", 4711), "headers": [(b"x-forwarded-for", b"203.0.113.66")]}
    python = scope_for_python(scope, LB)
    assert python["client"] == ("203.0.113.66", 0)
    assert scope["client"] == ("10.0.0.5", 4711)  # the forwarder appends the real peer
    assert scope_for_python(scope, TrustedProxies()) is scope  # no trusted proxies: nothing to do
