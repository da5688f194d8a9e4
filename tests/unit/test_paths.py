import pytest

from gateway.routing.paths import BadPath, is_under, match_path


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
