"""services/api_keys: the legacy /api_keys routes, in-process (Starlette TestClient)."""
from __future__ import annotations

import logging
import re
from collections import Counter

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from services.api_keys import PREFIXES, SERVICE, create_app, new_id, new_key
from services.api_keys.app import KEY_ALPHABET, NANOID_ALPHABET
from services.common.cookies import http_date
from services.common.db import Database
from services.common.echo_router import echo_path
from services.common.gobind import STRING, BindError, Slice, Struct, echo_bind
from services.common.goquery import go_quote
from services.common.session_codec import SessionCodec
from services.common.settings import settings_from_env
from services.registry import discover

NOW = 1795793923.0
SECRET = "dev-secret"
CODEC = SessionCodec([SECRET.encode()])
ID_RE = re.compile(r"\A[_\-0-9a-zA-Z]{21}\Z")
KEY_RE = re.compile(r"\A[0-9a-zA-Z]{64}\Z")
RFC3339_UTC = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
REQUIRED = ("Validation failed: Key: 'CreateAPIKeyRequest.Name' Error:Field validation for "
            "'Name' failed on the 'required' tag")
SIGNED_IN = f"session={CODEC.encode('ada@example.com', now=NOW)}; csrf=tok"


@pytest.fixture
def db(db_url):
    d = Database.from_url(db_url)  # SQLite and PostgreSQL
    yield d
    d.dispose()


def make_client(db, **options) -> TestClient:
    settings = settings_from_env({"JUNJO_SESSION_SECRET": SECRET})
    app = create_app(db=db, settings=lambda: settings, codec=CODEC, clock=lambda: NOW, **options)
    return TestClient(app)


@pytest.fixture
def client(db):
    return make_client(db)


def call(client, method, path, *, cookie=SIGNED_IN, **kw):
    headers = dict(kw.pop("headers", None) or {})
    if cookie:
        headers["Cookie"] = cookie
    return client.request(method, path, headers=headers, **kw)


def insert(db, key_id, key, name, created_at):
    """A key made at ``created_at`` (UTC, Go's CURRENT_TIMESTAMP text on SQLite)."""
    if db.engine.dialect.name == "postgresql":
        created_at += "+00"
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO api_keys (id, key, name, created_at) VALUES (:i, :k, :n, :c)"),
                     {"i": key_id, "k": key, "n": name, "c": created_at})


# --- POST /api_keys ----------------------------------------------------------------

def test_create_is_201_with_the_sqlc_struct(client, db):
    r = call(client, "POST", "/api_keys", json={"name": "ingest"})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    assert r.content.endswith(b"}\n")
    body = r.json()
    assert list(body) == ["ID", "Key", "Name", "CreatedAt"]
    assert ID_RE.match(body["ID"]) and KEY_RE.match(body["Key"])
    assert body["Name"] == "ingest" and RFC3339_UTC.match(body["CreatedAt"])
    stored = db.get_api_key(body["Key"])
    assert stored is not None and stored.id == body["ID"] and stored.name == "ingest"
    # the legacy CSRF middleware ran: cookie kept, Vary: Cookie
    assert r.headers["set-cookie"] == f"csrf=tok; Expires={http_date(NOW + 86400)}; HttpOnly; Secure; SameSite=Strict"
    assert r.headers["vary"] == "Cookie"


def test_create_bytes_are_go_json(db):
    client = make_client(db, id_factory=lambda: "id_-0123456789abcdefg", key_factory=lambda: "K" * 64)
    if db.engine.dialect.name == "postgresql":
        # PostgreSQL text cannot hold U+0000: the insert fails like any other
        # (docs/migrating-api-keys-and-llm.md, known differences).
        r = call(client, "POST", "/api_keys", json={"name": "a\u0000b"})
        assert (r.status_code, r.json()) == (500, {"message": "Failed to save API key"})
        r = call(client, "POST", "/api_keys", json={"name": "a\u0001<b>&\u2028"})
        escaped = b"a\\u0001\\u003cb\\u003e\\u0026\\u2028"
    else:
        r = call(client, "POST", "/api_keys", json={"name": "a\u0000<b>&\u2028"})
        escaped = b"a\\u0000\\u003cb\\u003e\\u0026\\u2028"
    created = db.get_api_key("K" * 64).created_at
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert r.content == (b'{"ID":"id_-0123456789abcdefg","Key":"' + b"K" * 64 +
                         b'","Name":"' + escaped + b'","CreatedAt":"' + stamp.encode() + b'"}\n')


