"""Static checks of the deployment files: Dockerfiles, compose files, .env.example.

No Docker engine is needed: these read the files the way ``docker compose`` and
``docker build`` would and check the promises docs/deploy.md makes -- the
gateway is the only API port, the Go backend is unpublished, the legacy
service names and data paths are kept, every variable is documented.
"""
from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DEV = ROOT / "docker-compose.dev.yml"
COMPOSE_RETIRED = ROOT / "docker-compose.retired.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERFILE_STANDIN = ROOT / "docker" / "Dockerfile.standin"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"

GATEWAY = "gateway"
BACKEND = "junjo-server-backend"
INGESTION = "junjo-server-ingestion"
FRONTEND = "junjo-server-frontend"
LEGACY_IMAGES = {
    BACKEND: "mdrideout/junjo-server-backend",
    INGESTION: "mdrideout/junjo-server-ingestion",
    FRONTEND: "mdrideout/junjo-server-frontend",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# What the brief says the gateway and its services read, whether or not the
# code reads it yet; the code scan below adds whatever it really reads.
DOCUMENTED_ENV = {
    "JUNJO_SESSION_SECRET", "JUNJO_SESSION_SECRETS_PREVIOUS", "JUNJO_ALLOW_ORIGINS",
    "JUNJO_ENV", "JUNJO_PROD_AUTH_DOMAIN", "GEMINI_API_KEY", "JUNJO_SQLITE_PATH",
    "DATABASE_URL", "GATEWAY_CONFIG", "GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_WORKERS",
    "GATEWAY_LOG_LEVEL", "GATEWAY_GRACEFUL_TIMEOUT", "GATEWAY_ACCESS_LOG", "LEGACY_URL",
    "JUNJO_TAG",
}


# --------------------------------------------------------------------------
# Loading: YAML with Compose's merge tags, a minimal Compose merge
# --------------------------------------------------------------------------

class Reset:
    """``!reset``: the attribute goes back to its default when merged."""

    def __init__(self, value: Any):
        self.value = value


class Override:
    """``!override``: the value replaces the base one instead of merging."""

    def __init__(self, value: Any):
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


def _tagged(cls):
    def construct(loader: yaml.SafeLoader, node: yaml.Node):
        if isinstance(node, yaml.MappingNode):
            return cls(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return cls(loader.construct_sequence(node, deep=True))
        return cls(loader.construct_scalar(node) or None)
    return construct


ComposeLoader.add_constructor("!reset", _tagged(Reset))
ComposeLoader.add_constructor("!override", _tagged(Override))


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict), f"{path.name}: top level must be a mapping"
    return data


def merge(base: Any, over: Any) -> Any:
    """Compose's merge rules, as far as these checks need them."""
    if isinstance(over, Reset):
        return type(over.value)() if over.value is not None else None
    if isinstance(over, Override):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base[key], value) if key in base else strip_tags(value)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + over
    return strip_tags(over)


def strip_tags(value: Any) -> Any:
    if isinstance(value, (Reset, Override)):
        return merge(None, value)
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_tags(v) for v in value]
    return value


