"""Start test gateways by forking a process that has already imported them.

The suite starts about a hundred and twenty ``gateway serve`` processes, and a
fresh interpreter spends most of its start importing (SQLAlchemy, pydantic,
DuckDB, uvicorn...): about half a CPU-second each on this project's 2-core CI
machine, a third of the suite's CPU. A fork server pays that once per test
worker: it imports the gateway and every service package, then forks a child
per gateway, which sets the test's environment, working directory, output and
descriptor limit and calls ``gateway.cli.main(["serve", ...])``, the console
script's own entry point. Nothing else of the server is in the child: it holds
no sockets and no threads, and it never reads a setting (every setting is read
when the gateway starts, from the child's environment: no module reads the
environment at import).

What a fresh interpreter would do differently is limited to the interpreter's
own start-up flags (``PYTHON*`` variables), which no test sets. Tests that
need a real ``python -m gateway.cli`` (its stdout as a pipe, the CLI's other
commands) start one: :func:`tests.support.gateway_proc.start_gateway` does
that for ``stdout_pipe``, and ``GATEWAY_TEST_SPAWN=exec`` makes it do so for
every gateway (to rule the fork server out when a test misbehaves).

Protocol, one JSON object per line on a socket pair: the test sends
``{"argv", "env", "cwd", "log", "nofile"}`` and reads ``{"pid"}`` (or
``{"error"}``); the server sends ``{"exit": pid, "code": returncode}`` when a
child ends (``returncode`` as :class:`subprocess.Popen` gives it: negative for
a signal). When the test process goes away the server kills its children and
exits; a child dies with the server (``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


# -- the server (python -m tests.support.forkserver <fd>) ------------------------

def _preload() -> None:
    """Import what ``gateway serve`` imports, and every service package, then
    freeze the heap.

    The modules below are the ones a gateway imports only once it runs (the
    event loop, the lifespan, the SQLite dialect): measured with a set
    difference of ``sys.modules`` over a forked start. Importing them creates
    no loop, thread or connection."""
    import concurrent.futures.thread  # noqa: F401
    import sqlite3  # noqa: F401

    import sqlalchemy.dialects.sqlite.aiosqlite
    import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401
    import uvicorn.lifespan.on
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl
    import uvicorn.protocols.websockets.auto  # noqa: F401

    import gateway.app
    import gateway.cli
    import gateway.edge.protocol  # noqa: F401
    from services.registry import discover

    discover(("services", "tests.fakeservices"))  # imports only: no service starts
    # Each gateway runs gc.collect() + gc.freeze() once it has loaded (app.py
    # _tune_gc). Frozen here, the imported heap is out of that collection's
    # sight in every child: 60 ms of CPU less per start, what a fresh
    # interpreter pays once too.
    gc.collect()
    gc.freeze()


def _child(request: dict[str, Any], inherited: tuple[int, ...]) -> None:
    """In the forked child: become the gateway the test asked for, as
    ``python -m gateway.cli`` would, exit included. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:  # the server's control socket and wake-up pipe
            os.close(fd)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, path in ((1, request["log"]), (2, request.get("stderr") or request["log"])):
            out = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.dup2(out, fd)
            os.close(out)
        if request.get("nofile") is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (request["nofile"], request["nofile"]))
        import gateway.cli

        # As under `python -m gateway.cli`: --workers processes (multiprocessing
        # spawn) import the main module by this name.
        sys.modules["__main__"] = gateway.cli
        sys.argv = [str(REPO / "gateway" / "cli.py"), *request["argv"]]
        try:
            code = gateway.cli.main(request["argv"]) or 0
        except SystemExit as exc:
            if isinstance(exc.code, int) or exc.code is None:
                code = exc.code or 0
            else:  # a message: printed, exit 1, as the interpreter does
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # into the gateway's log, as a crashing interpreter would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            # What the interpreter does on its way out, after a crash too: wait
            # for non-daemon threads, then run the exit hooks (the log writer's).
            threading._shutdown()  # type: ignore[attr-defined]
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(control: socket.socket) -> None:
    children: set[int] = set()
    buffer = b""
    # SIGCHLD only wakes the loop; the loop reaps.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(message: dict[str, Any]) -> None:
        control.sendall(json.dumps(message).encode() + b"\n")

    try:
        while True:
            ready, _, _ = select.select([control, wake_r], [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
            if control in ready:
                data = control.recv(65536)
                if not data:
                    return  # the test process is gone
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    pid = os.fork()
                    if pid == 0:
                        _child(request, (control.fileno(), wake_r, wake_w))
                    children.add(pid)
                    send({"id": request["id"], "pid": pid})
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    control.sendall(b'{"ready": true}\n')
    _serve(control)


# -- the test side -------------------------------------------------------------

class ForkedProcess:
    """The part of :class:`subprocess.Popen` the tests use, for a forked gateway."""

    stdout = None

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None  # set by the server's reader when the child is reaped

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._server.wait_exit(self, timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this process's
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One per test process, started on first use.

    Exit messages go to the :class:`ForkedProcess` that holds the pid now:
    the server reports a child's exit before the kernel can give its pid to
    another child, and the messages arrive in order, so a reused pid never
    mixes two processes up. Each spawn request carries an id its reply
    repeats: a late reply is never taken for the next spawn's."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.support.forkserver", str(theirs.fileno())],
                                      cwd=REPO, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self._sock = mine
        self._lock = threading.Lock()  # one spawn at a time
        self._cond = threading.Condition()
        self._replies: dict[int, int] = {}  # request id -> pid
        self._live: dict[int, ForkedProcess] = {}  # pid -> the process that holds it now
        self._early: dict[int, int] = {}  # pid -> exit code that came before its ForkedProcess was made
        self._next_id = 0
        self._gone = False
        mine.settimeout(60)  # the imports take a few seconds, never a minute
        self._file = mine.makefile("rb")
        try:
            first = self._file.readline()
        except TimeoutError:
            first = b""
        if not first:
            self._proc.kill()
            raise RuntimeError(f"the gateway fork server did not start (exit {self._proc.wait()})")
        mine.settimeout(None)
        threading.Thread(target=self._read, name="forkserver-reader", daemon=True).start()

    def _read(self) -> None:
        for line in self._file:
            message = json.loads(line)
            with self._cond:
                if "pid" in message:
                    self._replies[message["id"]] = message["pid"]
                else:
                    proc = self._live.pop(message["exit"], None)
                    if proc is None:  # its spawn() has not made the ForkedProcess yet
                        self._early[message["exit"]] = message["code"]
                    else:
                        proc.returncode = message["code"]
                self._cond.notify_all()
        with self._cond:
            self._gone = True  # the server is gone, and its children with it (PR_SET_PDEATHSIG)
            for proc in self._live.values():
                proc.returncode = -signal.SIGKILL
            self._live.clear()
            self._cond.notify_all()

    def spawn(self, argv: list[str], *, env: dict[str, str], log: Path, stderr: Path | None = None,
              cwd: Path | str = REPO, nofile: int | None = None) -> ForkedProcess:
        """``gateway <argv>`` with its stdout (and its stderr, unless ``stderr``
        names a file of its own) appended to ``log``."""
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            request = {"id": request_id, "argv": argv, "env": env, "cwd": str(cwd), "log": str(log),
                       "stderr": str(stderr) if stderr else None, "nofile": nofile}
            self._sock.sendall(json.dumps(request).encode() + b"\n")
            with self._cond:
                self._cond.wait_for(lambda: request_id in self._replies or self._gone, timeout=30)
                if request_id not in self._replies:
                    raise RuntimeError("the gateway fork server did not answer")
                pid = self._replies.pop(request_id)
                proc = ForkedProcess(self, pid, argv)
                if pid in self._early:  # it has already exited
                    proc.returncode = self._early.pop(pid)
                else:
                    self._live[pid] = proc
        return proc

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | str = REPO,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``gateway <argv>`` to its end, like ``subprocess.run([... "-m",
        "gateway.cli", *argv], capture_output=True, text=True)``."""
        with tempfile.TemporaryDirectory(prefix="gateway-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            proc = self.spawn(argv, env=dict(os.environ) if env is None else env, log=out, stderr=err, cwd=cwd)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def wait_exit(self, proc: ForkedProcess, timeout: float | None) -> bool:
        """Wait until ``proc`` has exited; False after ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: proc.returncode is not None, timeout=timeout)


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def forking() -> bool:
    """Whether test gateways are forked from the fork server (the default)
    or started as fresh interpreters (GATEWAY_TEST_SPAWN=exec)."""
    return os.environ.get("GATEWAY_TEST_SPAWN") != "exec"


def fork_server() -> ForkServer:
    """This process's fork server (started on the first call)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            _SERVER = ForkServer()
        return _SERVER


if __name__ == "__main__":
    main()
