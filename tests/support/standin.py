"""Start the Go stand-in for the legacy backend (tests/legacy) from tests.

    standin = start_standin(str(tmp_path / "app.db"))
    try:
        httpx.get(standin.url + "/ping")
    finally:
        standin.stop()

The binary comes from env ``STANDIN_BIN`` (default ``<repo>/.build/legacy-standin``);
when it is missing it is built with ``go build``. Pure stdlib.
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO / "tests" / "legacy"
DEFAULT_BIN = REPO / ".build" / "legacy-standin"
START_TIMEOUT = 20.0

# Variables the stand-in reads. They are not inherited from the caller's
# environment, so a developer's shell cannot change what a test sees.
_STANDIN_VARS = (
    "JUNJO_SESSION_SECRET", "JUNJO_ALLOW_ORIGINS", "JUNJO_ENV", "JUNJO_PROD_AUTH_DOMAIN",
    "JUNJO_SQLITE_PATH", "GEMINI_API_KEY", "GEMINI_BASE_URL", "STANDIN_ADDR",
    "STANDIN_SPANS_JSON",
)


class StandInError(RuntimeError):
    """The stand-in could not be built or did not come up."""


@dataclass
class StandIn:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    _log: object = field(repr=False, default=None)

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        try:
            self.log_path.unlink()
        except OSError:
            pass

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def standin_binary() -> Path:
    """The stand-in binary, built with ``go build`` when it does not exist."""
    path = Path(os.environ.get("STANDIN_BIN") or DEFAULT_BIN)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        res = subprocess.run(
            ["go", "build", "-o", str(tmp), "."],
            cwd=SOURCE_DIR, capture_output=True, text=True,
        )
    except FileNotFoundError as exc:
        raise StandInError(f"{path} is missing and `go` is not on PATH to build it "
                           "(run `make standin`)") from exc
    if res.returncode != 0:
        raise StandInError(f"go build of {SOURCE_DIR} failed:\n{res.stderr}")
    os.replace(tmp, path)  # atomic: parallel builders never see half a file
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where nothing listens while the block runs.

    A port from :func:`free_port` is free only when it is drawn: another
    test's server, or the next free_port() call, can take it (the
    validate-API-key server of test_retired_stack once listened on the port
    that test called Go's). This one is held, bound but not listening: a
    connection to it is refused, and no other socket can bind it."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]
    finally:
        held.close()


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _launch(binary: Path, sqlite_path: str, env: dict | None,
            extra_args: list[str] | None) -> StandIn:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    child_env = {k: v for k, v in os.environ.items() if k not in _STANDIN_VARS}
    child_env["JUNJO_SESSION_SECRET"] = "test-secret"
    for k, v in (env or {}).items():
        if v is None:  # None unsets, e.g. to test the missing-secret refusal
            child_env.pop(k, None)
        else:
            child_env[k] = v
    fd, log_name = tempfile.mkstemp(prefix="legacy-standin-", suffix=".log")
    log = os.fdopen(fd, "wb")
    args = [str(binary), "-addr", f"127.0.0.1:{port}", "-sqlite", sqlite_path, *(extra_args or [])]
    proc = subprocess.Popen(args, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    standin = StandIn(url=url, port=port, proc=proc, log_path=Path(log_name), _log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = standin.output()
            standin.stop()
            raise StandInError(f"legacy stand-in exited with {proc.returncode} before "
                               f"answering /ping ({' '.join(args)}):\n{out}")
        if _ping(url):
            return standin
        time.sleep(0.05)
    out = standin.output()
    standin.stop()
    raise StandInError(f"legacy stand-in did not answer {url}/ping within "
                       f"{START_TIMEOUT:.0f} s:\n{out}")


def start_standin(sqlite_path: str, env: dict | None = None,
                  extra_args: list[str] | None = None) -> StandIn:
    """Launch the stand-in on a free loopback port and wait for GET /ping.

    ``env`` overrides the child's environment (a value of None unsets a
    variable); JUNJO_SESSION_SECRET defaults to "test-secret". The JUNJO_*,
    GEMINI_* and STANDIN_* variables of the caller are not inherited.
    """
    binary = standin_binary()
    for attempt in range(3):
        try:
            return _launch(binary, sqlite_path, env, extra_args)
        except StandInError as exc:
            # Another process may have taken the free port in between.
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")
