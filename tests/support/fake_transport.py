"""An in-memory transport for driving the edge's protocol and cycle in process:
what they write, how many writes (each a system call on a real socket), and
whether they closed it."""
from __future__ import annotations

from typing import Any


class FakeTransport:
    def __init__(self) -> None:
        self.out = b""
        self.closed = False
        self.writes = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.out += data
        self.writes += 1

    def writelines(self, pieces: Any) -> None:  # one writev
        self.out += b"".join(pieces)
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0
