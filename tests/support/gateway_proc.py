"""Run the real gateway (``gateway serve``) in a subprocess on a free loopback port."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .forkserver import REPO, ForkedProcess, fork_server, forking
from .standin import free_port
from .waiting import until

START_TIMEOUT = 20.0
ADMIN_TOKEN = "test-admin-token"  # GATEWAY_ADMIN_TOKEN of every test gateway unless env= says otherwise


def config_version(text: str) -> str:
    """The table version the gateway reports for a routes.yaml with this text."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class GatewayProc:
    url: str
    port: int
    proc: subprocess.Popen
    config: Path
    log_path: Path
    admin_token: str = ADMIN_TOKEN
    # What lines() and log_records() have read so far.
    _read_to: int = field(default=0, init=False, repr=False)
    _lines: list[str] = field(default_factory=list, init=False, repr=False)
    _records: list[dict] = field(default_factory=list, init=False, repr=False)
    _parsed: int = field(default=0, init=False, repr=False)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        """The complete lines written so far. A last line without its newline
        is still being written (a reader of a file may see part of a write
        that spans a page): it is left for the next call. Only what was
        appended since the last call is read (tests poll this in loops)."""
        with open(self.log_path, "rb") as f:
            f.seek(self._read_to)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        self._read_to += len(complete)
        self._lines.extend(complete.decode(errors="replace").splitlines())
        return list(self._lines)

    def log_records(self) -> list[dict]:
        """Every line the gateway wrote so far, each parsed as the JSON object
        it must be (gateway/ops/logs.py); a line that isn't one fails here."""
        lines = self.lines()
        self._records.extend([json.loads(line) for line in lines[self._parsed:] if line])
        self._parsed = len(lines)
        return list(self._records)

    def messages(self) -> list[str]:
        """The ``message`` of every log line so far, decoded (non-ASCII and
        quotes as they were logged, not as JSON escapes)."""
        return [r["message"] for r in self.log_records() if "message" in r]

    def access_records(self) -> list[dict]:
        """The access-log lines so far, as dicts."""
        return [r for r in self.log_records() if r.get("logger") == "gateway.access"]

    def write_config(self, text: str) -> None:
        """Replace routes.yaml whole (a temporary file, then a rename), as a
        deploy does. In place, the gateway could read the file between the
        truncation and the write: it reads a file that held still for 0.1 s,
        and on a machine this loaded a test process can stall longer (a
        clean-clone run once saw "file is empty" for the file a test was
        writing). How truncate-then-write is handled is
        tests/unit/test_reload.py's to test."""
        tmp = self.config.with_name(self.config.name + ".writing")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def admin_get(self, path: str, /, **params: str) -> httpx.Response:
        """GET on the gateway's own surface, with its admin token (``params``: the query, ``path=`` included)."""
        return httpx.get(self.url + path, params=params or None, timeout=5,
                         headers={"X-Gateway-Admin-Token": self.admin_token})

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """/_gateway/metrics as a scraper reads it: (sample name, sorted labels) → value."""
        text = self.admin_get("/_gateway/metrics").text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def apply_config(self, text: str, timeout: float = 15.0, *, reload_now: bool = False) -> None:
        """Write routes.yaml and wait until this gateway serves from it: at its
        next poll of the file, or with ``reload_now`` at once (SIGHUP, as
        ``kill -HUP`` does), for tests about what a flip does rather than
        how the gateway notices one."""
        want = config_version(text)
        self.write_config(text)
        if reload_now:
            self.proc.send_signal(signal.SIGHUP)
        until(lambda: self.admin_get("/_gateway/routes").json()["version"] == want, timeout,
              what=f"routes.yaml version {want} live (log tail: {self.output()[-500:]!r})")

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kib(self, field: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)


# The repo's routes.yaml CORS policy: junjo's (Echo's semantics, origins from the env).
JUNJO_CORS = ("cors:\n  allow_origins_env: JUNJO_ALLOW_ORIGINS\n  allow_methods: [GET, POST, PUT, DELETE, OPTIONS]\n"
              "  allow_headers: [Origin, Content-Type, Accept, X-CSRF-Token]\n  allow_credentials: true\n"
              "  answer_every_options: true\n")


