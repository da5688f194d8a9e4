"""The legacy CSRF + Auth chain every Python feature is wrapped in."""
from __future__ import annotations

from itsdangerous import BadSignature, Signer
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router
from starlette.testclient import TestClient

from services.common.cookies import http_date
from services.common.csrf import CsrfTokens
from services.common.protect import protect
from services.common.responses import error_body, go_json, json_response
from services.common.session_codec import SessionCodec

NOW = 1795793923.0
CODEC = SessionCodec([b"dev-secret"])
TOKENS = CsrfTokens([b"dev-secret"])


def signed_by_us(token: str) -> bool:
    try:
        Signer(b"dev-secret", salt=b"junjo-gateway-csrf").unsign(token)
        return True
    except BadSignature:
        return False
CSRF_EXPIRES = http_date(NOW + 86400)


async def whoami(request: Request):
    return json_response({"email": getattr(request.state, "user_email", None),
                          "csrf": getattr(request.state, "csrf_token", None)})


async def echo_cookie(request: Request):
    response = PlainTextResponse("ok")
    response.raw_headers.append((b"set-cookie", b"a=1"))
    response.raw_headers.append((b"set-cookie", b"b=2"))
    return response


INNER = Router([
    Route("/anything", whoami, methods=["GET", "POST", "DELETE", "OPTIONS"]),
    Route("/sign-in", whoami, methods=["POST"]),
    Route("/csrf", whoami, methods=["GET", "POST"]),
    Route("/two-cookies", echo_cookie, methods=["GET"]),
])
APP = protect(INNER, codec=CODEC, csrf_tokens=TOKENS, clock=lambda: NOW)
SESSION = CODEC.encode("ada@example.com", now=NOW - 60)


def call(method, path, cookie=None, headers=None):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie
    with TestClient(APP) as client:
        return client.request(method, path, headers=h)


def set_cookies(response):
    return response.headers.get_list("set-cookie")


def test_post_without_csrf_cookie_is_400_before_auth():
    r = call("POST", "/anything")
    assert r.status_code == 400
    assert r.content == b'{"message":"missing value in cookies"}\n'
    assert r.headers["content-type"] == "application/json"
    assert set_cookies(r) == [] and "vary" not in r.headers


def test_post_with_header_but_no_cookie_is_403_like_echo():
    r = call("DELETE", "/anything", headers={"X-CSRF-Token": "abc"})
    assert r.status_code == 403
    assert r.content == b'{"message":"invalid csrf token"}\n'


def test_unauthenticated_get_is_401_with_fresh_csrf_cookie():
    r = call("GET", "/anything")
    assert r.status_code == 401
    assert r.content == b'{"message":"Unauthorized: No valid session"}\n'
    [cookie] = set_cookies(r)
    token = cookie.split(";")[0].split("=", 1)[1]
    assert cookie == f"csrf={token}; Expires={CSRF_EXPIRES}; HttpOnly; Secure; SameSite=Strict"
    assert signed_by_us(token)
    assert r.headers.get_list("vary") == ["Cookie"]


def test_existing_csrf_value_is_kept_even_if_not_ours():
    r = call("POST", "/anything", cookie=f"csrf=goIssued32chars; session={SESSION}")
    assert r.status_code == 200
    assert set_cookies(r)[0].startswith("csrf=goIssued32chars; Expires=")
    assert r.json() == {"email": "ada@example.com", "csrf": "goIssued32chars"}
    assert not signed_by_us("goIssued32chars")


def test_valid_session_exposes_email():
    r = call("GET", "/anything", cookie=f"session={SESSION}")
    assert r.status_code == 200 and r.json()["email"] == "ada@example.com"


def test_sign_in_skips_csrf_and_auth():
    r = call("POST", "/sign-in")
    assert r.status_code == 200 and set_cookies(r) == []
    assert "vary" not in r.headers


def test_public_csrf_path_sets_cookie_without_session():
    r = call("GET", "/csrf")
    assert r.status_code == 200
    assert r.json()["csrf"] == set_cookies(r)[0].split(";")[0][len("csrf="):]


def test_public_path_still_needs_csrf_cookie_for_writes():
    assert call("POST", "/csrf").status_code == 400


def test_options_skips_csrf_but_not_auth():
    r = call("OPTIONS", "/anything")
    assert r.status_code == 401 and set_cookies(r) == []


def test_unknown_paths_need_a_session():
    assert call("GET", "/nope").status_code == 401
    assert call("GET", "/nope", cookie=f"session={SESSION}").status_code == 404


def test_bad_sessions_are_401():
    expired = CODEC.encode("ada@example.com", now=NOW - 31 * 86400)
    wrong_key = SessionCodec([b"other"]).encode("ada@example.com", now=NOW)
    empty = CODEC.encode_values({}, now=NOW)
    tampered = SESSION[:-6] + ("AAAA==" if not SESSION.endswith("AAAA==") else "BBBB==")
    for value in (expired, wrong_key, empty, tampered, "garbage", ""):
        r = call("GET", "/anything", cookie=f"session={value}")
        assert r.status_code == 401, value


def test_first_cookie_wins_like_go():
    r = call("GET", "/anything", cookie=f"session={SESSION}; session=garbage")
    assert r.status_code == 200


def test_repeated_set_cookie_headers_survive():
    r = call("GET", "/two-cookies", cookie=f"session={SESSION}; csrf=t")
    assert [c.split(";")[0] for c in set_cookies(r)] == ["csrf=t", "a=1", "b=2"]


def test_head_error_has_no_body():
    r = call("HEAD", "/anything")
    assert r.status_code == 401 and r.content == b""


def test_go_json_escaping():
    # Go ≥ 1.22 (the legacy builds with 1.24) writes \b and \f in the short form.
    assert go_json({"m": "<a & b>\u2028\"\\\b\f\x01"}) == b'{"m":"\\u003ca \\u0026 b\\u003e\\u2028\\"\\\\\\b\\f\\u0001"}'
    assert error_body("x") == b'{"message":"x"}\n'


def test_missing_secret_is_a_clear_500(monkeypatch):
    from services.common import settings

    monkeypatch.delenv("JUNJO_SESSION_SECRET", raising=False)
    settings.reset_settings()
    try:
        app = protect(INNER, clock=lambda: NOW)
        with TestClient(app) as client:
            r = client.get("/anything", headers={"Cookie": f"session={SESSION}"})
        assert r.status_code == 500 and b"JUNJO_SESSION_SECRET" in r.content
    finally:
        settings.reset_settings()


def test_cookie_values_with_a_space_or_comma_anywhere_are_quoted_like_go():
    from services.common.cookies import format_set_cookie

    assert format_set_cookie("csrf", "a b").startswith('csrf="a b"')
    assert format_set_cookie("csrf", "x,y").startswith('csrf="x,y"')
    assert format_set_cookie("csrf", "plain").startswith("csrf=plain")


def test_database_errors_never_quote_bound_values(tmp_path):
    from services.common.db import Database

    db = Database.from_url(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE api_keys")
    try:
        db.get_api_key("SECRETKEY_abcdef0123456789")
    except Exception as exc:  # the table is gone: an OperationalError
        assert "SECRETKEY" not in str(exc)
    else:
        raise AssertionError("expected a database error")
    db.dispose()
