"""The Go stand-in (tests/legacy) against the legacy contract, route by route.

Cookies are Secure, so over plain http no cookie jar would send them back:
every test reads Set-Cookie itself and sends a Cookie header.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from services.common.session_codec import SessionCodec
from tests.support.standin import start_standin
from tests.support.waiting import until

SECRET = "test-secret"
EMAIL, PASSWORD = "ada@example.com", "correct horse"
UNAUTHORIZED = {"message": "Unauthorized: No valid session"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---- helpers -----------------------------------------------------------------

class Api:
    """A thin httpx wrapper that never keeps cookies between requests."""

    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=10)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, *, cookies: dict | None = None,
                headers: dict | None = None, **kw) -> httpx.Response:
        self.client.cookies.clear()
        jar = dict(self.cookies if cookies is None else cookies)
        hdrs = dict(headers or {})
        if jar:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        return self.client.request(method, path, headers=hdrs, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def sign_in(self, email=EMAIL, password=PASSWORD) -> httpx.Response:
        r = self.post("/sign-in", json={"email": email, "password": password}, cookies={})
        assert r.status_code == 200, r.text
        self.cookies = {"session": cookie_value(r, "session"), "csrf": "test-csrf"}
        return r


def set_cookies(r: httpx.Response) -> list[str]:
    return r.headers.get_list("set-cookie")


def set_cookie(r: httpx.Response, name: str) -> str:
    found = [c for c in set_cookies(r) if c.startswith(name + "=")]
    assert len(found) == 1, set_cookies(r)
    return found[0]


def cookie_value(r: httpx.Response, name: str) -> str:
    return set_cookie(r, name).split(";", 1)[0].split("=", 1)[1]


def attrs(cookie: str) -> list[str]:
    return [a.strip() for a in cookie.split(";")[1:]]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "app_data.db")


@pytest.fixture
def standin(db):
    s = start_standin(db)
    yield s
    s.stop()


@pytest.fixture
def api(standin):
    a = Api(standin.url)
    yield a
    a.client.close()


@pytest.fixture
def user_api(api):
    r = api.post("/users/create-first-user", json={"email": EMAIL, "password": PASSWORD},
                 cookies={"csrf": "t"})
    assert r.status_code == 200, r.text
    api.sign_in()
    return api


# ---- health, CORS, CSRF, auth ------------------------------------------------

def test_ping(api):
    r = api.get("/ping")
    assert (r.status_code, r.text) == (200, "pong")
    assert r.headers["content-type"].startswith("text/plain")
    # CSRF is not skipped for /ping: it sets its cookie there too.
    assert set_cookie(r, "csrf")


def test_refuses_to_start_without_secret(db):
    with pytest.raises(RuntimeError, match="JUNJO_SESSION_SECRET"):
        start_standin(db, env={"JUNJO_SESSION_SECRET": None})


def test_cors_preflight_reflects_allowed_origin(db):
    with start_standin(db, env={"JUNJO_ALLOW_ORIGINS": "http://localhost:5151,https://app.example"}) as s:
        api = Api(s.url)
        pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type,x-csrf-token"}
        r = api.request("OPTIONS", "/api_keys", headers=pre)
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-allow-methods"] == "GET,POST,PUT,DELETE,OPTIONS"
        assert r.headers["access-control-allow-headers"] == "Origin,Content-Type,Accept,X-CSRF-Token"
        # A disallowed origin: still 204, no CORS headers.
        r = api.request("OPTIONS", "/api_keys", headers={**pre, "Origin": "https://evil.example"})
        assert r.status_code == 204
        assert "access-control-allow-origin" not in r.headers
        # A simple request from an allowed origin is tagged too.
        r = api.get("/ping", headers={"Origin": "http://localhost:5151"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:5151"
        assert r.headers["access-control-allow-credentials"] == "true"


def test_cors_any_origin_when_list_empty(api):
    r = api.request("OPTIONS", "/whatever", headers={"Origin": "https://random.example",
                                                    "Access-Control-Request-Method": "GET"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://random.example"


def test_csrf_cookie_attributes_and_token(api):
    r = api.get("/csrf")
    assert r.status_code == 200
    token = r.json()["csrfToken"]
    assert len(token) == 32
    c = set_cookie(r, "csrf")
    assert c.split(";")[0] == f"csrf={token}"
    a = attrs(c)
    assert a[0].startswith("Expires=") and a[1:] == ["HttpOnly", "Secure", "SameSite=Strict"]
    assert not any(x.startswith(("Path=", "Max-Age=")) for x in a)
    expires = datetime.strptime(a[0][len("Expires="):], "%a, %d %b %Y %H:%M:%S GMT")
    assert abs((expires - datetime.now(UTC).replace(tzinfo=None)).total_seconds() - 86400) < 120
    assert "Cookie" in r.headers.get_list("vary")
    # An existing csrf cookie is kept, not replaced.
    r = api.get("/csrf", cookies={"csrf": "mine"})
    assert r.json() == {"csrfToken": "mine"}
    assert cookie_value(r, "csrf") == "mine"


def test_csrf_400_wins_over_401(api):
    for method, path in [("POST", "/users"), ("DELETE", "/api_keys/x"), ("POST", "/sign-out"),
                         ("PUT", "/nowhere"), ("POST", "/users/create-first-user")]:
        r = api.request(method, path, json={})
        assert r.status_code == 400, (method, path)
        assert r.json() == {"message": "missing value in cookies"}
    r = api.post("/users", json={}, cookies={"csrf": "x"})
    assert r.status_code == 401 and r.json() == UNAUTHORIZED
    assert cookie_value(r, "csrf") == "x"  # set on 401s too
    # /sign-in needs no csrf cookie.
    r = api.post("/sign-in", json={"email": EMAIL, "password": "x"})
    assert r.status_code == 401 and r.json() == {"message": "invalid credentials"}


def test_401_shape_for_protected_and_unknown_paths(api):
    for path in ["/users", "/api_keys", "/auth-test", "/otel/span-service-names", "/no/such"]:
        r = api.get(path)
        assert r.status_code == 401 and r.json() == UNAUTHORIZED, path
        assert r.headers["content-type"].startswith("application/json")
    r = api.get("/users", cookies={"session": "not-a-gorilla-cookie"})
    assert r.status_code == 401 and r.json() == UNAUTHORIZED


def test_session_from_another_secret_is_rejected(user_api, db, tmp_path):
    with start_standin(str(tmp_path / "other.db"), env={"JUNJO_SESSION_SECRET": "other"}) as s:
        other = Api(s.url)
        r = other.get("/auth-test", cookies=user_api.cookies)
        assert r.status_code == 401


# ---- sign-in / sign-out --------------------------------------------------------

def test_sign_in_session_cookie(user_api):
    r = user_api.sign_in()
    assert r.json() == {"message": "signed in"}
    c = set_cookie(r, "session")
    a = attrs(c)
    assert a[0] == "Path=/" and a[1].startswith("Expires=")
    assert a[2:] == ["Max-Age=2592000", "HttpOnly", "Secure", "SameSite=Strict"]
    assert "Domain=" not in c
    assert not any(x.startswith("csrf=") for x in set_cookies(r))  # CSRF skipped
    r = user_api.get("/auth-test")
    assert r.status_code == 200 and r.json() == {"userEmail": EMAIL}


def test_sign_in_errors(user_api):
    api = user_api
    r = api.post("/sign-in", json={"email": EMAIL, "password": "wrong"}, cookies={})
    assert r.status_code == 401 and r.json() == {"message": "invalid credentials"}
    r = api.post("/sign-in", json={"email": "nobody@example.com", "password": "x"}, cookies={})
    assert r.status_code == 401 and r.json() == {"message": "invalid credentials"}
    for body in [{"email": "not-an-email", "password": "x"}, {"email": EMAIL}]:
        r = api.post("/sign-in", json=body, cookies={})
        assert r.status_code == 400 and set(r.json()) == {"message"}
    r = api.post("/sign-in", content=b"{nope", headers={"Content-Type": "application/json"}, cookies={})
    assert r.status_code == 400 and set(r.json()) == {"message"}
    r = api.post("/sign-in", json={"email": EMAIL, "password": PASSWORD},
                 cookies={"session": "garbage"})
    assert r.status_code == 500 and r.json() == {"message": "failed to get session"}


def test_sign_in_production_domain(db):
    env = {"JUNJO_ENV": "production", "JUNJO_PROD_AUTH_DOMAIN": "junjo.example"}
    with start_standin(db, env=env, extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"]) as s:
        r = Api(s.url).post("/sign-in", json={"email": EMAIL, "password": PASSWORD})
        # Options.Domain is ".junjo.example"; Go's net/http writes it without the dot.
        assert "Domain=junjo.example" in attrs(set_cookie(r, "session"))


def test_sign_out_expiry_cookie(user_api):
    r = user_api.post("/sign-out")
    assert r.status_code == 200 and r.json() == {"message": "signed out"}
    c = set_cookie(r, "session")
    assert attrs(c) == ["Path=/", "Expires=Thu, 01 Jan 1970 00:00:01 GMT", "Max-Age=0",
                        "Secure", "SameSite=None"]
    # The value is the session the request carried, re-encoded with a fresh
    # timestamp (the legacy never clears it; contract, "The session cookie"):
    # it still holds userEmail, so a client that kept it stays signed in.
    value = cookie_value(r, "session")
    assert SessionCodec([SECRET.encode()]).decode_values(value) == {"userEmail": EMAIL}
    r = user_api.get("/auth-test", cookies={"session": value})
    assert r.status_code == 200 and r.json() == {"userEmail": EMAIL}
    # Stateless sessions: the old cookie still works after sign-out.
    assert user_api.get("/auth-test").status_code == 200


# ---- users -------------------------------------------------------------------

def test_first_user_flow(api):
    assert api.get("/users/db-has-users").json() == {"usersExist": False}
    body = {"email": EMAIL, "password": PASSWORD}
    r = api.post("/users/create-first-user", json=body, cookies={"csrf": "t"})
    assert r.status_code == 200 and r.json() == {"message": "First user created successfully"}
    assert api.get("/users/db-has-users").json() == {"usersExist": True}
    r = api.post("/users/create-first-user", json=body, cookies={"csrf": "t"})
    assert r.status_code == 400
    assert r.json() == {"error": "Users already exist, cannot create first user."}


def test_users_create_list_delete(user_api, db):
    api = user_api
    r = api.post("/users", json={"email": "grace@example.com", "password": "pw"})
    assert r.status_code == 200 and r.json() == {"message": "User created successfully"}
    r = api.post("/users", json={"email": "grace@example.com", "password": "pw"})
    assert r.status_code == 409 and r.json() == {"error": "A user with this email already exists"}
    users = api.get("/users").json()
    assert [u["Email"] for u in users] == ["grace@example.com", EMAIL]  # newest first
    for u in users:
        assert set(u) == {"ID", "Email", "CreatedAt"}
        assert isinstance(u["ID"], int) and RFC3339.match(u["CreatedAt"])
    r = api.delete(f"/users/{users[0]['ID']}")
    assert r.status_code == 200 and r.json() == {"message": "User deleted successfully"}
    r = api.delete("/users/99999")  # absent: still 200
    assert r.status_code == 200 and r.json() == {"message": "User deleted successfully"}
    r = api.delete("/users/abc")
    assert r.status_code == 400 and r.json() == {"message": "Invalid user ID format"}
    assert [u["Email"] for u in api.get("/users").json()] == [EMAIL]


def test_password_hash_is_bcrypt_cost_10(user_api, db):
    import sqlite3
    with sqlite3.connect(db) as conn:
        (h,) = conn.execute("SELECT password_hash FROM users").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert h.startswith("$2a$10$")
    assert {"users", "api_keys", "poller_state"} <= tables


# ---- api keys ------------------------------------------------------------------

def test_api_keys(user_api):
    api = user_api
    assert api.get("/api_keys").json() == []
    created = []
    for name in ["first", "second"]:
        r = api.post("/api_keys", json={"name": name})
        assert r.status_code == 201, r.text
        k = r.json()
        assert set(k) == {"ID", "Key", "Name", "CreatedAt"} and k["Name"] == name
        assert len(k["ID"]) == 21 and re.fullmatch(r"[A-Za-z0-9_-]{21}", k["ID"])
        assert re.fullmatch(r"[A-Za-z0-9]{64}", k["Key"])
        assert RFC3339.match(k["CreatedAt"])
        created.append(k)
    listed = api.get("/api_keys").json()
    assert [k["Key"] for k in listed] == [created[1]["Key"], created[0]["Key"]]
    r = api.post("/api_keys", json={})
    assert r.status_code == 400 and r.json()["message"].startswith("Validation failed: ")
    r = api.delete(f"/api_keys/{created[0]['ID']}")  # by key value, not id
    assert r.status_code == 404 and r.json() == {"message": "API key not found"}
    r = api.delete(f"/api_keys/{created[0]['Key']}")
    assert r.status_code == 204 and r.content == b""
    assert [k["Key"] for k in api.get("/api_keys").json()] == [created[1]["Key"]]


# ---- otel (JSON fixture) -----------------------------------------------------

def span(trace, sid, parent, service, start, **extra):
    row = {
        "trace_id": trace, "span_id": sid, "parent_span_id": parent, "service_name": service,
        "name": f"span-{sid}", "kind": "CLIENT", "start_time": start, "end_time": start,
        "status_code": "", "status_message": "", "attributes_json": {}, "events_json": [],
        "links_json": [], "trace_flags": 0, "trace_state": None, "junjo_id": "",
        "junjo_parent_id": "", "junjo_span_type": "", "junjo_wf_state_start": {},
        "junjo_wf_state_end": {}, "junjo_wf_graph_structure": {}, "junjo_wf_store_id": "",
    }
    row.update(extra)
    return row


@pytest.fixture
def otel_api(db, tmp_path):
    rows = [
        span("t1", "a1", None, "svc-a", "2025-01-02T03:04:05.1234Z", junjo_span_type="workflow"),
        span("t1", "a2", "a1", "svc-a", "2025-01-02T03:04:06Z",
             attributes_json={"openinference.span.kind": "LLM"}),
        span("t2", "b1", None, "svc-a", "2025-01-03T00:00:00+02:00"),
        span("t3", "c1", None, "svc-b", "1970-01-01T00:00:00Z",
             attributes_json={"openinference.span.kind": ["LLM"]}),
    ]
    fixture = tmp_path / "spans.json"
    fixture.write_text(json.dumps(rows))
    with start_standin(db, extra_args=["-spans-json", str(fixture),
                                       "-seed-user", f"{EMAIL}:{PASSWORD}"]) as s:
        api = Api(s.url)
        api.sign_in()
        yield api


def test_otel_routes(otel_api):
    api = otel_api
    r = api.get("/otel/span-service-names")
    assert r.json() == ["svc-a", "svc-b"] and r.text.endswith("\n")
    roots = api.get("/otel/service/svc-a/root-spans").json()
    assert [s["span_id"] for s in roots] == ["b1", "a1"]  # 2025-01-02T22:00Z after 03:04Z
    assert roots[0]["start_time"] == "2025-01-02T22:00:00Z"  # UTC, never +00:00
    assert roots[1]["start_time"] == "2025-01-02T03:04:05.1234Z"
    assert list(roots[1]) == sorted(roots[1]) and roots[1]["parent_span_id"] is None
    assert len(roots[1]) == 22
    filtered = api.get("/otel/service/svc-a/root-spans-filtered").json()
    assert [s["span_id"] for s in filtered] == ["a1"]
    assert api.get("/otel/service/svc-b/root-spans-filtered").json() == []
    nested = api.get("/otel/trace/t1/nested-spans").json()
    assert [s["span_id"] for s in nested] == ["a2", "a1"]
    assert nested[0]["attributes_json"] == {"openinference.span.kind": "LLM"}
    one = api.get("/otel/trace/t1/span/a2")
    assert one.json()["span_id"] == "a2"
    none = api.get("/otel/trace/t1/span/zz")
    assert (none.status_code, none.text) == (200, "null\n")
    wf = api.get("/otel/spans/type/workflow/svc-a").json()
    assert [s["span_id"] for s in wf] == ["a1"]
    assert api.get("/otel/service/nope/root-spans").json() == []
    pretty = api.get("/otel/span-service-names?pretty")
    assert pretty.text == '[\n  "svc-a",\n  "svc-b"\n]\n'
    assert pretty.headers["content-type"].startswith("application/json")


def test_otel_empty_without_fixture(user_api):
    assert user_api.get("/otel/span-service-names").json() == []
    assert user_api.get("/otel/trace/x/nested-spans").json() == []


# ---- llm -----------------------------------------------------------------------

def test_llm_without_key(user_api):
    r = user_api.post("/llm/generate", json={"contents": []})
    assert r.status_code == 500
    assert r.json() == {"error": "GEMINI_API_KEY environment variable is not set"}


def test_llm_forwards_and_answers_200_verbatim(db):
    seen = {}

    class Fake(BaseHTTPRequestHandler):
        def do_POST(self):
            seen["path"] = self.path
            seen["key"] = self.headers.get("x-goog-api-key")
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body = b'{"error": {"code": 429, "message": "quota"}}'
            self.send_response(429)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    fake = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    try:
        env = {"GEMINI_API_KEY": "k-123", "GEMINI_BASE_URL": f"http://127.0.0.1:{fake.server_port}"}
        with start_standin(db, env=env, extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"]) as s:
            api = Api(s.url)
            api.sign_in()
            r = api.post("/llm/generate", json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    finally:
        fake.shutdown()
    assert r.status_code == 200
    assert r.content == b'{"error": {"code": 429, "message": "quota"}}'
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["key"] == "k-123"
    assert seen["body"]["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


# ---- /_standin probes ------------------------------------------------------------

def raw_exchange(port: int, data: bytes, timeout=5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_probe_echo_raw_head(standin):
    head = (b"POST /_standin/echo/a%2Fb?x=1&y HTTP/1.1\r\nHost: h.example\r\n"
            b"x-lower: 1\r\nX-Dup: a\r\nX-Dup: b\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    resp = raw_exchange(standin.port, head)
    status, _, body = resp.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200")
    e = json.loads(body)
    assert e["method"] == "POST" and e["uri"] == "/_standin/echo/a%2Fb?x=1&y"
    assert e["proto"] == "HTTP/1.1" and e["host"] == "h.example"
    assert e["headers"] == [["Host", "h.example"], ["x-lower", "1"], ["X-Dup", "a"], ["X-Dup", "b"],
                            ["Content-Length", "5"], ["Connection", "close"]]
    assert e["body_len"] == 5 and e["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert e["content_length"] == 5 and e["transfer_encoding"] == []
    assert e["raw_head"] == head[:-5].decode()


def test_probe_echo_keepalive_and_chunked(standin):
    data = (b"GET /_standin/echo HTTP/1.1\r\nHost: h\r\nX-First: 1\r\n\r\n"
            b"PUT /_standin/echo/z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")
    bodies = [json.loads(p.split(b"\r\n\r\n", 1)[1]) for p in
              raw_exchange(standin.port, data).split(b"HTTP/1.1 ")[1:]]
    assert bodies[0]["headers"] == [["Host", "h"], ["X-First", "1"]]
    assert bodies[1]["method"] == "PUT" and bodies[1]["transfer_encoding"] == ["chunked"]
    assert bodies[1]["content_length"] == -1 and bodies[1]["body_len"] == 5


def test_probes_need_no_auth_or_csrf(api):
    r = api.post("/_standin/echo", content=b"x")
    assert r.status_code == 200 and not set_cookies(r)


def test_probe_cookies_gzip_small_headers(api):
    r = api.get("/_standin/cookies")
    assert r.text == "ok" and set_cookies(r) == [
        "a=1; Path=/", "b=2; Path=/; HttpOnly", 'c="x,y"; Expires=Wed, 21 Oct 2026 07:28:00 GMT']
    with api.client.stream("GET", "/_standin/gzip") as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip" and r.headers["content-type"].startswith("text/plain")
    assert gzip.decompress(raw) == b"hello gzip\n" * 100
    r = api.get("/_standin/small")
    assert len(r.content) == 200 and r.headers["content-type"].startswith("text/plain")
    r = api.get("/_standin/headers-out")
    assert r.headers["connection"] == "X-Hop" and r.headers["x-hop"] == "secret"
    assert r.headers["keep-alive"] == "timeout=5" and r.headers["x-keep"] == "yes"


def test_probe_status_redirect_download(api):
    for code in (200, 201, 404, 418, 500, 503):
        r = api.get(f"/_standin/status/{code}")
        assert r.status_code == code and r.content
    for code in (204, 304):
        r = api.get(f"/_standin/status/{code}")
        assert r.status_code == code and r.content == b""
    r = api.get("/_standin/redirect")
    assert r.status_code == 302 and r.headers["location"] == "/ping"
    r = api.get("/_standin/download?size=70000")
    assert r.headers["content-length"] == "70000"
    assert r.content == (bytes(range(256)) * 274)[:70000]


def test_probe_slow_and_stream(api):
    t0 = time.monotonic()
    r = api.get("/_standin/slow?ms=200")
    assert r.text == "slow" and time.monotonic() - t0 >= 0.2
    with api.client.stream("GET", "/_standin/stream?chunks=3&interval_ms=50") as r:
        assert r.headers.get("transfer-encoding") == "chunked"
        assert r.read() == b"chunk 0\nchunk 1\nchunk 2\n"


def test_probe_reset_and_stats(standin, api):
    with pytest.raises(httpx.HTTPError):
        api.get("/_standin/reset?after=100")
    got, reset = b"", False
    with socket.create_connection(("127.0.0.1", standin.port), timeout=5) as s:
        s.sendall(b"GET /_standin/reset?after=10 HTTP/1.1\r\nHost: h\r\n\r\n")
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionResetError:
            reset = True
    assert reset or got  # RST (data may be dropped by the kernel) or a short read
    if got:
        assert b"Content-Length: 1000000" in got and len(got.split(b"\r\n\r\n", 1)[1]) <= 10
    stats = api.get("/_standin/stats").json()
    assert set(stats) == {"open_connections", "active_requests"}
    # The reset handler may still be unwinding when the client sees the RST: wait for it.
    stats = until(lambda: (st := api.get("/_standin/stats").json())["active_requests"] == 0 and st,
                  timeout=5, what="the reset request to finish")
    assert stats["open_connections"] >= 1
    # A request in flight is counted.
    t = threading.Thread(target=lambda: httpx.get(standin.url + "/_standin/slow?ms=2000"))
    t.start()
    until(lambda: httpx.get(standin.url + "/_standin/stats").json()["active_requests"] == 1,
          timeout=5, what="the slow request to be counted")
    t.join()
