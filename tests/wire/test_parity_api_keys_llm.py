"""/api_keys and /llm/generate: Go (the stand-in) vs Python, through the real gateway.

Over real sockets: the Go stand-in (legacy libraries) and gateway processes
share one SQLite file; the stand-in and the Python llm feature both call a
fake Gemini server run here on a loopback port. Every request is sent once
through a gateway routing the prefix to ``go`` and once through one routing
it to ``python``; status, the headers that matter and the body (ids, keys and
times normalised) must agree. Then a browser-like journey flips the prefixes
back and forth on one gateway.

Known, documented differences (docs/migrating-api-keys-and-llm.md) are
normalised explicitly, nowhere else:

* the Go type names in bind errors: the stand-in's structs live in package
  ``main``, the legacy's (and ours) in ``api_keys`` and ``llm``;
* list order among keys created in the same second: the stand-in adds a
  ``rowid DESC`` tie-breaker, the legacy's sqlc query (which Python runs) has none.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.db import Database
from tests.support.gateway_proc import GatewayProc, routes_yaml, start_gateway
from tests.support.standin import StandIn, start_standin

SECRET = "test-secret"
GEMINI_KEY = "AIza-parity-SECRET-key-0042"
EMAIL, PASSWORD = "ada@example.com", "correct horse"
LLM_TIMEOUT = 1.5
ID_RE = re.compile(r"\A[_\-0-9a-zA-Z]{21}\Z")
KEY_RE = re.compile(r"\A[0-9a-zA-Z]{64}\Z")
TIME_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")

PY_ROUTES = "  - prefix: /api_keys\n    to: python\n  - prefix: /llm\n    to: python\n"
GO_ROUTES = "  - prefix: /api_keys\n    to: go\n  - prefix: /llm\n    to: go\n"


# --- a fake Gemini ---------------------------------------------------------------------

class FakeGemini:
    """``POST /v1beta/models/{model}:generateContent``. It answers with what it
    received (path, raw body, whether the key header was right — never the key),
    so comparing the two sides' answers compares what they sent. Special models:
    ``status-429`` (an error echoing the request URL), ``plain-text`` (a 502 HTML
    body), ``slow`` (answers after 4 s)."""

    def __init__(self) -> None:
        fake = self
        self.seen: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                model = self.path.split("/models/", 1)[-1].rsplit(":generateContent", 1)[0]
                fake.seen.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                status, ctype = 200, "application/json; charset=UTF-8"
                if model == "status-429":
                    status = 429
                    out = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                                "message": f"Quota exceeded for http://gemini{self.path}"}})
                elif model == "plain-text":
                    status, ctype, out = 502, "text/html", "<html>upstream says no</html>"
                else:
                    if model == "slow":
                        time.sleep(4)
                    out = json.dumps({
                        "candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}}],
                        "echo": {"path": self.path, "body": raw.decode("utf-8", "replace"),
                                 "key_ok": self.headers.get("x-goog-api-key") == GEMINI_KEY,
                                 "content_type": self.headers.get("Content-Type")},
                    }, sort_keys=True)
                data = out.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures: one stand-in, two gateways (go / python) on the same SQLite file ----------

class Stack:
    def __init__(self, db: str, fake: FakeGemini, standin: StandIn, go: GatewayProc, py: GatewayProc):
        self.db, self.fake, self.standin, self.go, self.py = db, fake, standin, go, py


def gateway_env(db: str, fake_url: str, api_key: str | None = GEMINI_KEY) -> dict[str, str]:
    env = {"JUNJO_SQLITE_PATH": db, "JUNJO_SESSION_SECRET": SECRET, "GEMINI_BASE_URL": fake_url,
           "LLM_TIMEOUT_SECONDS": str(LLM_TIMEOUT), "GEMINI_API_KEY": api_key or ""}
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("parity")
    db = str(base / "app_data.db")
    fake = FakeGemini()
    standin = start_standin(db, env={"GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": fake.url},
                            extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
    started: list[GatewayProc] = []
    try:
        for routes in (GO_ROUTES, PY_ROUTES):
            d = base / f"gw{len(started)}"
            d.mkdir()
            started.append(start_gateway(routes_yaml(standin.url, routes), d,
                                         env=gateway_env(db, fake.url)))
        yield Stack(db, fake, standin, *started)
    finally:
        for gw in started:
            gw.stop()
        standin.stop()
        fake.stop()


class Client:
    """Plain HTTP, no cookie jar: tests send the Cookie header themselves."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def send(self, method: str, path: str, *, cookie: str | None = None,
             headers: dict | None = None, content: Any = None) -> httpx.Response:
        """``content`` is bytes, or a callable giving an iterator (sent chunked)."""
        if callable(content):
            content = content()
        self.http.cookies.clear()
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        return self.http.request(method, path, headers=h, content=content)


