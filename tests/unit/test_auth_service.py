"""services/auth: the legacy auth and users routes, end to end in-process."""
from __future__ import annotations

import bcrypt
import pytest
from starlette.testclient import TestClient

from services.auth import PREFIXES, SERVICE, create_app
from services.auth.limiter import Policy, SignInLimiter
from services.auth.limiter_store import store_for
from services.auth.passwords import check_password, hash_password
from services.common.cookies import http_date
from services.common.db import Database
from services.common.session_codec import SessionCodec
from services.common.settings import settings_from_env
from tests.vectors import load_vectors

NOW = 1795793923.0
SECRET = "dev-secret"
CODEC = SessionCodec([SECRET.encode()])
PASSWORD = "correct horse"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def go_hash(password: str) -> str:
    """A hash as the Go side writes it: $2a$ (generated here as $2b$, prefix swapped)."""
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert h.startswith("$2b$")
    return "$2a$" + h[4:]


@pytest.fixture
def env(db_url):
    db = Database.from_url(db_url)  # SQLite and PostgreSQL; the limiter keeps its counters beside it
    clock = Clock()
    settings = {"value": settings_from_env({"JUNJO_SESSION_SECRET": SECRET})}
    limiter = SignInLimiter(store_for(db), clock=clock, pair_policy=Policy(3, 30, 900, 3600),
                            account_policy=Policy(6, 2, 60, 3600), client_policy=Policy(5, 30, 900, 3600))
    app = create_app(db=db, codec=CODEC, settings=lambda: settings["value"], limiter=limiter,
                     clock=lambda: NOW, bcrypt_cost=4)

    class Env:
        pass

    e = Env()
    e.db, e.clock, e.limiter, e.app, e.settings = db, clock, limiter, app, settings
    e.client = lambda ip="198.51.100.7": TestClient(app, client=(ip, 5000))
    yield e
    db.dispose()


def req(env, method, path, *, cookie=None, json=None, ip="198.51.100.7", headers=None, content=None):
    h = dict(headers or {})
    if cookie:
        h["Cookie"] = cookie
    client = env.client(ip)
    return client.request(method, path, headers=h, json=json, content=content)


def signed_in(email="ada@example.com"):
    return f"session={CODEC.encode(email, now=NOW)}; csrf=tok"


def add_user(env, email="ada@example.com", password=PASSWORD):
    return env.db.create_user(email, go_hash(password))


# --- sign-in ---------------------------------------------------------------

def test_sign_in_sets_gorilla_cookie(env):
    add_user(env)
    r = req(env, "POST", "/sign-in", json={"email": "ada@example.com", "password": PASSWORD})
    assert r.status_code == 200
    assert r.content == b'{"message":"signed in"}\n'
    assert r.headers["content-type"] == "application/json"
    [cookie] = r.headers.get_list("set-cookie")
    value = CODEC.encode("ada@example.com", now=NOW)
    assert cookie == (f"session={value}; Path=/; Expires={http_date(NOW + 2592000)}; "
                      "Max-Age=2592000; HttpOnly; Secure; SameSite=Strict")
    assert "vary" not in r.headers  # /sign-in skips the CSRF middleware


def test_sign_in_matches_the_vector_set_cookie(env):

    vector = load_vectors()["mint"][0]
    add_user(env, vector["email"])
    r = req(env, "POST", "/sign-in", json={"email": vector["email"], "password": PASSWORD})
    assert r.headers["set-cookie"] == vector["set_cookie"]


def test_production_adds_domain(env):
    env.settings["value"] = settings_from_env({
        "JUNJO_SESSION_SECRET": SECRET, "JUNJO_ENV": "production", "JUNJO_PROD_AUTH_DOMAIN": "junjo.example.com"})
    add_user(env)
    r = req(env, "POST", "/sign-in", json={"email": "ada@example.com", "password": PASSWORD})
    # Go's net/http drops the leading dot of ".junjo.example.com" on the wire.
    assert "; Path=/; Domain=junjo.example.com; Expires=" in r.headers["set-cookie"]


