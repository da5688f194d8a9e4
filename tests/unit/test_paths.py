import pytest

from gateway.routing.paths import (
    BadPath,
    is_admin_path,
    is_under,
    match_path,
    split_target,
)


@pytest.mark.parametrize("raw,expected", [
    (b"/users", "/users"),
    (b"/users/7", "/users/7"),
    (b"/users/", "/users/"),
    (b"/%75sers/7", "/users/7"),  # encoded letters match what they decode to
    (b"/otel/service/a%2Fb/root-spans", "/otel/service/a%2Fb/root-spans"),  # %2F never splits a segment
    (b"/otel/service/a%2fb", "/otel/service/a%2Fb"),
    (b"/otel/service/my%20svc", "/otel/service/my svc"),
    (b"/otel/service/%C3%A9t%C3%A9", "/otel/service/\u00e9t\u00e9"),
    (b"/", "/"),
])
def test_paths_that_route(raw, expected):
    assert match_path(raw) == expected


@pytest.mark.parametrize("raw", [
    b"/ping/../users", b"/ping/./users", b"/ping/..", b"/ping/%2e%2e/users", b"/ping/%2E%2e/users",
    b"/ping/.%2e/users", b"/ping//users", b"//users", b"/ping/..%2Fusers/..",
    b"/ping\\..\\users", b"/ping/%5c..%5cusers", b"/ping/%00", b"/a/%0a",
    b"users", b"/\xc3\xa9", b"/%ff",
])
def test_paths_that_are_rejected(raw):
    with pytest.raises(BadPath):
        match_path(raw)


def test_encoded_slash_cannot_climb_out_of_a_prefix():
    # /ping%2F..%2Fusers is one segment under /ping's sibling space: it never
    # becomes /users, so it cannot reach the /users owner.
    assert match_path(b"/ping%2F..%2Fusers") == "/ping%2F..%2Fusers"
    assert not is_under(match_path(b"/ping%2F..%2Fusers"), "/users")


def test_non_ascii_query_is_rejected():
    with pytest.raises(BadPath):
        match_path(b"/x", "q=\u00e9".encode())


@pytest.mark.parametrize("raw,admin", [
    (b"/_gateway", True), (b"/_gateway/health", True), (b"/_gateway/", True),
    (b"/%5Fgateway/routes", True),  # an escaped letter decodes: the gateway's own
    (b"/_gateway%2Fhealth", True), (b"/_gateway%2fx", True),  # a backend decoding %2F would read /_gateway/
    (b"/_gatewayx", False), (b"/_gateway-x/health", False), (b"/x/_gateway/health", False), (b"/_GATEWAY/health", False),
])
def test_the_admin_prefix_is_judged_on_the_match_path(raw, admin):
    assert is_admin_path(match_path(raw)) is admin


@pytest.mark.parametrize("target,split", [
    (b"/users?x=1", (b"/users", b"x=1")),
    (b"/users%3Fx%3D1", (b"/users%3Fx%3D1", b"")),  # an escaped '?' is no query
    (b"/users?", (b"/users", b"")),
    (b"/a?b?c", (b"/a", b"b?c")),
    (b"/a#frag", (b"/a", b"")),
    (b"http://host:1/p?q=1", (b"/p", b"q=1")),  # absolute form, as a proxy client sends it
    (b"//x/y?z", (b"//x/y", b"z")),
])
def test_targets_split_as_uvicorn_splits_them(target, split):
    assert split_target(target) == split


def test_a_target_the_http_parser_refuses_is_a_bad_path():
    with pytest.raises(BadPath):
        split_target(b"/a b")