@pytest.mark.parametrize("body,ctype", [
    (b"", None), (b"", "application/json"), (b"{}", "application/json"), (b'{"name":""}', "application/json"),
    (b'{"name":null}', "application/json"), (b"null", "application/json"), (b'{"other":"x"}', "application/json"),
    (b"name=a", "application/x-www-form-urlencoded"),
])
def test_missing_name_is_the_validator_message(client, body, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = call(client, "POST", "/api_keys", content=body, headers=headers)
    assert r.status_code == 400
    assert r.content == b'{"message":"' + REQUIRED.replace("'", "'").encode() + b'"}\n'


# Each text was read from the Go stand-in (Echo 4.13.3, Go encoding/json); the
# legacy's struct lives in package api_keys (the stand-in's in package main).
BAD_BODIES = [
    (b'{"name":5}', "application/json",
     "code=400, message=Unmarshal type error: expected=string, got=number, field=name, offset=9, "
     "internal=json: cannot unmarshal number into Go struct field CreateAPIKeyRequest.name of type string"),
    (b'{"name": true}', "application/json",
     "code=400, message=Unmarshal type error: expected=string, got=bool, field=name, offset=13, "
     "internal=json: cannot unmarshal bool into Go struct field CreateAPIKeyRequest.name of type string"),
    (b'{"name":{"x":1}}', "application/json",
     "code=400, message=Unmarshal type error: expected=string, got=object, field=name, offset=9, "
     "internal=json: cannot unmarshal object into Go struct field CreateAPIKeyRequest.name of type string"),
    (b"[1]", "application/json",
     "code=400, message=Unmarshal type error: expected=api_keys.CreateAPIKeyRequest, got=array, field=, "
     "offset=1, internal=json: cannot unmarshal array into Go value of type api_keys.CreateAPIKeyRequest"),
    (b'"x"', "application/json",
     "code=400, message=Unmarshal type error: expected=api_keys.CreateAPIKeyRequest, got=string, field=, "
     "offset=3, internal=json: cannot unmarshal string into Go value of type api_keys.CreateAPIKeyRequest"),
    (b'{"name":', "application/json", "code=400, message=unexpected EOF, internal=unexpected EOF"),
    (b"   ", "application/json", "code=400, message=EOF, internal=EOF"),
    (b"{x", "application/json",
     "code=400, message=Syntax error: offset=2, error=invalid character 'x' looking for beginning of "
     "object key string, internal=invalid character 'x' looking for beginning of object key string"),
    (b'{"name":"a",}', "application/json",
     "code=400, message=Syntax error: offset=13, error=invalid character '}' looking for beginning of "
     "object key string, internal=invalid character '}' looking for beginning of object key string"),
    (b'{"name":"a\\x"}', "application/json",
     "code=400, message=Syntax error: offset=12, error=invalid character 'x' in string escape code, "
     "internal=invalid character 'x' in string escape code"),
    (b'\xef\xbb\xbf{"name":"a"}', "application/json",
     "code=400, message=Syntax error: offset=1, error=invalid character '\u00ef' looking for beginning "
     "of value, internal=invalid character '\u00ef' looking for beginning of value"),
    (b'{"name":"a"}', "text/plain", "code=415, message=Unsupported Media Type"),
    (b'{"name":"a"}', "Application/JSON", "code=415, message=Unsupported Media Type"),
    (b'{"name":"a"}', None, "code=415, message=Unsupported Media Type"),
    (b"name=%zz", "application/x-www-form-urlencoded",
     'code=400, message=invalid URL escape "%zz", internal=invalid URL escape "%zz"'),
]


@pytest.mark.parametrize("body,ctype,detail", BAD_BODIES)
def test_unbindable_body_is_400_invalid_request_body(client, body, ctype, detail):
    headers = {"Content-Type": ctype} if ctype else {"Content-Type": ""}
    r = call(client, "POST", "/api_keys", content=body, headers=headers)
    assert r.status_code == 400
    assert r.json() == {"message": "Invalid request body: " + detail}


@pytest.mark.parametrize("body,ctype,name", [
    (b'{"name":"a"} trailing junk', "application/json", "a"),  # only the first value is read
    (b'{"name":"a"}{', "application/json", "a"),
    (b'{"NAME":"up"}', "application/json", "up"),              # Go folds key case
    (b'{"n\\u0061me":"esc"}', "application/json", "esc"),
    (b'{"name":"x","name":"last"}', "application/json", "last"),
    (b'{"name":"\xff"}', "application/json", "\ufffd"),        # invalid UTF-8 -> U+FFFD
    (b'{"name":"\\ud800x"}', "application/json", "\ufffdx"),   # lone surrogate -> U+FFFD
    (b'{"name":"a"}', "application/json; charset=utf-8", "a"),
    (b"<k><Name>xml</Name></k>", "application/xml", "xml"),
])
def test_go_binding_quirks(client, body, ctype, name):
    r = call(client, "POST", "/api_keys", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 201, r.text
    assert r.json()["Name"] == name


def test_duplicate_id_is_500_failed_to_save(db):
    client = make_client(db, id_factory=lambda: "same-id-000000000000a")
    assert call(client, "POST", "/api_keys", json={"name": "a"}).status_code == 201
    r = call(client, "POST", "/api_keys", json={"name": "b"})
    assert r.status_code == 500 and r.content == b'{"message":"Failed to save API key"}\n'


def test_generators_use_gonanoid_alphabets():
    ids = [new_id() for _ in range(400)]
    keys = [new_key() for _ in range(50)]
    assert all(ID_RE.match(i) for i in ids) and all(KEY_RE.match(k) for k in keys)
    assert len(set(ids)) == len(ids) and len(set(keys)) == len(keys)
    seen = Counter("".join(ids))
    assert set(seen) == set(NANOID_ALPHABET)  # '_' and '-' included (8400 draws over 64)
    assert set("".join(keys)) == set(KEY_ALPHABET)
    assert len(NANOID_ALPHABET) == 64 and len(KEY_ALPHABET) == 62


# --- GET /api_keys -------------------------------------------------------------------

def test_list_empty_is_empty_array(client):
    r = call(client, "GET", "/api_keys")
    assert (r.status_code, r.content) == (200, b"[]\n")
    assert r.headers["content-type"] == "application/json"


def test_list_newest_first_with_plaintext_keys(client, db):
    insert(db, "id-old", "k-old", "old", "2025-01-01 00:00:00")
    insert(db, "id-new", "k-new", "new", "2025-03-01 12:30:45")
    insert(db, "id-mid", "k-mid", "mid", "2025-02-01 00:00:00")
    r = call(client, "GET", "/api_keys")
    assert r.json() == [
        {"ID": "id-new", "Key": "k-new", "Name": "new", "CreatedAt": "2025-03-01T12:30:45Z"},
        {"ID": "id-mid", "Key": "k-mid", "Name": "mid", "CreatedAt": "2025-02-01T00:00:00Z"},
        {"ID": "id-old", "Key": "k-old", "Name": "old", "CreatedAt": "2025-01-01T00:00:00Z"},
    ]


def test_list_ties_follow_the_sqlc_query(client, db):
    # ORDER BY created_at DESC with no tie-breaker: SQLite's sorter keeps the
    # scan (insertion) order within one second, as the legacy's query does.
    for i in range(4):
        insert(db, f"id-{i}", f"k-{i}", f"n{i}", "2025-01-01 00:00:00")
    insert(db, "id-later", "k-later", "later", "2025-01-01 00:00:01")
    names = [k["Name"] for k in call(client, "GET", "/api_keys").json()]
    assert names == ["later", "n0", "n1", "n2", "n3"]


def test_list_ignores_query_and_body(client, db):
    insert(db, "i", "k", "n", "2025-01-01 00:00:00")
    r = call(client, "GET", "/api_keys?name=zzz")
    assert [k["Key"] for k in r.json()] == ["k"]


# --- DELETE /api_keys/:key -------------------------------------------------------------

def test_delete_is_204_without_body_then_404(client, db):
    insert(db, "i", "secretkey", "n", "2025-01-01 00:00:00")
    r = call(client, "DELETE", "/api_keys/secretkey")
    assert r.status_code == 204 and r.content == b""
    assert "content-type" not in r.headers and "content-length" not in r.headers
    assert r.headers["vary"] == "Cookie" and r.headers["set-cookie"].startswith("csrf=tok;")
    assert db.get_api_key("secretkey") is None
    r = call(client, "DELETE", "/api_keys/secretkey")
    assert r.status_code == 404 and r.content == b'{"message":"API key not found"}\n'


def test_delete_matches_by_key_not_id(client, db):
    insert(db, "the-id", "the-key", "n", "2025-01-01 00:00:00")
    assert call(client, "DELETE", "/api_keys/the-id").status_code == 404
    assert call(client, "DELETE", "/api_keys/THE-KEY").status_code == 404  # case-sensitive
    assert call(client, "DELETE", "/api_keys/the-key").status_code == 204


def test_trailing_param_takes_the_rest_like_echo(client, db):
    insert(db, "i", "abc", "n", "2025-01-01 00:00:00")
    insert(db, "j", "abc/extra", "n", "2025-01-01 00:00:00")
    # Echo: /api_keys/:key matches "abc/" with key "abc/", never key "abc".
    assert call(client, "DELETE", "/api_keys/abc/").json() == {"message": "API key not found"}
    assert db.get_api_key("abc") is not None
    assert call(client, "DELETE", "/api_keys/abc/extra").status_code == 204
    assert db.get_api_key("abc/extra") is None


def test_empty_key_is_echo_404(client):
    r = call(client, "DELETE", "/api_keys/")
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}


def test_percent_encoded_key_is_used_raw_like_echo(client, db):
    insert(db, "i", "Abc", "n", "2025-01-01 00:00:00")
    # %41 is 'A': Go keeps RawPath (its escaping differs), Echo routes on it.
    r = call(client, "DELETE", "/api_keys/%41bc")
    assert r.status_code == 404 and db.get_api_key("Abc") is not None


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/api_keys", "OPTIONS, GET, POST"),
    ("DELETE", "/api_keys", "OPTIONS, GET, POST"),
    ("HEAD", "/api_keys", "OPTIONS, GET, POST"),
    ("GET", "/api_keys/x", "OPTIONS, DELETE"),
    ("POST", "/api_keys/x", "OPTIONS, DELETE"),
])
def test_wrong_method_is_echo_405(client, method, path, allow):
    r = call(client, method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    if method != "HEAD":
        assert r.json() == {"message": "Method Not Allowed"}


# --- the legacy middleware (services.common.protect) ---------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/api_keys"), ("POST", "/api_keys"), ("DELETE", "/api_keys/k")])
def test_no_session_is_401_with_csrf_cookie(client, method, path):
    r = call(client, method, path, cookie="csrf=tok", json={"name": "x"})
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized: No valid session"}
    assert r.headers["set-cookie"].startswith("csrf=tok;") and r.headers["vary"] == "Cookie"


def test_unsafe_method_without_csrf_cookie_is_400_before_auth(client):
    session_only = SIGNED_IN.split(";")[0]
    r = call(client, "POST", "/api_keys", cookie=session_only, json={"name": "x"})
    assert r.status_code == 400 and r.json() == {"message": "missing value in cookies"}
    r = call(client, "DELETE", "/api_keys/k", cookie=None, headers={"X-CSRF-Token": "t"})
    assert r.status_code == 403 and r.json() == {"message": "invalid csrf token"}
    # GET needs no csrf cookie; one is issued
    r = call(client, "GET", "/api_keys", cookie=session_only)
    assert r.status_code == 200 and r.headers["set-cookie"].startswith("csrf=")


# --- database failures ------------------------------------------------------------------

class BrokenDb(Database):
    def __init__(self, inner: Database) -> None:
        super().__init__(inner.engine, create_schema=False)

    def _boom(self, *args):
        raise RuntimeError(f"database is locked; parameters {args!r}")

    create_api_key = list_api_keys = get_api_key = delete_api_key = _boom


@pytest.mark.parametrize("method,path,message", [
    ("POST", "/api_keys", "Failed to save API key"),
    ("GET", "/api_keys", "Failed to retrieve API keys"),
    ("DELETE", "/api_keys/supersecretvalue", "Failed to delete API key"),
])
def test_database_errors_are_500_messages_and_log_no_key(db, caplog, method, path, message):
    client = make_client(BrokenDb(db), key_factory=lambda: "supersecretvalue")
    with caplog.at_level(logging.DEBUG):
        r = call(client, method, path, json={"name": "x"})
    assert r.status_code == 500 and r.content == b'{"message":"' + message.encode() + b'"}\n'
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("services.")]
    assert ours and not any("supersecretvalue" in m for m in ours)


