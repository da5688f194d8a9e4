"""Start test gateways by forking a process that has already imported them.

The suite starts about a hundred and twenty ``gateway serve`` processes, and a
fresh interpreter spends most of its start importing (SQLAlchemy, pydantic,
DuckDB, uvicorn...): about half a CPU-second each on this project's 2-core CI
machine, a third of the suite's CPU. A fork server pays that once per run
(one server shared by the xdist workers; a run without xdist has one of its
own): it imports the gateway and every service package, then forks a child
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

Protocol, one JSON object per line on a Unix socket (a socket pair for a
server of its own): the test sends
``{"argv", "env", "cwd", "log", "nofile"}`` and reads ``{"pid"}`` (or
``{"error"}``); the server sends ``{"exit": pid, "code": returncode}`` when a
child ends (``returncode`` as :class:`subprocess.Popen` gives it: negative for
a signal). When a test process goes away the server kills its children (and
a server of its own exits); a child dies with the server
(``PR_SET_PDEATHSIG``), and the shared server with the pytest controller.
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import resource
import select
import shutil
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


def _serve(listener: socket.socket | None, first: socket.socket | None = None) -> None:
    """Fork a gateway for each request of each client, and tell the client that
    asked when it exits. ``first``: the one client of a server of its own
    (it returns when that client is gone); ``listener``: the server shared by
    a run's xdist workers, which accepts a client per worker until it is
    stopped. A client that goes away takes its gateways with it."""
    clients: dict[socket.socket, bytes] = {}  # client -> the start of its next request
    owners: dict[int, socket.socket] = {}  # live child -> the client that asked for it
    if first is not None:
        clients[first] = b""
    # SIGCHLD only wakes the loop; the loop reaps.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(client: socket.socket, message: dict[str, Any]) -> None:
        if client in clients:
            try:
                client.sendall(json.dumps(message).encode() + b"\n")
            except OSError:
                pass  # gone: its end of file comes next

    def drop(client: socket.socket) -> None:
        del clients[client]
        client.close()
        for pid, owner in owners.items():
            if owner is client:
                _kill(pid)  # reaped below like any other child; nobody is told

    try:
        while True:
            watched = [wake_r, *clients, *([listener] if listener is not None else [])]
            ready, _, _ = select.select(watched, [], [], 1.0)
            if wake_r in ready:
                os.read(wake_r, 4096)
            while owners:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                # Told before the next fork: a client sees a pid's exit before
                # any later child of its own can be given that pid.
                send(owners.pop(pid), {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
            if listener is not None and listener in ready:
                client, _ = listener.accept()
                clients[client] = b""
                send(client, {"ready": True})
            for client in [c for c in ready if c in clients]:
                data = client.recv(65536)
                if not data:
                    drop(client)
                    if listener is None:
                        return  # a server of its own: its test process is gone
                    continue
                buffer = clients[client] + data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    inherited = (*(c.fileno() for c in clients), wake_r, wake_w,
                                 *([listener.fileno()] if listener is not None else []))
                    pid = os.fork()
                    if pid == 0:
                        _child(request, inherited)
                    owners[pid] = client
                    send(client, {"id": request["id"], "pid": pid})
                clients[client] = buffer
    finally:
        for pid in owners:
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> None:
    if sys.argv[1] == "--listen":
        # The run's shared server: its listening socket was made and bound by
        # the pytest controller, which stops it at the end; it dies with the
        # controller too. Workers that connect during the imports wait in the
        # backlog for their "ready".
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        listener = socket.socket(fileno=int(sys.argv[2]))
        _preload()
        _serve(listener)
        return
    control = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    control.sendall(b'{"ready": true}\n')
    _serve(None, control)


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
    """This test process's connection to a fork server: the run's shared one
    (``address``, under xdist) or, without one, a server of its own, started on
    first use.

    Exit messages go to the :class:`ForkedProcess` that holds the pid now:
    the server reports a child's exit before it forks again, and the messages
    arrive in order, so a pid the kernel gives to a later child of this
    process never mixes two processes up. Each spawn request carries an id its
    reply repeats: a late reply is never taken for the next spawn's."""

    def __init__(self, address: str | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        if address is not None:
            mine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            mine.connect(address)
        else:
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
            if self._proc is None:
                raise RuntimeError(f"the run's gateway fork server ({address}) did not answer")
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
SHARED_ENV = "GATEWAY_TEST_FORKSERVER"  # the run's shared server's socket, for the xdist workers


def forking() -> bool:
    """Whether test gateways are forked from the fork server (the default)
    or started as fresh interpreters (GATEWAY_TEST_SPAWN=exec)."""
    return os.environ.get("GATEWAY_TEST_SPAWN") != "exec"


def fork_server() -> ForkServer:
    """This process's fork server: the run's shared one, else its own
    (started on the first call)."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None:
            _SERVER = ForkServer(os.environ.get(SHARED_ENV) or None)
        return _SERVER


class SharedForkServer:
    """The fork server of an xdist run, started by the controller before its
    workers: the imports (~1.3 CPU-s) are paid once per run instead of once per
    worker, while the workers collect. Its socket's path is exported in
    :data:`SHARED_ENV`, which the workers inherit."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="gateway-forkserver-")
        self.address = os.path.join(self._dir, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.address)
        listener.listen(64)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", "--listen", str(listener.fileno())],
            cwd=REPO, pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL)
        listener.close()  # the server's now; connections queue until it accepts

    def stop(self) -> None:
        self._proc.kill()  # its gateways die with it (PR_SET_PDEATHSIG)
        self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


if __name__ == "__main__":
    main()
