"""``gateway`` command line: serve, check, routes, explain, diff, schema, db copy|verify."""
from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from services.common.settings import SettingsError

from .edge import limits as edge_limits
from .edge.descriptors import raise_nofile_limit
from .ops import logs
from .ops.logs import log_config
from .redact import redact_url
from .routing.config import GatewayConfig, RoutesError, load_config
from .routing.problems import MAX_SHOWN
from .settings import check_listen_addr, get_settings, reset_settings
from .sidecars import Sidecar, Supervisor, Terminated, die_by, terminate_as_exception, validate_api_key_server


def _registry():
    from services.registry import discover

    return discover(("services", *get_settings().service_packages))


def _load(path: str) -> GatewayConfig:
    registry = _registry()
    return load_config(path, serves_prefix=registry.serves, dry_run_ok=registry.dry_run_ok,
                       legacy_url=get_settings().legacy_url)


def _table(config: GatewayConfig):
    """The route table the gateway would serve from ``config`` (no sockets opened)."""
    from .routing.compile import compile_table
    from .upstream.forwarders import Forwarders

    go = Forwarders().get(config.legacy, config.trusted_proxies)
    return compile_table(config, _registry(), go)


def _table_lines(config: GatewayConfig) -> list[str]:
    rows = [("PREFIX", "METHODS", "TARGET", "LINE")]
    for spec in sorted(config.routes, key=lambda s: (-len(s.prefix), s.prefix)):
        rows.append((spec.prefix, spec.describe_methods(), spec.to, str(spec.line)))
    rows.append(("(default)", "*", config.default, "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    header = f"{config.source} (version {config.version}) — legacy {redact_url(config.legacy.url)}, " \
             f"connect {config.legacy.connect_timeout:g}s, read {config.legacy.read_timeout:g}s"
    return [header, ""] + lines


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.file)
    except RoutesError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for line in exc.text(MAX_SHOWN).splitlines():
            print(f"  {line}", file=sys.stderr)
        return 1
    print("\n".join(_table_lines(config)))
    from .routing.warnings import config_warnings

    for warning in config_warnings(config):  # valid, but probably not meant (in this environment)
        print(f"warning [{warning.code}]: {warning.detail}", file=sys.stderr)
    print("\nOK")
    if not args.no_probe:
        from .ops.legacy_probe import legacy_warning

        legacy = legacy_warning(_table(config))
        if legacy:
            print(legacy, file=sys.stderr)  # a warning, not an error: the file is valid
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except RoutesError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_table(config).describe(), indent=2))
    else:
        print("\n".join(_table_lines(config)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .ops.explain import explain_target

    try:
        config = _load(args.config)
    except RoutesError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    # PATH is the request target as a client sends it: the same function
    # routing uses decides (gateway/ops/explain.py).
    result = explain_target(_table(config), args.method, args.path, args.user)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("\n".join(_explain_lines(result, redact_url(config.legacy.url))))
    return 0


def _explain_lines(result: dict, legacy: str) -> list[str]:
    head = f"{result['method']} {result['target']}"
    if result.get("status") == 400:
        return [f"{head}: rejected with 400 — {result['reason']}"]
    if result["state"] == "admin":
        return [f"{head} → the gateway itself (admin surface)", f"  why: {result['reason']}"]
    route, backend = result["route"], result["backend"]
    where = f"service '{route['service']}'" if backend == "python" else legacy if backend == "go" else ""
    state = f" [state: {result['state']}]" if result["state"] not in ("go", "python") else ""
    lines = [f"{head} → {backend}{f' ({where})' if where else ''}{state}"]
    if result["path"] != result["target"]:
        lines.append(f"  matched as: {result['path']}")
    lines.append(f"  why: {result['reason']}")
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    return lines


def cmd_diff(args: argparse.Namespace) -> int:
    """Which paths change owner between two routes files (before a deploy)."""
    configs = []
    for path in (args.old, args.new):
        try:
            configs.append(_load(path))
        except RoutesError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    changes = owner_changes(*configs)
    if not changes:
        print(f"no path changes owner between {args.old} and {args.new}")
        return 0
    for line in changes:
        print(line)
    return 1 if args.exit_code else 0


def owner_changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """One line per (prefix, method set) whose owner differs, old → new,
    decided by the same route tables the gateway would serve."""
    old_table, new_table = _table(old), _table(new)

    def owner(table, path: str, method: str) -> str:
        route = table.lookup(path, method)
        return f"{route.state} (default)" if route.spec.is_default else route.spec.describe_state()

    probes: set[tuple[str, frozenset[str] | None]] = {(s.prefix, s.methods) for s in (*old.routes, *new.routes)}
    out = []
    methods_all = ("GET", "POST", "PUT", "PATCH", "DELETE")
    for prefix, methods in sorted(probes, key=lambda p: (p[0], sorted(p[1] or []))):
        moved: dict[tuple[str, str], list[str]] = {}
        for method in sorted(methods) if methods else methods_all:
            a, b = owner(old_table, prefix, method), owner(new_table, prefix, method)
            if a != b:
                moved.setdefault((a, b), []).append(method)
        for (a, b), ms in moved.items():
            label = "*" if not methods and len(ms) == len(methods_all) else ",".join(ms)
            out.append(f"{prefix} [{label}]: {a} → {b}")
    if old.default != new.default:
        out.append(f"(every path no route covers): {old.default} → {new.default}")
    return out


def cmd_schema(args: argparse.Namespace) -> int:
    """The JSON Schema of routes.yaml, for editors (see the README)."""
    from .routing.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from services.common.settings import check_settings

    try:
        check_settings()  # the services' variables: a bad one stops the start, named
        _load(args.config)
    except SettingsError as exc:
        print(f"refusing to start: bad environment:\n{redact_url(str(exc))}", file=sys.stderr)
        return 1
    except RoutesError as exc:
        print(f"refusing to start: {args.config} is invalid:\n{exc}", file=sys.stderr)
        return 1
    try:
        limits = edge_limits.from_flags(args)
    except ValueError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 1
    # Workers are separate processes: they read their settings from the env.
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    made_dir: str | None = None
    if not get_settings().metrics_dir:
        # One directory per `gateway serve`: its workers publish metric
        # snapshots there so any worker can answer a scrape for all of them.
        # Ours to remove when this serve ends.
        import tempfile

        made_dir = os.environ["GATEWAY_METRICS_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    if args.no_access_log:
        os.environ["GATEWAY_ACCESS_LOG"] = "0"
    reset_settings()  # this process may be the (only) worker: it reads what was just exported
    # This process's own lines (the descriptor limit, sidecars) are JSON too.
    logging.config.dictConfig(log_config(args.log_level))
    os.environ.update(limits.to_env())  # the edge protocol reads them in each worker
    before, after, hard = raise_nofile_limit()  # inherited by the workers
    if after != before:
        logging.getLogger("gateway.edge").info("descriptor limit raised from %d to %d (hard %d)", before, after, hard)
    supervisor = Supervisor(_sidecars(args))
    terminated: Terminated | None = None
    try:
        with terminate_as_exception():
            supervisor.start()
            _run_uvicorn(args)
    except Terminated as exc:
        terminated = exc
    finally:
        supervisor.stop()  # after uvicorn drained: in-flight requests never lose a sidecar
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)
    if terminated is not None:
        logs.finish()  # dying by the signal runs no exit hook: write the backlog out now
        die_by(terminated.signum)
    return 0


def _sidecars(args: argparse.Namespace) -> list[Sidecar]:
    """The processes this `gateway serve` runs once beside its workers."""
    return [validate_api_key_server(args.validate_api_key_addr)] if args.validate_api_key_addr else []


def _fork_workers() -> None:
    """Have uvicorn fork its ``--workers`` processes from this one instead of
    spawning fresh interpreters.

    uvicorn 0.54 starts them with multiprocessing's spawn: each imports the
    gateway, its services and their libraries again (~0.8 CPU-s a worker
    here, and a private copy of every module). By now this process has
    imported the services (the config check above) and, below, the rest of
    what a worker imports, so a forked worker only makes its app: settings
    are read there, from the environment, as in a spawned one (no module
    reads one at import). Forking is safe at this point: no event loop,
    connection or database engine exists yet, and the log writer's thread
    re-arms itself in a child (``logs.after_fork``). ``get_subprocess`` reads
    the module's ``spawn`` context when it starts each worker;
    tests/unit/test_uvicorn_seam.py fails if that changes in a uvicorn release.
    ``GATEWAY_WORKER_START=spawn`` keeps uvicorn's way, for a service package
    that starts a thread or opens a file when it is imported (a forked worker
    would share the file and lack the thread).
    """
    import multiprocessing

    import uvicorn._subprocess
    import uvicorn.lifespan.on
    import uvicorn.protocols.http.httptools_impl

    from . import app  # noqa: F401
    from .edge import protocol  # noqa: F401

    if _has("uvloop"):
        import uvicorn.loops.uvloop
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
    global _subprocess_started
    if _subprocess_started is None:
        _subprocess_started = uvicorn._subprocess.subprocess_started
        uvicorn._subprocess.subprocess_started = _forked_worker


_subprocess_started: Callable[..., None] | None = None  # uvicorn's own, which _forked_worker wraps


def _forked_worker(config: Any, target: Callable[..., None], sockets: list[Any], stdin_fileno: int | None) -> None:
    """A forked worker's start, made like a spawned one's (uvicorn's
    ``subprocess_started``, which ``get_subprocess`` names as each worker's
    target).

    - Its signals start at their defaults, not at the supervisor's handlers
      (which only queue a signal for the supervisor's loop): otherwise the
      SIGTERM uvicorn re-raises after a graceful stop would be swallowed, and
      the worker would wait on every thread left instead of dying with it.
    - It writes out its log backlog however it ends: a forked process leaves
      through ``os._exit``, without the exit hooks a spawned one runs (a
      worker that fails to start would lose why).
    """
    from uvicorn.supervisors.multiprocess import SIGNALS

    for sig in SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    assert _subprocess_started is not None
    try:
        _subprocess_started(config=config, target=target, sockets=sockets, stdin_fileno=stdin_fileno)
    finally:
        logs.finish()


def _run_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers > 1 and get_settings().worker_start == "fork":
        _fork_workers()
    uvicorn.run(
        "gateway.app:serve_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop" if _has("uvloop") else "asyncio",
        # uvicorn's httptools protocol held to the edge's limits and timeouts
        # (gateway/edge/protocol.py); a path, so --workers processes import it.
        http="gateway.edge.protocol:EdgeProtocol",
        access_log=False,  # the gateway writes its own, richer access log
        log_level=args.log_level,
        # One JSON object per line on stdout, written off the event loop
        # (gateway/ops/logs.py); uvicorn applies it in every worker process.
        log_config=log_config(args.log_level),
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=False,  # X-Forwarded-* trust is the gateway's job (trusted_proxies)
        server_header=False,  # the backend's own Server header, if any, passes through
        # Proxied answers carry the Go backend's Date; the gateway adds one to
        # the answers it makes itself (gateway/httpdate.py), never a second one.
        date_header=False,
    )


def cmd_db(args: argparse.Namespace) -> int:
    """Move the users / API keys database (services/common/dbcopy.py)."""
    from services.common import dbcopy

    if args.db_command == "copy":
        return dbcopy.main_copy(args.source, args.target, dry_run=args.dry_run, batch_size=args.batch_size,
                                lock_wait=args.lock_wait)
    return dbcopy.main_verify(args.source, args.target)


def _add_db_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="move users, API keys and the poller cursor between databases")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    copy = db_sub.add_parser(
        "copy", help="copy every row (idempotent, resumable), then verify counts and checksums",
        description="Copy users (bcrypt hashes, ids and created_at as they are), API keys and the poller "
                    "cursor from --from to --to, e.g. the Go backend's SQLite file to PostgreSQL once Go is "
                    "retired. A SQLite source is held with its write lock for the whole copy: a Go backend "
                    "still running on it gets 'database is locked' for its writes instead of losing them. "
                    "Exit 0 verified, 1 verification failed, 2 refused.")
    verify = db_sub.add_parser("verify", help="compare counts and checksums of both databases (reads only)")
    for p in (copy, verify):
        p.add_argument("--from", dest="source", required=True, metavar="URL",
                       help="SQLAlchemy URL or SQLite file path, e.g. /dbdata/sqlite/app_data.db")
        p.add_argument("--to", dest="target", required=True, metavar="URL",
                       help="e.g. postgresql+psycopg://junjo:PASSWORD@db/junjo (or a SQLite path to copy back)")
    copy.add_argument("--dry-run", action="store_true", help="show what would be inserted or updated; write nothing")
    copy.add_argument("--batch-size", type=int, default=500, help="rows per committed batch (default 500)")
    copy.add_argument("--lock-wait", type=float, default=10.0,
                      help="seconds to wait for a writer to finish before refusing (default 10)")
    db.set_defaults(func=cmd_db)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    """The flags' defaults are the gateway settings (env GATEWAY_*, gateway/settings.py)."""
    env = get_settings()
    parser = argparse.ArgumentParser(
        prog="gateway", description="Strangler-fig gateway: Go → Python, one route at a time.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=env.config_path)
    serve.add_argument("--host", default=env.host)
    serve.add_argument("--port", type=int, default=env.port)
    serve.add_argument("--workers", type=int, default=env.workers)
    serve.add_argument("--log-level", default=env.log_level)
    serve.add_argument("--graceful-timeout", type=float, default=env.graceful_timeout,
                       help="seconds in-flight requests get to finish on SIGTERM")
    serve.add_argument("--no-access-log", action="store_true")
    serve.add_argument("--validate-api-key-addr", type=_listen_addr, default=env.validate_api_key_addr,
                       metavar="HOST:PORT",
                       help="also run the ValidateApiKey gRPC server the ingestion service dials (legacy port "
                            "50053), once for all workers, restarted if it exits; for a stack without the Go "
                            "backend (env VALIDATE_API_KEY_ADDR)")
    edge_limits.add_flags(serve.add_argument_group("client limits (defaults as nginx/Envoy; see README)"),
                          edge_limits.EdgeLimits(**{name: getattr(env, name) for name in edge_limits.EDGE_FIELDS}))
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a routes file and print its table (exit 1 on errors); warn "
                                          "when routes still sent to the legacy backend find it not answering")
    check.add_argument("file", nargs="?", default="routes.yaml")
    check.add_argument("--no-probe", action="store_true",
                       help="validate only: do not contact the legacy backend")
    check.set_defaults(func=cmd_check)

    routes = sub.add_parser("routes", help="print the route table")
    routes.add_argument("--config", default=env.config_path)
    routes.add_argument("--json", action="store_true")
    routes.set_defaults(func=cmd_routes)

    explain = sub.add_parser("explain", help="which route serves METHOD PATH, and why")
    explain.add_argument("method")
    explain.add_argument("path")
    explain.add_argument("--config", default=env.config_path)
    explain.add_argument("--json", action="store_true")
    explain.add_argument("--user", help="email of a signed-in user: which side of a canary they get")
    explain.set_defaults(func=cmd_explain)

    diff = sub.add_parser("diff", help="list the paths whose owner changes between two routes files")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when something changes owner (for CI)")
    diff.set_defaults(func=cmd_diff)

    schema = sub.add_parser("schema", help="print the JSON Schema of routes.yaml (for editors)")
    schema.set_defaults(func=cmd_schema)

    _add_db_commands(sub)
    return parser


def _listen_addr(value: str) -> str:
    try:
        return check_listen_addr(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except SettingsError as exc:
        print(f"gateway: bad environment:\n{redact_url(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