def routes_yaml(legacy_url: str, routes: str = "", *, read_timeout: float = 60, default: str = "go",
                extra_legacy: str = "", cors: str = JUNJO_CORS, limits: str = "", connect_timeout: float = 2) -> str:
    """A routes.yaml like the repo's (junjo's CORS block unless ``cors=""``);
    ``extra_legacy`` and ``limits`` are indented YAML lines for those sections."""
    limits_block = f"limits:\n{limits}" if limits else ""
    return (f"legacy:\n  url: {legacy_url}\n  connect_timeout: {connect_timeout:g}\n  read_timeout: {read_timeout}\n"
            f"  ready_path: /ping\n{extra_legacy}{cors}{limits_block}default: {default}\n"
            f"routes:\n{routes or '  []'}\n")


def gateway_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``gateway <args>`` run to its end (``python -m gateway.cli``, forked
    from the fork server unless GATEWAY_TEST_SPAWN=exec): its exit code,
    stdout and stderr, as ``subprocess.run(..., capture_output=True, text=True)``
    gives them. ``env``: the whole environment (default: this process's)."""
    if not forking():
        return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd or REPO, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    return fork_server().run(list(args), env=env, cwd=cwd or REPO, timeout=timeout)


def start_gateway(config_text: str, tmp_dir: Path, *, env: dict[str, str] | None = None,
                  args: list[str] | None = None, nofile: int | None = None,
                  stdout_pipe: bool = False) -> GatewayProc:
    """``gateway serve`` on a free port; its stdout and stderr go to a log file,
    or with ``stdout_pipe`` its stdout is ``proc.stdout``, a pipe the caller
    reads (or, to test a stalled one, doesn't). ``nofile``: run the gateway
    under this RLIMIT_NOFILE (soft and hard)."""
    config = tmp_dir / "routes.yaml"
    config.write_text(config_text)
    port = free_port()
    child_env = dict(os.environ)
    child_env.pop("LEGACY_URL", None)
    child_env["JUNJO_SESSION_SECRET"] = "test-secret"  # the stand-in's default; env= overrides
    child_env["GATEWAY_SERVICE_PACKAGES"] = "tests.fakeservices"
    child_env["GATEWAY_ADMIN_TOKEN"] = ADMIN_TOKEN
    # Its own SQLite file (users, sign-in limiter counters): never the repo's
    # data/, which would carry state from one test, or one run, to the next.
    child_env["JUNJO_SQLITE_PATH"] = str(tmp_dir / "app_data.db")
    child_env.update(env or {})
    fd, log_name = tempfile.mkstemp(prefix="gateway-", suffix=".log", dir=tmp_dir)
    argv = ["serve", "--config", str(config), "--port", str(port), *(args or [])]
    proc: subprocess.Popen | ForkedProcess
    if not stdout_pipe and forking():
        # Forked from a process that has the gateway imported already: the
        # same entry point at a fraction of the CPU (tests/support/forkserver.py).
        os.close(fd)
        proc = fork_server().spawn(argv, env=child_env, log=Path(log_name), nofile=nofile)
    else:
        log = os.fdopen(fd, "wb")
        cmd = [sys.executable, "-m", "gateway.cli", *argv]
        if nofile is not None:  # set in the child itself, then exec the gateway (no preexec_fn with threads)
            cmd[1:3] = ["-c", "import os, resource, sys; "
                              f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile})); "
                              "os.execv(sys.executable, [sys.executable, '-m', 'gateway.cli', *sys.argv[1:]])"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env, stdout=subprocess.PIPE if stdout_pipe else log,
                                stderr=log if stdout_pipe else subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
    gw = GatewayProc(f"http://127.0.0.1:{port}", port, proc, config, Path(log_name),  # type: ignore[arg-type]
                     child_env.get("GATEWAY_ADMIN_TOKEN", ""))
    return _wait_healthy(gw)


def _wait_healthy(gw: GatewayProc) -> GatewayProc:
    proc = gw.proc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{gw.output()}")
        try:
            with urllib.request.urlopen(gw.url + "/_gateway/health", timeout=1) as r:
                if r.status == 200:
                    return gw
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    gw.stop()
    raise RuntimeError(f"gateway did not come up within {START_TIMEOUT}s:\n{gw.output()}")