@pytest.mark.parametrize("body,fragment", [
    ({"password": "x"}, "'SigninRequest.Email' Error:Field validation for 'Email' failed on the 'required' tag"),
    ({"email": "nope", "password": "x"}, "failed on the 'email' tag"),
    ({"email": "a@b.co"}, "'Password' failed on the 'required' tag"),
    ({"email": 5, "password": "x"}, "Unmarshal type error"),
])
def test_sign_in_bad_body_is_400_message(env, body, fragment):
    r = req(env, "POST", "/sign-in", json=body)
    assert r.status_code == 400 and fragment in r.json()["message"]


def test_sign_in_malformed_json_and_media_type(env):
    r = req(env, "POST", "/sign-in", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith("code=400, message=Syntax error")
    r = req(env, "POST", "/sign-in", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json() == {"message": "code=415, message=Unsupported Media Type"}


def test_sign_in_keys_are_case_insensitive_like_go(env):
    add_user(env)
    r = req(env, "POST", "/sign-in", json={"EMAIL": "ada@example.com", "Password": PASSWORD})
    assert r.status_code == 200


def test_wrong_password_and_unknown_user_are_401(env):
    add_user(env)
    for body in ({"email": "ada@example.com", "password": "wrong"},
                 {"email": "ghost@example.com", "password": PASSWORD}):
        r = req(env, "POST", "/sign-in", json=body)
        assert r.status_code == 401 and r.content == b'{"message":"invalid credentials"}\n'


def test_undecodable_existing_session_is_500_but_expired_signout_map_is_fine(env):
    add_user(env)
    body = {"email": "ada@example.com", "password": PASSWORD}
    r = req(env, "POST", "/sign-in", json=body, cookie="session=garbage")
    assert r.status_code == 500 and r.content == b'{"message":"failed to get session"}\n'
    empty = CODEC.encode_values({}, now=NOW)
    assert req(env, "POST", "/sign-in", json=body, cookie=f"session={empty}").status_code == 200


def test_session_minted_by_python_is_accepted_by_protected_routes(env):
    add_user(env)
    r = req(env, "POST", "/sign-in", json={"email": "ada@example.com", "password": PASSWORD})
    value = r.headers["set-cookie"].split(";")[0]
    r = req(env, "GET", "/auth-test", cookie=value)
    assert r.status_code == 200 and r.content == b'{"userEmail":"ada@example.com"}\n'


def test_python_hashes_are_2a_and_go_hashes_verify():
    h = hash_password("pw", cost=4)
    assert h.startswith("$2a$04$") and check_password(h, "pw")
    assert check_password(go_hash("pw"), "pw") and not check_password(go_hash("pw"), "px")
    assert not check_password(go_hash("pw"), "p" * 100)  # > 72 bytes, as Go refuses
    assert hash_password.__defaults__ == (10,)


# --- limiter ------------------------------------------------------------------

def fail(env, email="ada@example.com", ip="198.51.100.7"):
    return req(env, "POST", "/sign-in", json={"email": email, "password": "wrong"}, ip=ip)


def sign_in(env, ip, email="ada@example.com", password=PASSWORD):
    return req(env, "POST", "/sign-in", json={"email": email, "password": password}, ip=ip)


def test_a_clients_repeated_failures_are_429_with_retry_after(env):
    add_user(env)
    for _ in range(3):
        assert fail(env).status_code == 401
    r = fail(env)
    assert r.status_code == 429
    assert r.json() == {"message": "Too many failed sign-in attempts; try again in 30 seconds"}
    assert r.headers["retry-after"] == "30"
    # ...only that client: the owner, from an address never seen before, signs in.
    assert sign_in(env, "192.0.2.1").status_code == 200
    env.clock.t += 31
    assert fail(env).status_code == 401           # one more guess, then the block doubles
    assert fail(env).headers["retry-after"] == "60"


def test_the_account_ceiling_slows_attempts_but_never_locks_the_owner_out(env):
    add_user(env)
    for n in range(6):  # a guesser spread over six addresses, one guess each
        assert fail(env, ip=f"203.0.113.{n}").status_code == 401
    r = sign_in(env, "198.51.100.99")  # the owner, from a new address: slowed...
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    env.clock.t += 2
    assert sign_in(env, "198.51.100.99").status_code == 200  # ...for seconds, not locked
    for n in range(30):  # however long the guessing goes on, the wait stays under a minute
        env.clock.t += 61
        fail(env, ip=f"203.0.113.{100 + n}")
    r = sign_in(env, "192.0.2.77")
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60


def test_an_address_the_owner_signed_in_from_skips_the_account_ceiling(env):
    add_user(env)
    assert sign_in(env, "10.0.0.1").status_code == 200
    for n in range(10):
        fail(env, ip=f"203.0.113.{n}")
    assert fail(env, ip="203.0.113.50").status_code == 429  # the account is being guessed
    assert sign_in(env, "10.0.0.1").status_code == 200  # its owner's usual address is not slowed


def test_spraying_one_guess_per_account_is_slowed(env):
    add_user(env, "bob@example.com")
    assert sign_in(env, "198.51.100.7", "bob@example.com").status_code == 200  # bob, from this office
    for n in range(5):  # five fresh accounts, one guess each, from one address
        assert fail(env, email=f"victim{n}@example.com").status_code == 401
    r = fail(env, email="victim9@example.com")  # a sixth fresh account: the client's budget is spent
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    # bob, behind the same address, signed in from it before: not slowed.
    assert sign_in(env, "198.51.100.7", "bob@example.com").status_code == 200


def test_success_resets_the_owners_counters(env):
    add_user(env)
    fail(env)
    fail(env)
    assert sign_in(env, "198.51.100.7").status_code == 200
    for _ in range(3):
        assert fail(env).status_code == 401  # a fresh pair budget (3)
    assert fail(env).status_code == 429


def test_quiet_counters_are_forgotten(env):
    add_user(env)
    for _ in range(3):
        fail(env)
    env.clock.t += 3601  # an hour without an attempt: the block is long over, counting restarts
    for _ in range(3):
        assert fail(env).status_code == 401
    assert fail(env).headers["retry-after"] == "30"  # the first block again, not a doubled one


# --- sign-out, auth-test, csrf ----------------------------------------------------

def test_sign_out_sends_an_empty_expired_session(env):
    # Python always sends the empty session map the vector shows (minted by the
    # gorilla code without a session); Go re-encodes the signed-in session
    # instead (docs/auth.md, "Cookies"). Same attributes either way.
    expected = load_vectors()["signout_set_cookie"]
    r = req(env, "POST", "/sign-out", cookie=signed_in())
    assert r.status_code == 200 and r.content == b'{"message":"signed out"}\n'
    cookies = r.headers.get_list("set-cookie")
    assert cookies[0].startswith("csrf=tok; Expires=")
    assert cookies[1] == expected


def test_sign_out_needs_csrf_then_session(env):
    assert req(env, "POST", "/sign-out").status_code == 400
    assert req(env, "POST", "/sign-out", cookie="csrf=x").status_code == 401


def test_auth_test_requires_session(env):
    r = req(env, "GET", "/auth-test")
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized: No valid session"}
    assert r.headers["set-cookie"].startswith("csrf=")


def test_csrf_route_returns_the_cookie_token(env):
    r = req(env, "GET", "/csrf")
    token = r.json()["csrfToken"]
    assert r.headers["set-cookie"].startswith(f"csrf={token}; Expires=")
    assert r.headers.get_list("vary") == ["Cookie"]
    r = req(env, "GET", "/csrf", cookie="csrf=existing")
    assert r.content == b'{"csrfToken":"existing"}\n'


# --- users -------------------------------------------------------------------------

def test_db_has_users_and_create_first_user(env):
    assert req(env, "GET", "/users/db-has-users").content == b'{"usersExist":false}\n'
    body = {"email": "first@example.com", "password": "pw"}
    assert req(env, "POST", "/users/create-first-user", json=body).status_code == 400  # no csrf cookie
    r = req(env, "POST", "/users/create-first-user", json=body, cookie="csrf=x")
    assert r.status_code == 200 and r.content == b'{"message":"First user created successfully"}\n'
    stored = env.db.get_user_by_email("first@example.com").password_hash
    assert stored.startswith("$2a$04$") and check_password(stored, "pw")
    r = req(env, "POST", "/users/create-first-user", json=body, cookie="csrf=x")
    assert r.status_code == 400
    assert r.content == b'{"error":"Users already exist, cannot create first user."}\n'
    assert req(env, "GET", "/users/db-has-users").json() == {"usersExist": True}


def test_create_and_list_users(env):
    add_user(env)
    cookie = signed_in()
    r = req(env, "POST", "/users", json={"email": "b@example.com", "password": "pw"}, cookie=cookie)
    assert r.status_code == 200 and r.content == b'{"message":"User created successfully"}\n'
    r = req(env, "POST", "/users", json={"email": "b@example.com", "password": "pw"}, cookie=cookie)
    assert r.status_code == 409 and r.content == b'{"error":"A user with this email already exists"}\n'
    with env.db.engine.begin() as conn:
        stamp = "'2025-01-0' || id || ' 10:00:00'"
        if conn.dialect.name == "postgresql":
            stamp = f"CAST({stamp} || '+00' AS TIMESTAMPTZ)"
        conn.exec_driver_sql(f"UPDATE users SET created_at = {stamp}")
    r = req(env, "GET", "/users", cookie=cookie)
    assert r.status_code == 200
    assert r.content == (b'[{"ID":2,"Email":"b@example.com","CreatedAt":"2025-01-02T10:00:00Z"},'
                         b'{"ID":1,"Email":"ada@example.com","CreatedAt":"2025-01-01T10:00:00Z"}]\n')
    assert req(env, "GET", "/users").status_code == 401


def test_delete_user(env):
    add_user(env)
    cookie = signed_in()
    for raw in ("1", "999", "+5", "-3"):
        r = req(env, "DELETE", f"/users/{raw}", cookie=cookie)
        assert r.status_code == 200 and r.content == b'{"message":"User deleted successfully"}\n'
    assert env.db.count_users() == 0
    # As Echo (checked on the Go stand-in): a trailing param takes the rest of
    # the path, and is the raw text when the client's escaping isn't Go's.
    for raw in ("abc", "1.5", "99999999999999999999", "7/x", "%37"):
        r = req(env, "DELETE", f"/users/{raw}", cookie=cookie)
        assert r.status_code == 400 and r.content == b'{"message":"Invalid user ID format"}\n'
    assert req(env, "DELETE", "/users/", cookie=cookie).status_code == 404


def test_echo_style_404_and_405(env):
    cookie = signed_in()
    r = req(env, "GET", "/users/1/extra", cookie=cookie)  # /users/:id takes "1/extra"; GET isn't on it
    assert r.status_code == 405 and r.content == b'{"message":"Method Not Allowed"}\n'
    r = req(env, "GET", "/users/", cookie=cookie)
    assert r.status_code == 404 and r.content == b'{"message":"Not Found"}\n'
    r = req(env, "PUT", "/users", cookie=cookie)
    assert r.status_code == 405 and r.content == b'{"message":"Method Not Allowed"}\n'
    assert r.headers["allow"] == "OPTIONS, GET, POST"


def test_service_registration():
    assert SERVICE.name == "auth"
    assert set(PREFIXES) == {"/sign-in", "/sign-out", "/auth-test", "/csrf", "/users"}


def test_concurrent_wrong_guesses_cannot_outrun_the_limiter(env):
    import asyncio

    import httpx as _httpx

    add_user(env)

    async def burst() -> list[int]:
        transport = _httpx.ASGITransport(app=env.app, client=("198.51.100.4", 1234))
        async with _httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*(c.post("/sign-in", json={"email": "ada@example.com", "password": f"guess{i}"})
                                        for i in range(40)))
            return [r.status_code for r in rs]

    codes = asyncio.run(burst())
    # Each attempt is counted before its (slow) bcrypt check, so a burst gets no
    # more password checks than the threshold (3 in this fixture) allows.
    assert codes.count(401) <= 3 and codes.count(429) >= 37
