"""Hostile request bodies for Python routes, and a process that keeps sending them.

    python -m tests.support.hostile_bodies URL COOKIE SECONDS

runs three clients posting every :data:`HOSTILE` body and a fourth streaming
8 MiB bodies, for SECONDS, then prints the statuses it got as JSON. It runs in
its own process so that the test measuring latency meanwhile shares no GIL
with the attack's clients: what it measures is the gateway.
"""
from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

MIB = 1 << 20
CAP = MIB  # services.body_limit.DEFAULT_MAX_BODY


def under_cap(prefix: bytes, unit: bytes, suffix: bytes, size: int = CAP - 64) -> bytes:
    """``prefix + unit * k + suffix``, as large as fits in ``size``."""
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


HOSTILE: list[tuple[str, bytes]] = [  # (path, body): each a full bind of ~1 MiB, each a 400
    ("/sign-in", under_cap(b'{"email":[', b"1,", b"1]}")),  # the '"email": [1,1,…]'
    ("/sign-in", under_cap(b'{"email":', b'{"a":', b"1")),  # nested object keys, past Go's depth
    ("/sign-in", under_cap(b"{", b" ", b"}")),  # whitespace
    ("/sign-in", under_cap(b'{"email":[', b"[[0]],", b"0]}")),  # nested containers: the slowest shape
    ("/api_keys", under_cap(b'{"x":[', b"[[0]],", b'0],"name":5}')),  # ... skipped, then a type error
    ("/api_keys", under_cap(b"{", b'"\\u006b":1,', b'"name":[]}')),  # escaped keys, each decoded
    ("/llm/generate", under_cap(b'{"contents":[', b"{},", b'{"parts":[{"text":5}]}]}')),  # 300k structs
]


def eight_mib_chunks() -> list[bytes]:
    """The issue's 8 MiB '"email": [1,1,…]', for a chunked upload (cut at the cap)."""
    return [b'{"email":['] + [b"1," * (MIB // 2)] * 8 + [b"1]}"]


# --- a raw HTTP/1.1 client that watches for the answer while it uploads -------------------

@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client managed to hand to its socket
    closed: bool  # the server closed the connection after answering


def upload(host: str, port: int, path: str, chunks: Iterable[bytes], *, length: int | None = None,
           headers: dict[str, str] | None = None, timeout: float = 20) -> Exchange:
    """POST ``chunks`` (with ``Content-Length: length``, else chunked) and stop
    sending as soon as the server answers, as a browser does."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    sent, pending = 0, b""
    source = iter(chunks)
    try:
        while time.monotonic() < deadline:
            if not pending:
                chunk = next(source, None)
                if chunk is None:
                    if length is None:
                        pending = b"0\r\n\r\n"
                        source = iter(())
                    else:
                        break
                else:
                    pending = (b"%x\r\n%s\r\n" % (len(chunk), chunk)) if length is None else chunk
                    sent += len(chunk)
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break  # the answer (or the close) is here: stop uploading
            if writable:
                try:
                    pending = pending[sock.send(pending):]
                except (BrokenPipeError, ConnectionResetError):
                    break
                except BlockingIOError:
                    pass
    finally:
        sock.setblocking(True)
        sock.settimeout(timeout)
    return _read_answer(sock, sent)


def _read_answer(sock: socket.socket, sent: int) -> Exchange:
    data, closed = b"", False
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            more = sock.recv(65536)
            if not more:
                break
            body += more
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
    finally:
        sock.close()
    return Exchange(status, headers, body, sent, closed)


def attack(url: str, cookie: str, seconds: float) -> list[int]:
    stop = time.monotonic() + seconds
    answers: list[int] = []

    def poster(bodies: list[tuple[str, bytes]]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while time.monotonic() < stop:
                for path, body in bodies:
                    r = client.post(path, content=body, headers={"Cookie": cookie, "Content-Type": "application/json"})
                    answers.append(r.status_code)

    def streamer() -> None:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        while time.monotonic() < stop:
            answers.append(upload(host, int(port), "/sign-in", iter(eight_mib_chunks())).status)

    threads = [threading.Thread(target=poster, args=(HOSTILE[i::3],)) for i in range(3)]
    threads.append(threading.Thread(target=streamer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


if __name__ == "__main__":
    print(json.dumps(attack(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