# --- helpers ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,decoded,expected", [
    (b"/api_keys/abc", "/api_keys/abc", "/api_keys/abc"),
    (b"/api_keys/%41bc", "/api_keys/Abc", "/api_keys/%41bc"),       # Go keeps RawPath
    (b"/api_keys/a%20b", "/api_keys/a b", "/api_keys/a b"),        # default escaping
    (b"/api_keys/a%2fb", "/api_keys/a/b", "/api_keys/a%2fb"),
    (b"/api_keys/a%2Fb", "/api_keys/a/b", "/api_keys/a%2Fb"),
    (b"/api_keys/a:b@c", "/api_keys/a:b@c", "/api_keys/a:b@c"),
    (b"/api_keys/%C3%A9", "/api_keys/\u00e9", "/api_keys/\u00e9"),
    (b"/api_keys/%c3%a9", "/api_keys/\u00e9", "/api_keys/%c3%a9"),  # lower-case hex is not Go's
])
def test_echo_path(raw, decoded, expected):
    assert echo_path({"raw_path": raw, "path": decoded}) == expected


def test_bind_helpers():
    t = Struct("T", "pkg", (("List", "list", Slice(STRING)),))
    assert echo_bind(b'{"list":["a","b"]}', "application/json", t) == {"List": ["a", "b"]}
    assert echo_bind(b'{"list":null}', "application/json", t) == {"List": None}
    assert echo_bind(b'{"list":[]}', "application/json", t) == {"List": []}
    with pytest.raises(BindError) as info:
        echo_bind(b'{"list":[1]}', "application/json", t)
    assert "field=list, offset=10" in str(info.value)
    deep = b"[" * 10001 + b"]" * 10001
    with pytest.raises(BindError) as info:  # Go's scanner: s.error(c, "exceeded max depth")
        echo_bind(deep, "application/json", t)
    assert str(info.value) == ("code=400, message=Syntax error: offset=10001, error=invalid character '[' "
                               "exceeded max depth, internal=invalid character '[' exceeded max depth")
    assert go_quote('a"\\\x01\u00e9'.encode()) == '"a\\"\\\\\\x01\u00e9"'
    assert go_quote(b"%\xff1") == '"%\\xff1"'  # an invalid UTF-8 byte, as strconv.Quote writes it


def test_service_is_registered_and_protected():
    assert SERVICE.name == "api_keys" and SERVICE.prefixes == PREFIXES == ("/api_keys",)
    registry = discover(["services"])
    assert registry.owner_of("/api_keys").name == "api_keys"
    assert type(SERVICE.app).__name__ == "LegacyProtection"
