import pytest

from gateway.routing.compile import compile_table
from gateway.routing.config import parse_config
from services.registry import Registry, Service


async def _noop(scope, receive, send):  # pragma: no cover - never called
    pass


REGISTRY = Registry({
    "ping": Service("ping", ("/ping",), _noop),
    "auth": Service("auth", ("/users", "/sign-in"), _noop),
})


def table(yaml_text: str):
    serves = lambda p: REGISTRY.owner_of(p) is not None
    return compile_table(parse_config(yaml_text, serves_prefix=serves), REGISTRY, _noop)


T = table("""
default: go
routes:
  - prefix: /users
    to: python
  - prefix: /users/admin
    to: go
  - prefix: /ping
    to: python
    methods: [GET]
  - prefix: /ping
    to: go
    methods: [POST]
  - prefix: /sign-in
    to: python
    methods: [post]
""")


def target(method, path):
    return T.lookup(path, method).state


def test_longest_prefix_on_segment_boundaries():
    assert target("GET", "/users") == "python"
    assert target("GET", "/users/7") == "python"
    assert target("GET", "/users/admin") == "go"
    assert target("GET", "/users/admin/x") == "go"
    assert target("GET", "/users/administrator") == "python"  # /users/admin is not a segment prefix of it
    assert T.lookup("/users-admin", "GET") is T.default
    assert T.lookup("/", "GET") is T.default


def test_methods_then_fall_back_to_shorter_prefixes_and_default():
    assert target("GET", "/ping") == "python"
    assert target("POST", "/ping") == "go"
    assert T.lookup("/ping", "DELETE") is T.default
    assert target("POST", "/sign-in") == "python"  # method names are case-insensitive in YAML
    assert T.lookup("/sign-in", "GET") is T.default


def test_python_routes_point_at_the_owning_service():
    assert T.lookup("/users/7", "GET").service.name == "auth"
    assert T.lookup("/ping", "GET").service.name == "ping"


def test_explain_says_why():
    m = T.explain("/users/admin/x", "GET")
    assert m.route.prefix == "/users/admin" and "longest matching prefix '/users/admin'" in m.reason
    m = T.explain("/sign-in", "GET")
    assert m.route is T.default
    assert "/sign-in [POST]" in m.reason and "default" in m.reason


def test_catch_all_slash_route():
    t = table("routes:\n  - prefix: /\n    to: go\n  - prefix: /ping\n    to: python\n")
    assert t.lookup("/anything/else", "GET").prefix == "/"
    assert t.lookup("/ping", "GET").state == "python"


@pytest.mark.parametrize("method,raw,query,outcome", [
    ("GET", b"/users/7", b"", "/users"),
    ("GET", b"/users%3Fx%3D1", b"", "*"),  # one segment 'users?x=1'
    ("GET", b"/users", b"x=1", "/users"),
    # %2F stays in its segment for the gateway, but a backend that decodes it
    # reads another route's path: refused (routing/readings.py)
    ("GET", b"/users%2F7", b"", "400"),
    ("GET", b"/users/admin%2Fx", b"", "400"),
    ("POST", b"/ping", b"", "/ping"),
    ("GET", b"/_gateway/health", b"", "admin"),
    ("GET", b"/%5Fgateway/routes", b"", "admin"),
    ("GET", b"/_gateway%2Fhealth", b"", "400"),  # decoded, it is under /_gateway/: never forwarded
    ("GET", b"/users/../ping", b"", "400"),
    ("GET", b"//users", b"", "400"),
])
def test_resolve_is_the_one_decision(method, raw, query, outcome):
    where = T.resolve(method, raw, query)
    got = "400" if where.rejected else "admin" if where.admin else where.route.prefix
    assert got == outcome
    if where.route is not None:
        assert where.route is T.lookup(where.path, method)


def test_resolve_remembers_its_answers_within_bounds(monkeypatch):
    """A table remembers what it resolved (the same answer, not worked out
    again), never lets a non-ASCII query through on a remembered path, tells
    methods apart, and keeps at most RESOLVED_KEPT answers."""
    from gateway.routing import table as table_module

    t = table("default: go\nroutes:\n  - prefix: /ping\n    to: python\n    methods: [GET]\n")
    first = t.resolve("GET", b"/ping", b"a=1")
    assert t.resolve("GET", b"/ping", b"b=2") is first  # remembered: the query's bytes don't matter
    assert t.resolve("GET", b"/ping", "é".encode()).rejected  # ...but a non-ASCII one is still refused
    assert t.resolve("POST", b"/ping").route is t.default  # another method, another answer
    assert t.resolve("GET", b"/ping/../x").rejected and t.resolve("GET", b"/ping/../x").rejected

    monkeypatch.setattr(table_module, "RESOLVED_KEPT", 8)
    for i in range(50):
        assert t.resolve("GET", b"/ping/%d" % i).route.prefix == "/ping"
        assert len(t._resolved) <= 8
    assert t.resolve("GET", b"/ping/49").route.prefix == "/ping"
    t._resolved.clear()
    long_path = b"/ping/" + b"x" * table_module.RESOLVED_PATH_MAX
    assert t.resolve("GET", long_path).route.prefix == "/ping" and not t._resolved  # answered, not kept
