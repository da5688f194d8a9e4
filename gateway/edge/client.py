"""The client address Python services see: the one the gateway derives.

Behind a load balancer the socket peer is the balancer. For the legacy hop the
forwarder passes the chain on (``X-Forwarded-For``, client rightmost); a Python
service is handed the address itself, in ``scope["client"]`` as uvicorn's
proxy-headers middleware would set it -- but by the gateway's own rule and only
for peers in ``trusted_proxies`` (gateway/upstream/headers.py, the one place
forwarded headers are trusted). The sign-in limiter keys on it.
"""
from __future__ import annotations

from starlette.types import Scope

from gateway.upstream.headers import TrustedProxies, forwarded_client


def client_and_peer(scope: Scope, trusted: TrustedProxies | None) -> tuple[str | None, str | None]:
    """(the client the gateway derives, the socket peer when it differs, else
    None): what the access log says, as nginx's realip module would."""
    peer = scope.get("client")
    address = peer[0] if peer else None
    if trusted is None or not trusted.networks or address is None:
        return address, None
    derived = forwarded_client(scope["headers"], address, trusted)
    return (derived, address) if derived != address else (address, None)


def scope_for_python(scope: Scope, trusted: TrustedProxies | None) -> Scope:
    """``scope``, or a copy whose ``client`` is the forwarded client when the
    peer is a trusted proxy. The gateway's own scope keeps the socket peer:
    the legacy forwarder appends it to X-Forwarded-For."""
    client, peer = client_and_peer(scope, trusted)
    return scope if peer is None else {**scope, "client": (client, 0)}