def active(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that start without ``--profile``."""
    return {n: s for n, s in project["services"].items() if not (s or {}).get("profiles")}


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def dev_override() -> dict[str, Any]:
    return load_compose(COMPOSE_DEV)


@pytest.fixture(scope="module")
def dev(base, dev_override) -> dict[str, Any]:
    return merge(base, dev_override)


@pytest.fixture(scope="module")
def retired_override() -> dict[str, Any]:
    return load_compose(COMPOSE_RETIRED)


@pytest.fixture(scope="module")
def retired(base, retired_override) -> dict[str, Any]:
    return merge(base, retired_override)


def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return project["services"]


# --------------------------------------------------------------------------
# Helpers: ports, volumes, env_file, depends_on, environment
# --------------------------------------------------------------------------

def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(host port or None, container port) for each ``ports`` entry."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            out.append((str(published) if published is not None else None, str(entry["target"])))
            continue
        spec = str(entry).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            out.append((None, parts[0]))  # container port only: a random host port
        else:
            out.append((parts[-2], parts[-1]))
    return out


def volume_pairs(service: dict[str, Any]) -> set[tuple[str, str]]:
    pairs = set()
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            pairs.add((entry.get("source", ""), entry["target"]))
        else:
            source, target = str(entry).split(":")[:2]
            pairs.add((source, target))
    return pairs


def volume_mode(service: dict[str, Any], target: str) -> str:
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict) and entry["target"] == target:
            return "ro" if entry.get("read_only") else "rw"
        if isinstance(entry, str) and entry.split(":")[1] == target:
            parts = entry.split(":")
            return parts[2] if len(parts) > 2 else "rw"
    raise AssertionError(f"no volume at {target}")


def env_files(service: dict[str, Any]) -> list[str]:
    raw = service.get("env_file") or []
    raw = [raw] if isinstance(raw, str) else raw
    return [e["path"] if isinstance(e, dict) else e for e in raw]


def depends(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: "service_started" for name in raw}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return " ".join(test) if isinstance(test, list) else str(test or "")


# --------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------

def test_compose_files_parse(base, dev_override):
    assert isinstance(base.get("services"), dict) and base["services"]
    assert isinstance(dev_override.get("services"), dict) and dev_override["services"]


def test_legacy_service_names_are_kept(base):
    # The images dial junjo-server-ingestion:50052 and junjo-server-backend:50053.
    assert {GATEWAY, BACKEND, INGESTION, FRONTEND} <= set(services(base))


@pytest.mark.parametrize("project_name", ["base", "dev", "retired"])
def test_only_the_gateway_publishes_1323(project_name, request):
    project = request.getfixturevalue(project_name)
    publishers = [
        name for name, svc in active(project).items()
        if any(host == "1323" for host, _ in published_ports(svc))
    ]
    assert publishers == [GATEWAY]
    assert ("1323", "1323") in published_ports(services(project)[GATEWAY])


@pytest.mark.parametrize("project_name", ["base", "dev"])
def test_backend_publishes_no_ports(project_name, request):
    backend = services(request.getfixturevalue(project_name))[BACKEND]
    assert not backend.get("ports"), "the Go backend must be reachable only through the gateway"


def test_public_ports_of_the_rest_of_the_stack(base):
    assert ("50051", "50051") in published_ports(services(base)[INGESTION])  # OTLP from SDKs
    assert ("5153", "80") in published_ports(services(base)[FRONTEND])


def test_legacy_images_and_tag_variable(base):
    for name, image in LEGACY_IMAGES.items():
        assert services(base)[name]["image"] == image + ":${JUNJO_TAG:-latest}", name


def test_gateway_reaches_the_backend_inside_the_network(base):
    env = environment(services(base)[GATEWAY])
    assert env.get("LEGACY_URL") == f"http://{BACKEND}:1323"


def test_data_volumes_at_the_legacy_paths(base):
    svc = services(base)
    assert {("./.dbdata/sqlite", "/dbdata/sqlite"), ("./.dbdata/duckdb", "/dbdata/duckdb")} <= volume_pairs(svc[BACKEND])
    assert ("./.dbdata/badgerdb", "/dbdata/badgerdb") in volume_pairs(svc[INGESTION])
    assert environment(svc[INGESTION]).get("BADGERDB_PATH") == "/dbdata/badgerdb"


def test_gateway_mounts_routes_and_the_shared_sqlite_dir(base):
    gw = services(base)[GATEWAY]
    assert ("./routes.yaml", "/app/config/routes.yaml") in volume_pairs(gw)
    assert volume_mode(gw, "/app/config/routes.yaml") == "ro"
    assert ("./.dbdata/sqlite", "/dbdata/sqlite") in volume_pairs(gw)
    assert environment(gw).get("JUNJO_SQLITE_PATH") == "/dbdata/sqlite/app_data.db"
    assert (ROOT / "routes.yaml").is_file(), "the mounted file must exist, or Docker mounts an empty directory"


@pytest.mark.parametrize("name", [GATEWAY, BACKEND, INGESTION])
def test_env_file(base, name):
    assert ".env" in env_files(services(base)[name])


@pytest.mark.parametrize("name", [GATEWAY, BACKEND, INGESTION])
def test_healthchecks_present(base, name):
    assert healthcheck_text(services(base)[name]).strip(), f"{name} has no healthcheck"


def test_healthcheck_targets(base):
    svc = services(base)
    assert "/_gateway/health" in healthcheck_text(svc[GATEWAY])
    assert "localhost:1323/ping" in healthcheck_text(svc[BACKEND])
    assert "50052" in healthcheck_text(svc[INGESTION])
    # The slim Python image has neither curl nor wget.
    assert not re.search(r"\b(curl|wget)\b", healthcheck_text(svc[GATEWAY]))


@pytest.mark.parametrize("project_name", ["base", "dev", "retired"])
def test_depends_on_is_well_formed_and_acyclic(project_name, request):
    project = request.getfixturevalue(project_name)
    running = active(project)
    graph = {}
    for name, svc in running.items():
        deps = depends(svc)
        for dep, condition in deps.items():
            assert dep in running, f"{name} depends on {dep}, which is not a (default-profile) service"
            assert condition in CONDITIONS, f"{name} -> {dep}: invalid condition {condition!r}"
            if condition == "service_healthy":
                assert running[dep].get("healthcheck"), f"{name} waits for {dep} healthy, but {dep} has no healthcheck"
        graph[name] = set(deps)

    visiting, done = set(), set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in visiting, f"depends_on cycle: {' -> '.join(path + (node,))}"
        if node in done:
            return
        visiting.add(node)
        for dep in graph[node]:
            visit(dep, path + (node,))
        visiting.discard(node)
        done.add(node)

    for node in graph:
        visit(node, ())


def test_start_order(base):
    svc = services(base)
    assert depends(svc[GATEWAY]).get(BACKEND) == "service_healthy"
    # The backend waits for ingestion as the legacy stack does -- but only for
    # it to start: ingestion opens its ports after the backend's :50053
    # answered, so waiting for it to be healthy would deadlock.
    assert depends(svc[BACKEND]).get(INGESTION) == "service_started"
    assert depends(svc[FRONTEND]).get(GATEWAY) == "service_healthy"


def test_graceful_shutdown_window(base):
    grace = str(services(base)[GATEWAY].get("stop_grace_period", "10s"))
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", grace)
    assert match and grace, f"unparsed stop_grace_period {grace!r}"
    seconds = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    from gateway.settings import GatewaySettings

    timeout = GatewaySettings.from_env({}).graceful_timeout  # what `gateway serve` uses by default
    assert seconds > timeout, "Docker would SIGKILL the gateway before its graceful timeout ends"


# --------------------------------------------------------------------------
# docker-compose.dev.yml
# --------------------------------------------------------------------------

def test_dev_override_only_touches_known_services(base, dev_override):
    for name, svc in services(dev_override).items():
        assert name in services(base) or (svc or {}).get("image") or (svc or {}).get("build"), name


def build_of(service: dict[str, Any]) -> tuple[Path, Path, str | None]:
    build = service["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / build.get("context", ".")).resolve()
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    return context, dockerfile, build.get("target")


@pytest.mark.parametrize("project_name", ["base", "dev", "retired"])
def test_build_contexts_point_to_existing_dockerfiles(project_name, request):
    for name, svc in services(request.getfixturevalue(project_name)).items():
        if "build" not in svc:
            continue
        context, dockerfile, target = build_of(svc)
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        if target:
            assert target in dockerfile_stages(dockerfile), f"{name}: no stage {target!r} in {dockerfile.name}"


def test_dev_runs_the_standin_and_the_development_gateway(dev):
    svc = services(dev)
    _, dockerfile, _ = build_of(svc[BACKEND])
    assert dockerfile == DOCKERFILE_STANDIN
    assert not svc[BACKEND]["image"].startswith("mdrideout/"), "a dev build must not overwrite the published image's tag"
    assert build_of(svc[GATEWAY])[2] == "development"
    assert {("./gateway", "/app/gateway"), ("./services", "/app/services")} <= volume_pairs(svc[GATEWAY])
    standin_env = environment(svc[BACKEND])
    assert standin_env.get("STANDIN_ADDR", "").endswith(":1323")
    assert standin_env.get("JUNJO_SQLITE_PATH") == "/dbdata/sqlite/app_data.db"


# --------------------------------------------------------------------------
# docker-compose.retired.yml: the stack once Go is retired
# --------------------------------------------------------------------------

def aliases(service: dict[str, Any], network: str = "default") -> set[str]:
    networks = service.get("networks") or {}
    if isinstance(networks, list):
        return set()
    return set(((networks.get(network) or {}).get("aliases")) or [])


def test_retired_override_only_touches_known_services(base, retired_override):
    assert set(services(retired_override)) <= set(services(base))


def test_retired_stack_runs_no_go_backend(retired):
    running = active(retired)
    assert BACKEND not in running
    assert {GATEWAY, INGESTION, FRONTEND} <= set(running)
    for name, svc in running.items():
        assert BACKEND not in depends(svc), f"{name} still waits for the Go backend"


def test_retired_gateway_answers_validate_api_key_under_the_backend_name(retired):
    from gateway.settings import check_listen_addr
    from services.otel.auth_service import DEFAULT_PORT

    gw = services(retired)[GATEWAY]
    # The ingestion image dials junjo-server-backend:50053 (hard-coded).
    assert BACKEND in aliases(gw)
    addr = environment(gw).get("VALIDATE_API_KEY_ADDR", "")
    assert check_listen_addr(addr) and addr.rpartition(":")[::2] == ("0.0.0.0", str(DEFAULT_PORT))
    # `gateway serve` starts that server: the image's own CMD, not a uvicorn command.
    assert "command" not in gw and build_of(gw)[2] == "production"


def test_retired_legacy_url_cannot_loop_into_the_gateway(retired):
    from urllib.parse import urlsplit

    gw = services(retired)[GATEWAY]
    host = urlsplit(environment(gw)["LEGACY_URL"]).hostname or ""
    names = set(services(retired)) | {a for svc in services(retired).values() for a in aliases(svc)}
    assert host not in names and host not in ("localhost", "127.0.0.1", "::1", "0.0.0.0")
    assert host.endswith(".invalid"), "an address that never resolves (RFC 2606)"


def test_retired_span_pipeline_is_the_gateways(retired):
    env = environment(services(retired)[GATEWAY])
    assert env.get("INGESTION_ADDR") == f"{INGESTION}:50052"
    assert env.get("OTEL_DUCKDB_PATH", "").startswith("/dbdata/otel-python/")


def test_retired_start_order(retired):
    svc = services(retired)
    # Ingestion waits (wait-for-ready) for its start-up ValidateApiKey answer
    # itself; waiting for the gateway to be *healthy* is not needed.
    assert depends(svc[INGESTION]).get(GATEWAY) == "service_started"
    assert depends(svc[GATEWAY]) == {"dbdata-permissions": "service_completed_successfully"}
    assert depends(svc["dbdata-permissions"]) == {}
    assert depends(svc[FRONTEND]).get(GATEWAY) == "service_healthy"
    assert ("5153", "80") in published_ports(svc[FRONTEND])
    assert ("50051", "50051") in published_ports(svc[INGESTION])


# --------------------------------------------------------------------------
# .env.example: every variable documented
# --------------------------------------------------------------------------

def env_example_names() -> set[str]:
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def compose_variables(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        line = line.replace("$$", "")  # an escaped literal dollar
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", line))
        names |= set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", line))
    return names


# A settings field, ``name: T = env_var("NAME", default)`` (gateway/settings.py,
# services/common/settings.py), is a read of NAME like ``environ.get("NAME", default)``.
SETTINGS_FIELD = "env_var"

ENV_READ = re.compile(
    r"""(?:\b(?:os\.environ|environ|env|os\.getenv|getenv)\b  # the mapping or function
        (?:\.get|\.setdefault|\.pop)?\s*[\[(]\s*              # .get( / [ / (
        |\benv_var\(\s*)                                       # or a settings field
        ["']([A-Z][A-Z0-9_]*)["']""",
    re.VERBOSE,
)


def code_env_reads() -> dict[str, str]:
    """Every env var name read in gateway/ and services/, with where."""
    found: dict[str, str] = {}
    for folder in ("gateway", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for match in ENV_READ.finditer(path.read_text(encoding="utf-8")):
                found.setdefault(match.group(1), str(path.relative_to(ROOT)))
    return found


def test_env_example_parses():
    text = ENV_EXAMPLE.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        assert not stripped or stripped.startswith("#") or re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", stripped), \
            f".env.example:{number}: not KEY=value: {line!r}"
    assert re.search(r"^JUNJO_SESSION_SECRET=", text, re.MULTILINE), "the required secret must be an active line"


def test_every_compose_variable_is_in_env_example():
    names = env_example_names()
    for path in (COMPOSE, COMPOSE_DEV, COMPOSE_RETIRED):
        missing = compose_variables(path) - names
        assert not missing, f"{path.name} uses {sorted(missing)}, not documented in .env.example"


def test_code_scan_finds_the_known_reads():
    # Guards the regex: if it silently matched nothing, the next test would pass vacuously.
    assert {"GATEWAY_CONFIG", "JUNJO_SESSION_SECRET", "LEGACY_URL"} <= set(code_env_reads())


def test_every_env_var_the_code_reads_is_in_env_example():
    names = env_example_names()
    missing = {name: where for name, where in code_env_reads().items() if name not in names}
    assert not missing, f"read by the code but not documented in .env.example: {missing}"


def test_every_variable_of_the_brief_is_in_env_example():
    missing = DOCUMENTED_ENV - env_example_names()
    assert not missing, sorted(missing)


# --------------------------------------------------------------------------
# .env.example: documented defaults are the code's defaults
# --------------------------------------------------------------------------
#
# Convention (the file's header says it): a commented-out ``# VAR=value`` line
# shows the default, an empty value meaning "unset". Active ``VAR=value`` lines
# are the template's settings, not defaults. The code's defaults are found by
# reading the code (ast): the second argument of every env read, module
# constants resolved, ``read("X", "") or CONSTANT`` followed to the constant,
# helpers such as ``_env_float("X", 5.0)`` recognised as reads, and settings
# fields ``env_var("X", 5.0)``.

ENV_DEFAULT_LINE = re.compile(r"^#\s*([A-Z][A-Z0-9_]*)=(.*)$")
ENV_ACTIVE_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=")
UNRESOLVED = object()

# Reads whose own default argument is a sentinel for "use this module constant"
# (the code then falls back in a later statement the scan does not follow).
COMPUTED_DEFAULTS: dict[str, tuple[str, str]] = {
    # "NAME": ("path/to/module.py", "CONSTANT"),
}


def documented_defaults(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        m = ENV_DEFAULT_LINE.match(line.strip())
        if m:
            name, value = m.group(1), re.sub(r"\s+#.*$", "", m.group(2)).strip()
            assert name not in found, f".env.example:{number}: a second default line for {name}"
            found[name] = value
    return found


def active_settings(text: str) -> set[str]:
    return {m.group(1) for line in text.splitlines() if (m := ENV_ACTIVE_LINE.match(line.strip()))}


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _is_env_mapping(node: ast.AST) -> bool:
    """``os.environ``, ``environ`` or a local ``env`` mapping."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or \
        (isinstance(node, ast.Name) and node.id in ("environ", "env"))


def _env_read(call: ast.Call, helpers: set[str]) -> tuple[ast.expr, ast.expr | None] | None:
    """(name expression, default expression or None) when ``call`` reads the environment."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and _is_env_mapping(func.value) \
            or isinstance(func, ast.Attribute) and func.attr == "getenv" \
            or isinstance(func, ast.Name) and (func.id in helpers or func.id == SETTINGS_FIELD):
        if call.args:
            return call.args[0], call.args[1] if len(call.args) > 1 else None
    return None


def _env_helpers(tree: ast.Module) -> set[str]:
    """Functions that read the variable named by their first parameter."""
    helpers = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.args.args:
            first = fn.args.args[0].arg
            for call in ast.walk(fn):
                read = isinstance(call, ast.Call) and _env_read(call, set())
                if read and isinstance(read[0], ast.Name) and read[0].id == first:
                    helpers.add(fn.name)
    return helpers


def code_env_defaults() -> dict[str, list[tuple[Any, str]]]:
    """For every env var the code reads with a literal name: (default, where) per read.

    The default is None for a read without one (``environ.get("X")``: "unset"),
    or UNRESOLVED when the scan cannot tell (a test below then fails)."""
    found: dict[str, list[tuple[Any, str]]] = {}
    for folder in ("gateway", "services"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for name, reads in scan_source(path.read_text(encoding="utf-8"), where).items():
                found.setdefault(name, []).extend(reads)
    return found


def scan_source(text: str, where: str) -> dict[str, list[tuple[Any, str]]]:
    """The env reads of one module's source, with their defaults."""
    found: dict[str, list[tuple[Any, str]]] = {}
    tree = ast.parse(text)
    constants, helpers = _module_constants(tree), _env_helpers(tree)

    def value_of(node: ast.expr | None) -> Any:
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return constants.get(node.id, UNRESOLVED)
        return UNRESOLVED

    # ``read("X", "") or FALLBACK``: an empty read means the fallback, a
    # constant, or another variable (``read("X") or read("Y")``: unset).
    # Any other right-hand side is a condition, not a default.
    fallbacks: dict[int, ast.expr | None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2:
            left, right = node.values
            if isinstance(left, ast.Call) and isinstance(right, (ast.Constant, ast.Name)):
                fallbacks[id(left)] = right
            elif isinstance(left, ast.Call) and isinstance(right, ast.Call) and _env_read(right, helpers):
                fallbacks[id(left)] = None
    for node in ast.walk(tree):
        read = isinstance(node, ast.Call) and _env_read(node, helpers)
        if not read or not isinstance(read[0], ast.Constant) or not isinstance(read[0].value, str):
            continue
        name, default = read[0].value, value_of(read[1])
        if not default and id(node) in fallbacks:
            default = value_of(fallbacks[id(node)])
        if name in COMPUTED_DEFAULTS and where == COMPUTED_DEFAULTS[name][0]:
            default = constants.get(COMPUTED_DEFAULTS[name][1], UNRESOLVED)
        found.setdefault(name, []).append((default, f"{where}:{node.lineno}"))
    return found


def compose_defaults() -> dict[str, set[str]]:
    """``${VAR:-default}`` in the compose files."""
    found: dict[str, set[str]] = {}
    for path in (COMPOSE, COMPOSE_DEV, COMPOSE_RETIRED):
        for name, default in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-([^}]*)\}", path.read_text()):
            found.setdefault(name, set()).add(default)
    return found


def _same(documented: str, code: Any) -> bool:
    if code is None or code == "" or code == () or code == b"":  # unset / empty
        return documented == ""
    try:
        return float(documented) == float(code)
    except (TypeError, ValueError):
        return documented == str(code)


def default_mismatches(text: str) -> list[str]:
    """Every way ``text`` (an .env.example) disagrees with the code's defaults."""
    documented, active = documented_defaults(text), active_settings(text)
    code, compose = code_env_defaults(), compose_defaults()
    problems = []
    for name, reads in sorted(code.items()):
        if name in active:
            continue  # a setting of the template (e.g. the required secret)
        if name not in documented:
            problems.append(f"{name}: read by the code but .env.example has no '# {name}=<default>' line")
            continue
        unresolved = [w for d, w in reads if d is UNRESOLVED]
        if unresolved:
            problems.append(f"{name}: cannot tell the code's default at {unresolved}; "
                            "name it in COMPUTED_DEFAULTS")
            continue
        # Reads without a default only ask "is it set?"; the others must agree.
        with_default = [(d, w) for d, w in reads if d is not None] or reads
        for default, where in with_default:
            if not _same(documented[name], default):
                problems.append(f"{name}: .env.example says {documented[name]!r}, {where} uses {default!r}")
    for name, defaults in sorted(compose.items()):
        if name in documented and any(not _same(documented[name], d) for d in defaults):
            problems.append(f"{name}: .env.example says {documented[name]!r}, compose uses {sorted(defaults)}")
    for name in sorted(set(documented) - set(code) - set(compose)):
        problems.append(f"{name}: a documented default that neither the code nor compose reads")
    return problems


# Every way of reading a variable the scan understands, with the default it must find.
SCAN_FORMS = """
import os
FALLBACK = "fallback"
def _env_float(name, default):
    return float(os.environ.get(name, default))
a = int(os.environ.get("FORM_LITERAL", "1000"))
b = os.environ.get("FORM_CONSTANT", FALLBACK)
c = _env_float("FORM_HELPER", 5.0)
d = os.environ.get("FORM_OR", "") or FALLBACK
e = os.environ.get("FORM_UNSET")
class Settings(EnvSettings):
    f: int = env_var("FORM_FIELD", 42, gt=0)
    g: str = env_var("FORM_FIELD_CONSTANT", FALLBACK)
    h: str | None = env_var("FORM_FIELD_UNSET", None)
"""


def test_the_default_scan_sees_the_code():
    # Guards the scan: each way of reading a default must be found, or the
    # comparison below could pass by seeing nothing.
    forms = {name: {d for d, _ in reads} for name, reads in scan_source(SCAN_FORMS, "forms.py").items()}
    assert forms == {
        "FORM_LITERAL": {"1000"}, "FORM_CONSTANT": {"fallback"}, "FORM_HELPER": {5.0}, "FORM_OR": {"fallback"},
        "FORM_UNSET": {None}, "FORM_FIELD": {42}, "FORM_FIELD_CONSTANT": {"fallback"}, "FORM_FIELD_UNSET": {None},
    }
    assert {m.group(1) for m in ENV_READ.finditer(SCAN_FORMS)} == set(forms) - {"FORM_HELPER"}
    code = code_env_defaults()
    assert {d for d, _ in code["OTEL_BATCH_SIZE"]} == {1000}                 # a settings field
    assert {d for d, _ in code["GATEWAY_PORT"]} == {1324}                    # through a module constant
    assert {d for d, _ in code["OTEL_POLL_INTERVAL"]} == {5.0}
    assert {d for d, _ in code["JUNJO_SQLITE_PATH"]} == {"data/app_data.db"}
    assert {d for d, _ in code["LLM_TIMEOUT_SECONDS"]} == {60.0}
    assert len(documented_defaults(ENV_EXAMPLE.read_text())) >= 30
    assert set(code) >= set(code_env_reads()), "the ast scan missed reads the regex scan finds"


def test_variables_named_in_routes_yaml_are_documented():
    # cors.allow_origins_env names a variable the gateway reads at load.
    config = yaml.safe_load((ROOT / "routes.yaml").read_text())
    named = {config["cors"]["allow_origins_env"]} if (config.get("cors") or {}).get("allow_origins_env") else set()
    assert named == {"JUNJO_ALLOW_ORIGINS"}
    assert named <= env_example_names()


def test_documented_defaults_are_the_codes():
    problems = default_mismatches(ENV_EXAMPLE.read_text())
    assert not problems, "\n".join(problems)


def test_a_wrong_documented_default_is_caught():
    # The mismatch that shipped once: .env.example said 100, the poller asks for 1000.
    text = ENV_EXAMPLE.read_text().replace("# OTEL_BATCH_SIZE=1000", "# OTEL_BATCH_SIZE=100")
    assert "# OTEL_BATCH_SIZE=100 " in text
    assert any(p.startswith("OTEL_BATCH_SIZE: .env.example says '100'") for p in default_mismatches(text))
    text = ENV_EXAMPLE.read_text().replace("# JUNJO_TAG=latest", "# JUNJO_TAG=1.4.0")
    assert any(p.startswith("JUNJO_TAG:") for p in default_mismatches(text))


# --------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages(path: Path) -> dict[str, dict[str, Any]]:
    """name -> {"from": parent, "ins": [...]} in file order (unnamed stages get their index)."""
    stages: dict[str, dict[str, Any]] = {}
    current = None
    for word, rest in instructions(path):
        if word == "FROM":
            m = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"unparsed FROM {rest!r}"
            current = m.group(2) or str(len(stages))
            stages[current] = {"from": m.group(1), "ins": []}
        elif current is not None:
            stages[current]["ins"].append((word, rest))
    return stages


def chain(stages: dict[str, dict[str, Any]], name: str) -> list[tuple[str, str]]:
    """The instructions that apply to stage ``name``, its parent stages' first."""
    stage = stages[name]
    parent = stage["from"]
    inherited = chain(stages, parent) if parent in stages and parent != name else []
    return inherited + stage["ins"]


def last(ins: list[tuple[str, str]], word: str) -> str | None:
    values = [rest for w, rest in ins if w == word]
    return values[-1] if values else None


@pytest.fixture(scope="module")
def gateway_stages() -> dict[str, dict[str, Any]]:
    return dockerfile_stages(DOCKERFILE)


def test_gateway_dockerfile_stages(gateway_stages):
    assert {"production", "development"} <= set(gateway_stages)
    assert list(gateway_stages)[-1] == "production", "a plain `docker build` must give the production image"
    # Multi-stage: production copies an already-built venv, no build tools in it.
    assert any(w == "COPY" and "--from=" in rest for w, rest in gateway_stages["production"]["ins"])


def test_gateway_base_image_is_python_311_slim():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\s*$", text, re.MULTILINE) or \
        re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)


@pytest.mark.parametrize("stage", ["production", "development"])
def test_gateway_runs_as_non_root(gateway_stages, stage):
    user = last(chain(gateway_stages, stage), "USER")
    assert user and user.split(":")[0] not in ("root", "0"), f"{stage}: USER {user!r}"


@pytest.mark.parametrize("stage", ["production", "development"])
def test_gateway_healthcheck_and_port(gateway_stages, stage):
    ins = chain(gateway_stages, stage)
    health = last(ins, "HEALTHCHECK")
    assert health and "/_gateway/health" in health and "urllib" in health
    assert not re.search(r"\b(curl|wget)\b", health)
    exposed = " ".join(rest for w, rest in ins if w == "EXPOSE").split()
    assert "1323" in [p.split("/")[0] for p in exposed]


def test_gateway_commands(gateway_stages):
    prod = last(chain(gateway_stages, "production"), "CMD")
    for part in ('"gateway"', '"serve"', '"--host", "0.0.0.0"', '"--port", "1323"', '"--config", "/app/config/routes.yaml"'):
        assert part in prod, f"production CMD lacks {part}: {prod}"
    assert prod.startswith("["), "exec form, so the gateway itself receives SIGTERM"
    dev = last(chain(gateway_stages, "development"), "CMD")
    for part in ('"uvicorn"', '"gateway.app:create_app"', '"--factory"', '"--reload"'):
        assert part in dev, f"development CMD lacks {part}: {dev}"


def test_dockerfile_sources_exist_and_are_not_dockerignored():
    ignore = dockerignore_patterns()
    for dockerfile in (DOCKERFILE, DOCKERFILE_STANDIN):
        for word, rest in instructions(dockerfile):
            if word not in ("COPY", "ADD") or "--from=" in rest:
                continue
            args = [a for a in rest.split() if not a.startswith("--")]
            for source in args[:-1]:
                matches = [p for p in ROOT.glob(source.rstrip("/"))] if any(c in source for c in "*?[") \
                    else [ROOT / source.rstrip("/")]
                if "*" in source and not matches:
                    continue  # an optional glob (README.md*), as long as another source matched
                for path in matches:
                    assert path.exists(), f"{dockerfile.name}: COPY source {source} missing"
                    rel = str(path.relative_to(ROOT))
                    assert not dockerignored(rel, ignore), f"{dockerfile.name}: {rel} is excluded by .dockerignore"


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        out.append((negate, line.lstrip("!").strip("/")))
    return out


def dockerignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a pattern
    matching a parent directory matches everything below it."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in patterns:
        pat = pattern.replace("**/", "*").replace("/**", "/*")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignore = dockerignore_patterns()
    for path in (".env", ".git", ".venv", ".dbdata/sqlite/app_data.db", "data/app_data.db"):
        assert dockerignored(path, ignore), path
    for path in ("gateway/app.py", "services/registry.py", "pyproject.toml",
                 "gateway/ops/templates/status.html",  # read at run time (tests/test_packaging.py)
                 "tests/legacy/main.go", "tests/legacy/go.mod", "docker/entrypoint.sh"):
        assert not dockerignored(path, ignore), path


def test_standin_dockerfile():
    stages = dockerfile_stages(DOCKERFILE_STANDIN)
    assert len(stages) >= 2, "multi-stage: Go toolchain only in the build stage"
    text = DOCKERFILE_STANDIN.read_text()
    assert "CGO_ENABLED=0" in text
    assert "tests/legacy" in text
    final = list(stages.values())[-1]
    assert re.match(r"(alpine|gcr\.io/distroless/static)", final["from"]), final["from"]
    user = last(final["ins"], "USER")
    assert user and user.split(":")[0] not in ("root", "0")
    # The image's Go must be at least what tests/legacy/go.mod asks for: the
    # golang images set GOTOOLCHAIN=local and refuse a newer go line.
    image_go = re.search(r"^ARG GO_VERSION=(\d+)\.(\d+)", text, re.MULTILINE)
    gomod = ROOT / "tests" / "legacy" / "go.mod"
    if image_go and gomod.exists():
        wanted = re.search(r"^go (\d+)\.(\d+)", gomod.read_text(), re.MULTILINE)
        if wanted:
            assert tuple(map(int, wanted.groups())) <= tuple(map(int, image_go.groups())), \
                f"tests/legacy/go.mod wants go {'.'.join(wanted.groups())}; bump GO_VERSION in {DOCKERFILE_STANDIN.name}"


def test_entrypoint_execs_the_command():
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh")
    assert re.search(r'^exec "\$@"\s*$', text, re.MULTILINE), "exec keeps SIGTERM going to the gateway"
    sh = shutil.which("sh")
    if sh:
        result = subprocess.run([sh, "-n", str(ENTRYPOINT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_the_postgres_driver_is_a_project_dependency_the_image_installs():
    # DATABASE_URL=postgresql+psycopg://... must work in the image and in a
    # checkout alike: the driver is in pyproject's dependencies, which the
    # builder installs, and not a build-time extra that could be left out.
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"psycopg\[binary\]", d) for d in deps), deps
    builder = chain(dockerfile_stages(DOCKERFILE), "builder")
    installs = " ".join(rest for word, rest in builder if word == "RUN")
    assert "pyproject.toml" in installs and "pip install -r requirements.txt" in installs
    extra = re.search(r'^ARG EXTRA_PIP_PACKAGES="?([^"\n]*)"?', DOCKERFILE.read_text(), re.MULTILINE)
    assert extra is not None and "psycopg" not in extra.group(1), "the driver is not an optional extra"
