"""``gateway`` command line: serve, check, routes, explain, diff."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from .edge import limits as edge_limits
from .edge.descriptors import raise_nofile_limit
from .routing.config import ConfigError, GatewayConfig, load_config

DEFAULT_PORT = 1324


def _registry():
    from services.registry import discover

    return discover()


def _load(path: str) -> GatewayConfig:
    registry = _registry()
    return load_config(path, serves_prefix=registry.serves, dry_run_ok=registry.dry_run_ok)


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
    header = f"{config.source} (version {config.version}) — legacy {config.legacy.url}, " \
             f"connect {config.legacy.connect_timeout:g}s, read {config.legacy.read_timeout:g}s"
    return [header, ""] + lines


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\n".join(_table_lines(config)))
    print("\nOK")
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_table(config).describe(), indent=2))
    else:
        print("\n".join(_table_lines(config)))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .ops.explain import explain_dict
    from .routing.paths import BadPath, match_path

    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    table = _table(config)
    raw = args.path.encode()
    path, _, query = raw.partition(b"?")
    try:
        norm = match_path(path, query)
    except BadPath as exc:
        print(f"{args.method.upper()} {args.path}: rejected with 400 — {exc}")
        return 0
    result = explain_dict(table, args.method.upper(), norm, args.user)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        route = result["route"]
        backend = result["backend"]
        where = f"service '{route['service']}'" if backend == "python" else config.legacy.url if backend == "go" else ""
        state = f" [state: {result['state']}]" if result["state"] not in ("go", "python") else ""
        print(f"{result['method']} {result['path']} → {backend}{f' ({where})' if where else ''}{state}")
        print(f"  why: {result['reason']}")
        if result.get("note"):
            print(f"  note: {result['note']}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    """Which paths change owner between two routes files (before a deploy)."""
    configs = []
    for path in (args.old, args.new):
        try:
            configs.append(_load(path))
        except ConfigError as exc:
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


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        _load(args.config)
    except ConfigError as exc:
        print(f"refusing to start: {args.config} is invalid:\n{exc}", file=sys.stderr)
        return 1
    problem = _environment_problem()
    if problem:
        print(f"refusing to start: {problem}", file=sys.stderr)
        return 1
    # Workers are separate processes: they read their settings from the env.
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    if not os.environ.get("GATEWAY_METRICS_DIR"):
        # One directory per `gateway serve`: its workers publish metric
        # snapshots there so any worker can answer a scrape for all of them.
        import tempfile

        os.environ["GATEWAY_METRICS_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    if args.no_access_log:
        os.environ["GATEWAY_ACCESS_LOG"] = "0"
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        limits = edge_limits.from_flags(args)
    except ValueError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 1
    os.environ.update(limits.to_env())  # the edge protocol reads them in each worker
    before, after, hard = raise_nofile_limit()  # inherited by the workers
    if after != before:
        logging.getLogger("gateway.edge").info("descriptor limit raised from %d to %d (hard %d)", before, after, hard)
    uvicorn.run(
        "gateway.app:create_app",
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
        log_config=None,
        timeout_graceful_shutdown=args.graceful_timeout,
        proxy_headers=False,  # X-Forwarded-* trust is the gateway's job (trusted_proxies)
        server_header=False,  # the backend's own Server header, if any, passes through
        # Proxied answers carry the Go backend's Date; the gateway adds one to
        # the answers it makes itself (gateway/httpdate.py), never a second one.
        date_header=False,
    )
    return 0


def _environment_problem() -> str | None:
    """A setting the workers would only trip over at their first request."""
    from services.common.settings import ConfigError as SettingsError, parse_journal_mode

    try:
        parse_journal_mode(os.environ.get("JUNJO_SQLITE_JOURNAL_MODE"))
    except SettingsError as exc:
        return str(exc)
    return None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Strangler-fig gateway: Go → Python, one route at a time.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "routes.yaml"))
    serve.add_argument("--host", default=os.environ.get("GATEWAY_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", DEFAULT_PORT)))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("GATEWAY_WORKERS", 1)))
    serve.add_argument("--log-level", default=os.environ.get("GATEWAY_LOG_LEVEL", "info"))
    serve.add_argument("--graceful-timeout", type=float, default=float(os.environ.get("GATEWAY_GRACEFUL_TIMEOUT", 30)),
                       help="seconds in-flight requests get to finish on SIGTERM")
    serve.add_argument("--no-access-log", action="store_true")
    edge_limits.add_flags(serve.add_argument_group("client limits (defaults as nginx/Envoy; see README)"))
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a routes file and print its table (exit 1 on errors)")
    check.add_argument("file", nargs="?", default="routes.yaml")
    check.set_defaults(func=cmd_check)

    routes = sub.add_parser("routes", help="print the route table")
    routes.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "routes.yaml"))
    routes.add_argument("--json", action="store_true")
    routes.set_defaults(func=cmd_routes)

    explain = sub.add_parser("explain", help="which route serves METHOD PATH, and why")
    explain.add_argument("method")
    explain.add_argument("path")
    explain.add_argument("--config", default=os.environ.get("GATEWAY_CONFIG", "routes.yaml"))
    explain.add_argument("--json", action="store_true")
    explain.add_argument("--user", help="email of a signed-in user: which side of a canary they get")
    explain.set_defaults(func=cmd_explain)

    diff = sub.add_parser("diff", help="list the paths whose owner changes between two routes files")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when something changes owner (for CI)")
    diff.set_defaults(func=cmd_diff)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
