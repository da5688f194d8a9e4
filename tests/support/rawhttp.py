"""HTTP/1.x over a plain socket, for tests that must see exactly what crosses it:
a status line and headers as written, whether the server closed the connection,
and how many descriptors and how much memory the gateway holds meanwhile."""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    head: bytes  # status line and header lines, as received
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # names lower-cased
    body: bytes = b""
    closed: bool = False  # the server closed the connection after the answer

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name.lower()), None)


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_close(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def parse(raw: bytes, closed: bool = False) -> RawResponse:
    """The final answer in ``raw`` (interim 1xx answers skipped)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1") and body:
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
    return RawResponse(status, head, headers, body, closed)


def exchange(port: int, data: bytes, timeout: float = 10) -> RawResponse:
    """Send ``data``, read until the server closes; the answer must close it."""
    with connect(port, timeout) as s:
        s.sendall(data)
        raw = read_until_close(s, timeout)
    return parse(raw, closed=True)


def read_one(sock: socket.socket, timeout: float = 10) -> RawResponse:
    """One answer with a Content-Length body, leaving the connection open."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return parse(data, closed=True)
        data += chunk
    resp = parse(data)
    length = int(resp.header(b"content-length") or 0)
    while len(resp.body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            resp.closed = True
            break
        resp.body += chunk
    return resp


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True if the server closes ``sock`` within ``within`` seconds (data before the close is dropped)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def footprint(gw) -> tuple[int, int]:
    """(descriptors less the upstream pool's, RSS in KiB) of a gateway process
    (a tests.support.gateway_proc.GatewayProc): pool connections stay open by
    design, everything else should come back to where it was."""
    pool = gw.admin_get("/_gateway/health").json()["upstream"]["open_connections"]
    return fd_count(gw.proc.pid) - pool, gw.rss_kib()


def assert_back_near(gw, before: tuple[int, int], fds_slack: int = 2, rss_slack_mib: float = 16) -> None:
    """Descriptors back within ``fds_slack`` (polled: closes take a moment), RSS within ``rss_slack_mib``."""
    from .waiting import until

    fds = before[0]
    until(lambda: footprint(gw)[0] <= fds + fds_slack, 10,
          what=f"gateway descriptors back near {fds} (now {footprint(gw)[0]})")
    grown = (gw.rss_kib() - before[1]) / 1024
    assert grown < rss_slack_mib, f"gateway RSS grew by {grown:.1f} MiB"
