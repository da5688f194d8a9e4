"""A throwaway PostgreSQL server owned by the test run (and by tools/bench).

    server = PostgresServer.start()          # initdb in a temp dir, loopback, a free port
    url = server.new_schema_url()            # an empty schema of its own, as a SQLAlchemy URL
    server.stop()                            # stops the server and deletes the cluster

Under pytest the server is shared by the xdist workers of one run:
:func:`shared_server` starts it the first time a worker asks (under a file lock
in the directory the controller made, ``TEST_POSTGRES_STATE``) and the
controller stops it when the run ends (tests/conftest.py). Each test gets a
fresh schema (``search_path`` in the URL), so tests never see each other's rows
and nothing has to be cleaned between them.

``initdb`` refuses to run as root: as root, every server command runs as the
``postgres`` user (``runuser``), which Debian's package creates. The binaries
come from ``POSTGRES_BIN`` (a directory), else the newest
``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else the PATH;
``make postgres`` installs Debian's package when none is found.

The cluster trades durability for speed (``fsync=off``): it is deleted at the
end of the run anyway.
"""
from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .standin import free_port

STATE_ENV = "TEST_POSTGRES_STATE"
SUPERUSER = "postgres"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server (a loaded 2-core machine is slow)


class PostgresError(RuntimeError):
    """The server could not be found, initialised or started; the message says why."""


def _bindir() -> Path:
    explicit = os.environ.get("POSTGRES_BIN")
    if explicit:
        return Path(explicit)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresError("no PostgreSQL server binaries (initdb, pg_ctl) found: run `make postgres` "
                        "(installs Debian's postgresql package) or set POSTGRES_BIN to their directory")


def _run_as() -> list[str]:
    """The command prefix that runs a server command as a user initdb accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresError("running as root, and initdb refuses root; there is no 'postgres' user to run "
                            "it as (Debian's postgresql package creates one: `make postgres`)") from None
    return ["runuser", "-u", SUPERUSER, "--"]


@dataclass
class PostgresServer:
    root: str  # the temp dir: data/, the server log
    port: int
    bindir: str

    @property
    def data(self) -> str:
        return os.path.join(self.root, "data")

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "server.log")

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        base = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return base + (f"?options=-csearch_path%3D{schema}" if schema else "")

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = _bindir()
        prefix = _run_as()
        root = tempfile.mkdtemp(prefix="test-postgres-")
        if prefix:
            shutil.chown(root, SUPERUSER, SUPERUSER)
        server = cls(root, 0, str(bindir))
        initdb = [*prefix, str(bindir / "initdb"), "-D", server.data, "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"]
        try:
            done = subprocess.run(initdb, capture_output=True, text=True)
        except OSError as exc:  # no such binary, not executable...
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresError(f"cannot run {initdb[len(prefix)]}: {exc} (run `make postgres`, or set "
                                "POSTGRES_BIN to the directory of initdb and pg_ctl)") from exc
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresError(f"initdb failed ({' '.join(initdb)}):\n{done.stdout}{done.stderr}")
        for attempt in range(3):  # another process may take the free port in between
            server.port = free_port()
            options = (f"-h 127.0.0.1 -p {server.port} -c unix_socket_directories='' -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
            pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", server.data, "-l", server.log_path,
                      "-o", options, "-w", "-t", str(START_TIMEOUT), "start"]
            done = subprocess.run(pg_ctl, capture_output=True, text=True)
            if done.returncode == 0:
                return server
            log = server.log()
            if "could not bind" not in log or attempt == 2:
                server.stop()
                raise PostgresError(f"PostgreSQL did not start ({' '.join(pg_ctl)}):\n{done.stdout}"
                                    f"{done.stderr}\nserver log:\n{log[-3000:]}")
        raise AssertionError("unreachable")

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            subprocess.run([*_run_as(), os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                            "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def new_schema_url(self, prefix: str = "t") -> str:
        """A URL whose connections see only a new, empty schema."""
        import psycopg

        schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return self.url(schema=schema)


# --- one server per test run, shared by the xdist workers -------------------------

@contextmanager
def _locked(state_dir: str) -> Iterator[None]:
    with open(os.path.join(state_dir, "lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def shared_server(state_dir: str) -> PostgresServer:
    """The run's server: started by the first caller, reused by the others.
    A failed start is recorded, so every worker fails with the same reason
    instead of trying again."""
    info, failed = os.path.join(state_dir, "server.json"), os.path.join(state_dir, "failed")
    with _locked(state_dir):
        if os.path.exists(failed):
            raise PostgresError(Path(failed).read_text())
        if os.path.exists(info):
            return PostgresServer(**json.loads(Path(info).read_text()))
        try:
            server = PostgresServer.start()
        except PostgresError as exc:
            Path(failed).write_text(str(exc))
            raise
        Path(info).write_text(json.dumps(asdict(server)))
        return server


def stop_shared_server(state_dir: str) -> None:
    """End of the run (the controller): stop the server if a worker started it."""
    info = os.path.join(state_dir, "server.json")
    with _locked(state_dir):
        if os.path.exists(info):
            PostgresServer(**json.loads(Path(info).read_text())).stop()
    shutil.rmtree(state_dir, ignore_errors=True)
