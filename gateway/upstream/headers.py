"""Header rules for the legacy hop, in one place: hop-by-hop and X-Forwarded-*.

Headers are raw ``(name, value)`` byte pairs in arrival order throughout; a dict
would merge repeated headers such as ``Set-Cookie``.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from gateway.context import RawHeaders
from gateway.replies import stamp as stamp_answer

Fields = list[tuple[bytes, bytes, bytes]]  # (name as sent, lower-cased name, value)

# RFC 9110 §7.6.1 plus the legacy ones everybody still strips.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})


def _connection_named(headers: Sequence[tuple[bytes, bytes]]) -> frozenset[bytes]:
    named: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":  # the length first: no lower() for most
            named.update(v.strip().lower() for v in value.split(b",") if v.strip())
    return frozenset(named)


class TrustedProxies:
    """Which client addresses may hand us X-Forwarded-* headers we keep."""

    def __init__(self, networks: Iterable[str] = ()):
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __contains__(self, address: str | None) -> bool:
        if not self.networks or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def forwarded_client(headers: Sequence[tuple[bytes, bytes]], peer: str | None,
                     trusted: TrustedProxies) -> str | None:
    """The client address, as the gateway derives it: the socket peer, unless
    the peer is a trusted proxy -- then the rightmost ``X-Forwarded-For``
    address that is not itself a trusted proxy (each proxy appends the address
    it saw, so anything left of the first untrusted one is the client's own
    say). All trusted: the leftmost. uvicorn's ProxyHeadersMiddleware rule."""
    if peer not in trusted:
        return peer
    chain: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            chain += [a.strip() for a in value.decode("latin-1").split(",") if a.strip()]
    for address in reversed(chain):
        if address not in trusted:
            return address
    return chain[0] if chain else peer


# What the request filter does with a header, by lower-cased name: one dict
# lookup a header, and most headers are in none of these.
_HOP, _FWD, _EXPECT, _HOST, _LENGTH = range(5)
_KIND: dict[bytes, int] = {
    **dict.fromkeys(HOP_BY_HOP, _HOP), **dict.fromkeys(_FORWARDED, _FWD),
    b"expect": _EXPECT, b"host": _HOST, b"content-length": _LENGTH,
}


def is_chunked(value: bytes) -> bool:
    """A Transfer-Encoding value that says chunked. find(), not ``in``: see
    gateway/routing/paths.py (no TypeError raised and cleared)."""
    return value.lower().find(b"chunked") >= 0


def request_headers_for_upstream(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    client_ip: str | None,
    scheme: str,
    trusted: TrustedProxies,
    default_host: bytes | None = None,
) -> tuple[Fields, str]:
    """Headers to send upstream, and how the request body is framed.

    Returns ``(fields, body_mode)``: the fields as ``(name, lower-cased name,
    value)`` triples (httpx_fast.headers_from_fields keeps them so), and
    body_mode ``"length"``, ``"chunked"`` or ``"none"``. A chunked client body
    is re-chunked on the upstream hop (Transfer-Encoding is hop-by-hop, so it
    is re-added here). A request without Host (HTTP/1.0) gets
    ``default_host`` first, if given.
    """
    from_proxy = bool(trusted.networks) and client_ip in trusted
    extra = _connection_named(headers)
    out: Fields = []
    host = prior_xff = prior_proto = prior_host = None
    body_mode = "none"
    kinds = _KIND
    for name, value in headers:
        lname = name.lower()
        if extra and lname in extra:  # named by Connection: hop-by-hop too
            if lname == b"transfer-encoding" and is_chunked(value):
                body_mode = "chunked"
            continue
        kind = kinds.get(lname)
        if kind is None:
            out.append((name, lname, value))
        elif kind == _HOP:
            if lname == b"transfer-encoding" and is_chunked(value):
                body_mode = "chunked"
        elif kind == _FWD:
            if from_proxy:
                if lname == b"x-forwarded-for":
                    prior_xff = value if prior_xff is None else prior_xff + b", " + value
                    continue
                if lname == b"x-forwarded-proto":
                    prior_proto = value
                elif lname == b"x-forwarded-host":
                    prior_host = value
                out.append((name, lname, value))
            # else: an untrusted client's forwarded headers are dropped
        elif kind == _HOST:
            host = value
            out.append((name, lname, value))
        elif kind == _LENGTH:
            if body_mode == "none" and value.strip() != b"0":
                body_mode = "length"  # Content-Length: 0 (browsers' empty POSTs) has no body
            out.append((name, lname, value))
        # _EXPECT: dropped, uvicorn already answered 100-continue on the client hop
    if host is None and default_host is not None:
        out.insert(0, (b"host", b"host", default_host))
    if body_mode == "chunked":
        # A request with both wins as chunked (RFC 9112 §6.3); drop the length.
        out = [field for field in out if field[1] != b"content-length"]
        out.append((b"transfer-encoding", b"transfer-encoding", b"chunked"))
    ip = (client_ip or "unknown").encode()
    out.append((b"x-forwarded-for", b"x-forwarded-for", prior_xff + b", " + ip if prior_xff else ip))
    if prior_proto is None:
        out.append((b"x-forwarded-proto", b"x-forwarded-proto", scheme.encode()))
    if prior_host is None and host is not None:
        out.append((b"x-forwarded-host", b"x-forwarded-host", host))
    return out, body_mode


_CLIENT_WATCHED = frozenset({b"connection", b"date", b"x-request-id"})


def response_headers_for_client(triples: Sequence[tuple[bytes, bytes, bytes]],
                                stamp: bytes | None = None) -> RawHeaders:
    """The upstream's response headers minus hop-by-hop ones and every header
    its ``Connection`` header names; from ``(name, lower-cased name, value)``
    triples (httpx_fast.header_triples), whose names are lower-cased already.

    ``stamp`` is the request id when the gateway answers through this list
    without a wrapper of its own (gateway/app.py): an ``X-Request-Id`` and a
    ``Date`` are appended unless the upstream sent them, which this finds in
    the same pass as ``Connection``."""
    extra: set[bytes] | None = None
    has_id = has_date = False
    for _, lname, value in triples:
        if lname in _CLIENT_WATCHED:  # one set lookup for the common header
            if lname == b"connection":
                extra = (extra or set()) | {v.strip().lower() for v in value.split(b",") if v.strip()}
            elif lname == b"date":
                has_date = True
            else:
                has_id = True
    drop = HOP_BY_HOP
    if extra:
        drop = drop | extra
        # A Date or X-Request-Id the Connection header names is dropped: the
        # answer then has none of its own.
        has_date = has_date and b"date" not in extra
        has_id = has_id and b"x-request-id" not in extra
    out = [(name, value) for name, lname, value in triples if lname not in drop]
    if stamp is not None:
        stamp_answer(out, stamp, (has_id, has_date))
    return out