def sign_in(url: str) -> str:
    """Sign in against Go (through the gateway); a Cookie header value."""
    r = httpx.post(url + "/sign-in", json={"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text
    session = [c for c in r.headers.get_list("set-cookie") if c.startswith("session=")][0]
    return session.split(";", 1)[0] + "; csrf=parity-csrf"


@pytest.fixture(scope="module")
def cookie(stack: Stack) -> str:
    return sign_in(stack.go.url)


@pytest.fixture(scope="module")
def clients(stack: Stack) -> Iterator[tuple[Client, Client]]:
    go, py = Client(stack.go.url), Client(stack.py.url)
    yield go, py
    go.http.close()
    py.http.close()


# --- normalising and comparing ------------------------------------------------------------

def norm_cookie(header: str) -> tuple[str, tuple[str, ...]]:
    name = header.split("=", 1)[0]
    attrs = []
    for a in (x.strip() for x in header.split(";")[1:]):
        if a.lower().startswith("expires="):
            parsedate_to_datetime(a.split("=", 1)[1])  # must parse
            a = "Expires=<date>"
        attrs.append(a)
    return name, tuple(attrs)


def norm_json(value: Any) -> Any:
    if isinstance(value, list):
        return [norm_json(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "ID":
                assert ID_RE.match(v), v
                v = "<ID>"
            elif k == "Key":
                assert KEY_RE.match(v), v
                v = "<KEY>"
            elif k == "CreatedAt":
                assert TIME_RE.match(v), v
                v = "<TIME>"
            out[k] = norm_json(v)
        return out
    if isinstance(value, str):
        value = value.replace("main.CreateAPIKeyRequest", "api_keys.CreateAPIKeyRequest")
        return LLM_TYPE_IN_MAIN.sub(r"llm.\1", value)
    return value


# The stand-in's LLM structs carry the legacy's names, in package main instead of llm.
LLM_TYPE_IN_MAIN = re.compile(r"\bmain\.(GeminiRequest|GeminiContent|GeminiPart|GenerationConfig|SystemInstruction)\b")


def snapshot(r: httpx.Response) -> dict[str, Any]:
    ctype = r.headers.get("content-type")
    body: Any = r.content
    if ctype == "application/json" and r.content:
        try:
            body = norm_json(json.loads(r.content))
        except ValueError:  # a provider body passed through verbatim
            pass
    vary = sorted({t.strip() for v in r.headers.get_list("vary") for t in v.split(",") if t.strip()})
    return {
        "status": r.status_code,
        "content-type": ctype,
        "allow": r.headers.get("allow"),
        "vary": vary,
        "set-cookie": sorted(norm_cookie(c) for c in r.headers.get_list("set-cookie")),
        "body": body,
    }


def both(clients, method, path, **kw) -> tuple[httpx.Response, httpx.Response]:
    go, py = clients
    return go.send(method, path, **kw), py.send(method, path, **kw)


def assert_same(clients, method, path, **kw) -> tuple[httpx.Response, httpx.Response]:
    rg, rp = both(clients, method, path, **kw)
    assert snapshot(rp) == snapshot(rg), f"{method} {path}: go={rg.content!r} python={rp.content!r}"
    return rg, rp


JSON = {"Content-Type": "application/json"}


# --- /api_keys -------------------------------------------------------------------------------

def test_gateways_route_as_configured(stack: Stack):
    for gw, target in ((stack.go, "go"), (stack.py, "python")):
        table = gw.admin_get("/_gateway/routes").json()
        targets = {r["prefix"]: r["state"] for r in table["routes"]}
        assert targets["/api_keys"] == targets["/llm"] == target


def test_create_parity(clients, cookie, stack: Stack):
    rg, rp = assert_same(clients, "POST", "/api_keys", cookie=cookie, headers=JSON,
                         content=b'{"name":"parity \\u003c&\\u003e \xc3\xa9"}')
    assert rg.status_code == 201
    db = Database.from_url(f"sqlite:///{stack.db}")
    try:  # both rows are in the one table, each readable the way ingestion validates keys
        for r in (rg, rp):
            row = db.get_api_key(r.json()["Key"])
            assert row is not None and row.id == r.json()["ID"] and row.name == "parity <&> \u00e9"
    finally:
        db.dispose()


BAD_CREATES = [
    (b"", None), (b"{}", "application/json"), (b'{"name":""}', "application/json"),
    (b'{"name":null}', "application/json"), (b"null", "application/json"),
    (b'{"name":5}', "application/json"), (b'{"name": [1, 2]}', "application/json"),
    (b"[1]", "application/json"), (b'"x"', "application/json"), (b"123abc", "application/json"),
    (b'{"name":', "application/json"), (b"  \n", "application/json"), (b"{x", "application/json"),
    (b'{"name":"a",}', "application/json"), (b'{"name":"a\\x"}', "application/json"),
    (b'{"name":"\x01"}', "application/json"), (b'{"name":tru}', "application/json"),
    (b'{"name":1.}', "application/json"), (b'{"name" "x"}', "application/json"),
    (b"\xef\xbb\xbf{}", "application/json"), (b'{"name":"a"}', "text/plain"),
    (b'{"name":"a"}', "Application/JSON"), (b'{"name":"a"}', None),
    (b"name=a", "application/x-www-form-urlencoded"),
    (b"name=%zz", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize("body,ctype", BAD_CREATES)
def test_bad_create_parity(clients, cookie, body, ctype):
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
    rg, _ = assert_same(clients, "POST", "/api_keys", cookie=cookie, headers=headers, content=body)
    assert rg.status_code == 400


@pytest.mark.parametrize("body,ctype", [
    (b'{"name":"a"} trailing', "application/json"), (b'{"NAME":"Up"}', "application/json"),
    (b'{"name":"x","name":"last"}', "application/json"), (b'{"name":"\xff\\ud800"}', "application/json"),
    (b'{"name":"a"}', "application/json; charset=utf-8"), (b"<k><Name>xml</Name></k>", "application/xml"),
])
def test_quirky_create_parity(clients, cookie, body, ctype):
    rg, rp = assert_same(clients, "POST", "/api_keys", cookie=cookie, headers={"Content-Type": ctype},
                         content=body)
    assert rg.status_code == 201 and rg.json()["Name"] == rp.json()["Name"]


def grouped(keys: list[dict]) -> list[tuple[str, frozenset]]:
    """The list as (CreatedAt, set of keys) runs: order between seconds, not within."""
    runs: list[tuple[str, set]] = []
    for k in keys:
        if runs and runs[-1][0] == k["CreatedAt"]:
            runs[-1][1].add(json.dumps(k, sort_keys=True))
        else:
            runs.append((k["CreatedAt"], {json.dumps(k, sort_keys=True)}))
    return [(t, frozenset(s)) for t, s in runs]


def test_list_parity(clients, cookie, stack: Stack):
    go, py = clients
    # two keys a second apart, so "newest first" is visible across seconds
    go.send("POST", "/api_keys", cookie=cookie, headers=JSON, content=b'{"name":"older"}')
    time.sleep(1.05)
    py.send("POST", "/api_keys", cookie=cookie, headers=JSON, content=b'{"name":"newer"}')
    rg, rp = both(clients, "GET", "/api_keys", cookie=cookie)
    sg, sp = snapshot(rg), snapshot(rp)
    assert {k: v for k, v in sp.items() if k != "body"} == {k: v for k, v in sg.items() if k != "body"}
    assert rg.status_code == 200 and rg.json()[0]["Name"] == "newer"
    assert grouped(rp.json()) == grouped(rg.json())
    times = [k["CreatedAt"] for k in rp.json()]
    assert times == sorted(times, reverse=True)
    # Python runs the legacy's sqlc query: ties in insertion order (the stand-in: rowid DESC)
    db = Database.from_url(f"sqlite:///{stack.db}")
    try:
        assert [k["Key"] for k in rp.json()] == [k.key for k in db.list_api_keys()]
    finally:
        db.dispose()


def test_delete_parity_cross_side(clients, cookie):
    go, py = clients
    made_by_go = go.send("POST", "/api_keys", cookie=cookie, headers=JSON, content=b'{"name":"g"}').json()["Key"]
    made_by_py = py.send("POST", "/api_keys", cookie=cookie, headers=JSON, content=b'{"name":"p"}').json()["Key"]
    # each side deletes the key the other side made
    rg = go.send("DELETE", f"/api_keys/{made_by_py}", cookie=cookie)
    rp = py.send("DELETE", f"/api_keys/{made_by_go}", cookie=cookie)
    assert snapshot(rp) == snapshot(rg) and rg.status_code == 204 and rg.content == rp.content == b""
    assert "content-length" not in rp.headers or rp.headers["content-length"] == "0"
    for path in (f"/api_keys/{made_by_py}", f"/api_keys/{made_by_go}"):
        rg, _ = assert_same(clients, "DELETE", path, cookie=cookie)
        assert rg.status_code == 404


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/api_keys/doesnotexist"), ("DELETE", "/api_keys/"), ("DELETE", "/api_keys/a/b"),
    ("DELETE", "/api_keys/%41bc"), ("DELETE", "/api_keys/a%2Fb"), ("DELETE", "/api_keys/x?y=1"),
    ("PUT", "/api_keys"), ("DELETE", "/api_keys"), ("GET", "/api_keys/x"), ("POST", "/api_keys/x"),
    ("HEAD", "/api_keys"), ("PATCH", "/api_keys/x"),
])
def test_misc_route_parity(clients, cookie, method, path):
    rg, _ = assert_same(clients, method, path, cookie=cookie)
    assert rg.status_code in (404, 405)


@pytest.mark.parametrize("method,path,cookie_kind,headers", [
    ("GET", "/api_keys", "none", {}),
    ("GET", "/api_keys", "csrf-only", {}),
    ("POST", "/api_keys", "csrf-only", JSON),
    ("POST", "/api_keys", "session-only", JSON),
    ("POST", "/api_keys", "none", {"X-CSRF-Token": "t", **JSON}),
    ("DELETE", "/api_keys/k", "session-only", {}),
    ("DELETE", "/api_keys/k", "garbage-session", {}),
    ("POST", "/llm/generate", "csrf-only", JSON),
    ("POST", "/llm/generate", "session-only", JSON),
    ("GET", "/llm/generate", "full", {}),
    ("POST", "/llm/other", "full", JSON),
])
def test_middleware_parity(clients, cookie, method, path, cookie_kind, headers):
    session = cookie.split(";")[0]
    jar = {"none": None, "csrf-only": "csrf=c1", "session-only": session,
           "garbage-session": "session=bm90LWEtY29va2ll; csrf=c1", "full": cookie}[cookie_kind]
    rg, _ = assert_same(clients, method, path, cookie=jar, headers=headers, content=b'{"name":"x"}')
    assert rg.status_code in (400, 401, 403, 404, 405)


# --- /llm/generate ------------------------------------------------------------------------------

LLM_BODIES = [
    b'{"contents":[{"role":"user","parts":[{"text":"Say hi <&>"}]}]}',
    b'{"model":"gemini-2.5-pro","contents":[{"parts":[{"text":"x"}]}],'
    b'"generationConfig":{"temperature":0.7,"topP":0.95,"topK":40,"stopSequences":["\\n"],'
    b'"responseMimeType":"application/json","seed":7},"system_instruction":{"parts":[{"text":"brief"}]}}',
    b"", b"{}", b"null", b'{"contents":[]}', b'{"contents":[{}],"tools":[{"x":1}]}',
    b'{"MODEL":"m1","Contents":[{"ROLE":"user","parts":[{"text":"\xff"}]}]}',
    b'{"generationConfig":{"temperature":0,"topK":0,"stopSequences":[]}}',
    b'{"generationConfig":{"temperature":1e-7,"topP":1E2}}',
    b'{"generationConfig":null,"system_instruction":{}}',
    b'{"model":"status-429","contents":[]}',
    b'{"model":"plain-text"}',
    b'{"contents":[{"parts":[{"text":"a"}]}]} trailing',
]


@pytest.mark.parametrize("body", LLM_BODIES)
def test_generate_parity(clients, cookie, stack: Stack, body):
    rg, rp = both(clients, "POST", "/llm/generate", cookie=cookie, headers=JSON, content=body)
    assert rg.status_code == 200, rg.text
    assert rp.content == rg.content  # the provider's bytes, verbatim; so what it received matched too
    assert snapshot(rp)["set-cookie"] == snapshot(rg)["set-cookie"]
    assert rp.headers["content-type"] == rg.headers["content-type"] == "application/json"
    if rg.content.startswith(b'{"candidates"'):
        echo = json.loads(rg.content)["echo"]
        assert echo["key_ok"] is True and echo["content_type"] == "application/json"
    for seen in stack.fake.seen:
        assert GEMINI_KEY not in seen["path"]
    assert GEMINI_KEY not in rp.text


def chunked(*parts: bytes):
    """A body sent with ``Transfer-Encoding: chunked`` (Go then does not know its length)."""
    return lambda: iter(parts)


UNEXPECTED_EOF = b'{"error":"code=400, message=unexpected EOF, internal=unexpected EOF"}\n'
UNSUPPORTED = b'{"error":"code=415, message=Unsupported Media Type"}\n'
EOF_ERROR = b'{"error":"code=400, message=EOF, internal=EOF"}\n'

# Bodies Echo's c.Bind refuses: 400 {"error": err.Error()}, checked before the key.
BAD_GENERATES = [
    (b'{"contents":[{"parts":', "application/json", UNEXPECTED_EOF),  # truncated JSON
    (b'{"model":', "application/json", UNEXPECTED_EOF),
    (b"{nope", "application/json", None), (b"[]", "application/json", None),
    (b'{"model":5}', "application/json", None), (b'{"contents":{}}', "application/json", None),
    (b'{"generationConfig":{"topK":1.5}}', "application/json", None),
    (b'{"generationConfig":{"temperature":"hot"}}', "application/json", None),
    (b'{"generationConfig":{"temperature":1e400}}', "application/json", None),
    (b'{"contents":[{"parts":[{"text":1}]}]}', "application/json", None),
    (b"  ", "application/json", EOF_ERROR),
    (chunked(), "application/json", EOF_ERROR),  # empty, but of unknown length
    (chunked(b"  "), "application/xml", EOF_ERROR),
    (b'{"contents":[]}', "text/plain", UNSUPPORTED), (b'{"contents":[]}', None, UNSUPPORTED),
    (b'{"contents":[]}', "Application/JSON", UNSUPPORTED),
]
BAD_IDS = [f"{i}-{c or 'no-type'}" for i, (_, c, _) in enumerate(BAD_GENERATES)]


@pytest.mark.parametrize("body,ctype,expected", BAD_GENERATES, ids=BAD_IDS)
def test_bad_generate_parity(clients, cookie, body, ctype, expected):
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
    rg, rp = assert_same(clients, "POST", "/llm/generate", cookie=cookie, headers=headers, content=body)
    assert rg.status_code == 400 and list(rg.json()) == ["error"]
    assert rg.json()["error"].startswith(("code=400, message=", "code=415, message="))
    if expected is not None:
        assert rg.content == rp.content == expected


@pytest.mark.parametrize("body,ctype", [
    (b"<GeminiRequest><Model>xml-model</Model></GeminiRequest>", "application/xml"),
    (b"<x><Model>from-text-xml</Model><Other>1</Other></x>", "text/xml"),
    (b"", "text/plain"),  # Content-Length: 0 binds nothing, whatever the type
    (b"model=form", "application/x-www-form-urlencoded"),  # no form tags: binds nothing
])
def test_quirky_generate_parity(clients, cookie, body, ctype):
    rg, rp = both(clients, "POST", "/llm/generate", cookie=cookie, headers={"Content-Type": ctype},
                  content=body)
    assert rg.status_code == rp.status_code == 200, rg.text
    assert rp.content == rg.content  # so the provider received the same re-marshalled struct


# --- without GEMINI_API_KEY: the body is bound first, then the key is missing --------------------

@pytest.fixture(scope="module")
def nokey_clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Client]]:
    base = tmp_path_factory.mktemp("parity-nokey")
    db = str(base / "app_data.db")
    standin = start_standin(db, env={"GEMINI_API_KEY": None, "GEMINI_BASE_URL": "http://127.0.0.1:9"},
                            extra_args=["-seed-user", f"{EMAIL}:{PASSWORD}"])
    started: list[GatewayProc] = []
    try:
        for routes in (GO_ROUTES, PY_ROUTES):
            d = base / f"gw{len(started)}"
            d.mkdir()
            started.append(start_gateway(routes_yaml(standin.url, routes), d,
                                         env=gateway_env(db, "http://127.0.0.1:9", api_key=None)))
        go, py = Client(started[0].url), Client(started[1].url)
        yield go, py
        go.http.close()
        py.http.close()
    finally:
        for gw in started:
            gw.stop()
        standin.stop()


NO_KEY = b'{"error":"GEMINI_API_KEY environment variable is not set"}\n'


@pytest.mark.parametrize("body,ctype,expected", BAD_GENERATES, ids=BAD_IDS)
def test_bad_body_without_key_is_still_the_bind_error(nokey_clients, cookie, body, ctype, expected):
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
    rg, rp = assert_same(nokey_clients, "POST", "/llm/generate", cookie=cookie, headers=headers, content=body)
    assert rg.status_code == 400 and rg.content != NO_KEY
    if expected is not None:
        assert rg.content == rp.content == expected


@pytest.mark.parametrize("body,ctype", [
    (b"{}", "application/json"), (b"", "application/json"), (b"", None),
    (b'{"contents":[{"parts":[{"text":"hi"}]}]}', "application/json"),
    (b"<r><Model>m</Model></r>", "application/xml"),
])
def test_bindable_body_without_key_is_500(nokey_clients, cookie, body, ctype):
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
    rg, rp = assert_same(nokey_clients, "POST", "/llm/generate", cookie=cookie, headers=headers, content=body)
    assert (rg.status_code, rg.content) == (rp.status_code, rp.content) == (500, NO_KEY)


def test_provider_down_is_500_on_both(tmp_path: Path, cookie):
    standin = start_standin(str(tmp_path / "down.db"),
                            env={"GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": "http://127.0.0.1:9"})
    gws = []
    try:
        for i, routes in enumerate((GO_ROUTES, PY_ROUTES)):
            d = tmp_path / f"gw{i}"
            d.mkdir()
            gws.append(start_gateway(routes_yaml(standin.url, routes), d,
                                     env=gateway_env(str(tmp_path / "down.db"), "http://127.0.0.1:9")))
        rg, rp = (Client(gw.url).send("POST", "/llm/generate", cookie=cookie, headers=JSON, content=b"{}")
                  for gw in gws)
        assert rg.status_code == rp.status_code == 500
        prefix = 'Post "http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:generateContent": '
        assert rg.json()["error"].startswith(prefix) and rp.json()["error"].startswith(prefix)
        assert GEMINI_KEY not in rp.text
    finally:
        for gw in gws:
            gw.stop()
        standin.stop()


def test_python_bounds_the_provider_call(clients, cookie):
    _, py = clients
    started = time.monotonic()
    r = py.send("POST", "/llm/generate", cookie=cookie, headers=JSON, content=b'{"model":"slow"}')
    elapsed = time.monotonic() - started
    assert r.status_code == 504 and "did not answer within 1.5 seconds" in r.json()["error"]
    assert LLM_TIMEOUT - 0.1 < elapsed < LLM_TIMEOUT + 2
    assert GEMINI_KEY not in r.text


# --- a frontend-like journey, flipping routes.yaml on one gateway ----------------------------------

def flip(gw: GatewayProc, config: str) -> None:
    """Rewrite the gateway's routes.yaml and wait until the new table is live."""
    gw.apply_config(config)


class BrowserJar:
    """What the frontend does: keep cookies (Secure ignored: tests run over http),
    send them back, and echo the csrf token in X-CSRF-Token."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)
        self.cookies: dict[str, str] = {}
        self.csrf_token: str | None = None

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        self.http.cookies.clear()
        headers = dict(kw.pop("headers", None) or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.csrf_token and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf_token
        r = self.http.request(method, path, headers=headers, **kw)
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in header.lower().replace(" ", ""):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r


def test_journey_flipping_each_prefix(stack: Stack, tmp_path: Path):
    url = stack.standin.url
    cfg = {"/api_keys": "go", "/llm": "go"}

    def config() -> str:
        block = "".join(f"  - prefix: {p}\n    to: {t}\n" for p, t in cfg.items())
        return routes_yaml(url, block)

    gw = start_gateway(config(), tmp_path, env=gateway_env(stack.db, stack.fake.url))
    try:
        def route(prefix: str, target: str) -> None:
            cfg[prefix] = target
            flip(gw, config())

        jar = BrowserJar(gw.url)
        assert jar.request("GET", "/users/db-has-users").json() == {"usersExist": True}
        r = jar.request("POST", "/sign-in", json={"email": EMAIL, "password": PASSWORD})  # Go
        assert r.status_code == 200 and "session" in jar.cookies
        jar.csrf_token = jar.request("GET", "/csrf").json()["csrfToken"]
        assert jar.cookies["csrf"] == jar.csrf_token

        def names() -> list[str]:
            r = jar.request("GET", "/api_keys")
            assert r.status_code == 200, r.text
            return [k["Name"] for k in r.json()]

        # create via Python, list + delete via Go
        route("/api_keys", "python")
        a = jar.request("POST", "/api_keys", json={"name": "journey-a"})
        assert a.status_code == 201, a.text
        route("/api_keys", "go")
        assert "journey-a" in names()
        assert jar.request("DELETE", f"/api_keys/{a.json()['Key']}").status_code == 204
        assert "journey-a" not in names()

        # create via Go, list + delete via Python
        b = jar.request("POST", "/api_keys", json={"name": "journey-b"})
        assert b.status_code == 201
        route("/api_keys", "python")
        assert "journey-b" in names()
        assert jar.request("DELETE", f"/api_keys/{b.json()['Key']}").status_code == 204
        assert "journey-b" not in names()
        assert jar.request("DELETE", f"/api_keys/{b.json()['Key']}").json() == {"message": "API key not found"}

        # /llm flips on its own, /api_keys stays on Python
        body = {"contents": [{"role": "user", "parts": [{"text": "journey"}]}]}
        on_go = jar.request("POST", "/llm/generate", json=body)
        route("/llm", "python")
        on_py = jar.request("POST", "/llm/generate", json=body)
        assert on_go.status_code == on_py.status_code == 200 and on_py.content == on_go.content
        assert json.loads(on_py.content)["echo"]["key_ok"] is True
        c = jar.request("POST", "/api_keys", json={"name": "journey-c"})
        assert c.status_code == 201

        # and everything back to Go: nothing breaks, the Python-made key is Go's too
        route("/llm", "go")
        route("/api_keys", "go")
        assert jar.request("POST", "/llm/generate", json=body).content == on_go.content
        assert "journey-c" in names()
        assert jar.request("DELETE", f"/api_keys/{c.json()['Key']}").status_code == 204
        assert jar.request("GET", "/auth-test").json() == {"userEmail": EMAIL}
        assert jar.cookies["csrf"] == jar.csrf_token  # never rotated along the way
    finally:
        gw.stop()
