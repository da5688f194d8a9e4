"""Time the shared Go binder (services/common/gobind.py) on hostile JSON bodies.

    .venv/bin/python -m tools.bench.gobind_bench                  # 1, 4 and 8 MiB
    .venv/bin/python -m tools.bench.gobind_bench --sizes 1 --root /tmp/old-checkout

``--root`` binds with another checkout's ``services`` package (e.g. an older
commit exported with ``git archive <rev> services | tar -x -C /tmp/old``), to
compare before and after on the same machine. For each shape it prints the
seconds of one bind and the error it ends with; also the longest the binder
held the GIL in one go (a watcher thread's worst wake-up delay), which is what
an event loop running next to a bind in a worker thread waits at worst.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

MIB = 1 << 20


def fill(prefix: bytes, unit: bytes, suffix: bytes, size: int) -> bytes:
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


def shapes(size: int, creds: Any, gemini: Any) -> Iterator[tuple[str, Any, bytes]]:
    yield "email: [1,1,...]", creds, fill(b'{"email":[', b"1,", b"1]}", size)
    yield "email: nested object keys", creds, fill(b'{"email":', b'{"a":', b"1", size)
    yield "whitespace", creds, fill(b"{", b" ", b"}", size)
    yield "many unknown keys", creds, fill(b"{", b'"k":1,', b'"email":"a"}', size)
    yield "many escaped keys", creds, fill(b"{", b'"\\u006b":1,', b'"email":"a"}', size)
    yield "one long string", creds, fill(b'{"email":"', b"a", b'"}', size)
    yield "escapes in a string", creds, fill(b'{"email":"', b"\\n", b'"}', size)
    yield "invalid UTF-8 in a string", creds, fill(b'{"email":"', b"\xff", b'"}', size)
    yield "unterminated [1,1,...", creds, fill(b'{"email":[', b"1,", b"", size)
    yield "email: [[0],[0],...]", creds, fill(b'{"email":[', b"[0],", b"0]}", size)
    yield "email: [[[0]],...]", creds, fill(b'{"email":[', b"[[0]],", b"0]}", size)
    yield "skipped: [[[0]],...]", creds, fill(b'{"x":[', b"[[0]],", b'0],"email":"a"}', size)
    yield "llm contents [{},...]", gemini, fill(b'{"contents":[', b"{},", b"{}]}", size)
    yield "llm parts [{text},...]", gemini, fill(b'{"contents":[{"parts":[', b'{"text":"a"},', b"{}]}]}", size)


class GilWatch:
    """A thread that sleeps 1 ms at a time and records its worst lateness."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t0 - 0.001)

    def __enter__(self) -> GilWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,8", help="MiB, comma-separated")
    parser.add_argument("--root", help="bind with this checkout's services package")
    args = parser.parse_args()
    if args.root:
        sys.path.insert(0, args.root)
        for name in [m for m in sys.modules if m == "services" or m.startswith("services.")]:
            del sys.modules[name]
    from services.common.gobind import STRING, BindError, Struct, echo_bind
    from services.llm.app import GEMINI_REQUEST

    creds = Struct("SigninRequest", "auth", (("Email", "email", STRING), ("Password", "password", STRING)))
    print(f"binder: {sys.modules['services.common.gobind'].__file__}")
    for size in (int(s) for s in args.sizes.split(",")):
        for name, typ, body in shapes(size * MIB, creds, GEMINI_REQUEST):
            with GilWatch() as watch:
                t0 = time.perf_counter()
                try:
                    echo_bind(body, "application/json", typ)
                    result = "bound"
                except BindError as exc:
                    result = str(exc)[:48]
                took = time.perf_counter() - t0
            print(f"{size} MiB  {name:28s} {took:7.3f} s  GIL held up to {watch.worst * 1000:6.1f} ms  {result}",
                  flush=True)


if __name__ == "__main__":
    main()
