"""A scripted HTTP/1.1 upstream on a loopback socket, for the edges the Go
stand-in can't be made to show on demand (stalled readers, early answers,
close-delimited bodies, held-back chunks). Each accepted connection runs the
test's ``handler(conn, head)`` in a thread."""
from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

Handler = Callable[[socket.socket, bytes], None]


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class RawUpstream:
    """``tls``: a server context; the upstream then speaks HTTPS (``url`` says so)."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.request_lines: list[bytes] = []
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):  # a client that refused our certificate
                conn.close()
                return
        with conn:
            try:
                head = read_head(conn)
                if head:
                    self.request_lines.append(head.split(b"\r\n", 1)[0])
                    self.handler(conn, head)
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


class RecordingUpstream(RawUpstream):
    """Answers 200 "ok" to every bodiless request on a keep-alive connection and
    keeps each request line: exactly what reached the backend. A target
    containing ``/slow`` is answered after ``slow_seconds``."""

    def __init__(self, slow_seconds: float = 3.0) -> None:
        self.seen: list[bytes] = []
        self.slow_seconds = slow_seconds
        super().__init__(self._answer)

    def _answer(self, conn: socket.socket, head: bytes) -> None:
        while head:
            line = head.split(b"\r\n", 1)[0]
            self.seen.append(line)
            if b"/slow" in line:
                time.sleep(self.slow_seconds)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            head = read_head(conn)
