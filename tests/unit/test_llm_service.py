"""services/llm: POST /llm/generate in-process, the provider mocked with respx."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from services.common.session_codec import SessionCodec
from services.common.settings import SettingsError, settings_from_env
from services.llm import PREFIXES, SERVICE, LlmSettings, create_app, llm_settings_from_env
from services.registry import discover

NOW = 1795793923.0
SECRET = "dev-secret"
CODEC = SessionCodec([SECRET.encode()])
SIGNED_IN = f"session={CODEC.encode('ada@example.com', now=NOW)}; csrf=tok"
API_KEY = "AIzaTEST-secret-key-0123456789"
BASE = "https://gemini.test"
URL = f"{BASE}/v1beta/models/gemini-2.5-flash:generateContent"
PROVIDER_OK = b'{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"}}],"modelVersion":"x"}'
BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}


def make(api_key=API_KEY, base=BASE, timeout=5.0):
    settings = settings_from_env({"JUNJO_SESSION_SECRET": SECRET})
    llm = LlmSettings(api_key=api_key, base_url=base, timeout=timeout)
    return create_app(settings=lambda: settings, codec=CODEC, clock=lambda: NOW, llm_settings=lambda: llm)


def post(app, body=None, *, content=None, ctype="application/json", cookie=SIGNED_IN, path="/llm/generate"):
    headers = {"Cookie": cookie} if cookie else {}
    if content is None and body is not None:
        content = json.dumps(body).encode()
    if ctype is not None:
        headers["Content-Type"] = ctype
    return TestClient(app).post(path, content=content, headers=headers)


@pytest.fixture
def mock():
    with respx.mock(assert_all_called=False) as router:
        yield router


# --- the happy path ------------------------------------------------------------------

def test_forwards_to_gemini_and_returns_the_body_verbatim(mock):
    route = mock.post(URL).mock(return_value=httpx.Response(200, content=PROVIDER_OK,
                                                            headers={"content-type": "application/json; charset=UTF-8"}))
    r = post(make(), BODY)
    assert r.status_code == 200
    assert r.content == PROVIDER_OK  # verbatim: no re-encoding, no trailing newline
    assert r.headers["content-type"] == "application/json"
    sent = route.calls.last.request
    assert sent.headers["x-goog-api-key"] == API_KEY
    assert sent.headers["content-type"] == "application/json"
    assert API_KEY not in str(sent.url)  # never in the URL
    assert sent.content == (b'{"model":"gemini-2.5-flash","contents":[{"role":"user","parts":[{"text":"Say hi"}]}]}')
    # the legacy CSRF middleware ran
    assert r.headers["set-cookie"].startswith("csrf=tok;") and r.headers["vary"] == "Cookie"


def test_model_goes_into_the_path_and_base_url_slashes_are_trimmed(mock):
    route = mock.post("http://127.0.0.1:9/v1beta/models/gemini-2.5-pro:generateContent").respond(200, content=b"{}")
    r = post(make(base="http://127.0.0.1:9//"), {"model": "gemini-2.5-pro", **BODY})
    assert r.status_code == 200 and route.called
    assert json.loads(route.calls.last.request.content)["model"] == "gemini-2.5-pro"


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503, 302])
def test_provider_errors_come_back_as_200_verbatim(mock, status):
    body = b'{"error":{"code":%d,"message":"nope","status":"X"}}' % status
    mock.post(URL).respond(status, content=body, headers={"location": "https://elsewhere.test/"})
    r = post(make(), BODY)
    assert (r.status_code, r.content) == (200, body)
    assert r.headers["content-type"] == "application/json"


def test_non_json_provider_body_is_passed_through(mock):
    mock.post(URL).respond(502, content=b"<html>bad gateway</html>", headers={"content-type": "text/html"})
    r = post(make(), BODY)
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"<html>bad gateway</html>", "application/json")


# --- the body the provider receives (Go's re-marshal of the legacy struct) --------------

@pytest.mark.parametrize("body,sent", [
    (b"", b'{"model":"gemini-2.5-flash","contents":null}'),
    (b"{}", b'{"model":"gemini-2.5-flash","contents":null}'),
    (b"null", b'{"model":"gemini-2.5-flash","contents":null}'),
    (b'{"contents":[]}', b'{"model":"gemini-2.5-flash","contents":[]}'),
    (b'{"contents":[{}]}', b'{"model":"gemini-2.5-flash","contents":[{"parts":null}]}'),
    (b'{"contents":[{"parts":[{}],"extra":1}],"tools":[{"x":1}]}',
     b'{"model":"gemini-2.5-flash","contents":[{"parts":[{"text":""}]}]}'),
    (b'{"Model":"m","CONTENTS":[{"Role":"user","Parts":[{"Text":"<&>"}]}]}',
     b'{"model":"m","contents":[{"role":"user","parts":[{"text":"\\u003c\\u0026\\u003e"}]}]}'),
    (b'{"generationConfig":{"temperature":0,"topP":0.0,"topK":0,"stopSequences":[],"responseMimeType":""}}',
     b'{"model":"gemini-2.5-flash","contents":null,"generationConfig":{}}'),
    (b'{"generationConfig":{"temperature":1,"topP":0.95,"topK":40,"stopSequences":["x"],'
     b'"responseMimeType":"application/json","candidateCount":2}}',
     b'{"model":"gemini-2.5-flash","contents":null,"generationConfig":{"stopSequences":["x"],'
     b'"responseMimeType":"application/json","temperature":1,"topP":0.95,"topK":40}}'),
    (b'{"generationConfig":{"temperature":1e-7,"topP":1E2}}',
     b'{"model":"gemini-2.5-flash","contents":null,"generationConfig":{"temperature":1e-7,"topP":100}}'),
    (b'{"generationConfig":null,"system_instruction":{"parts":[{"text":"be brief"}]}}',
     b'{"model":"gemini-2.5-flash","contents":null,"system_instruction":{"parts":[{"text":"be brief"}]}}'),
    (b'{"systemInstruction":{"parts":[{"text":"dropped: not the legacy json name"}]}}',
     b'{"model":"gemini-2.5-flash","contents":null}'),
    (b'{"system_instruction":{}}', b'{"model":"gemini-2.5-flash","contents":null,"system_instruction":{"parts":null}}'),
    (b'{"model":"gemini-2.5-flash","contents":[{"parts":[{"text":"a"}]}]} trailing',
     b'{"model":"gemini-2.5-flash","contents":[{"parts":[{"text":"a"}]}]}'),
])
def test_provider_receives_the_legacy_struct_re_marshalled(mock, body, sent):
    route = mock.post(url__regex=r".*:generateContent").respond(200, content=b"{}")
    r = post(make(), content=body)
    assert r.status_code == 200, r.text
    assert route.calls.last.request.content == sent


# Echo's err.Error() texts (checked against the stand-in, which runs Echo's binder).
UNEXPECTED_EOF = "code=400, message=unexpected EOF, internal=unexpected EOF"
UNSUPPORTED = "code=415, message=Unsupported Media Type"
MODEL_IS_A_NUMBER = ("code=400, message=Unmarshal type error: expected=string, got=number, field=model, "
                     "offset=10, internal=json: cannot unmarshal number into Go struct field "
                     "GeminiRequest.model of type string")


@pytest.mark.parametrize("body,ctype,text", [
    (b"{nope", "application/json", None),
    (b'{"contents":', "application/json", UNEXPECTED_EOF),
    (b"   ", "application/json", "code=400, message=EOF, internal=EOF"),
    (b"[]", "application/json", None),
    (b'{"model":5}', "application/json", MODEL_IS_A_NUMBER),
    (b'{"contents":{}}', "application/json", None),
    (b'{"contents":[{"parts":[{"text":1}]}]}', "application/json", None),
    (b'{"generationConfig":{"temperature":"hot"}}', "application/json", None),
    (b'{"generationConfig":{"topK":1.5}}', "application/json", None),
    (b'{"generationConfig":{"topK":99999999999999999999}}', "application/json", None),
    (b'{"generationConfig":{"temperature":1e400}}', "application/json", None),
    (b'{"generationConfig":{"temperature":NaN}}', "application/json", None),
    (b'{"contents":[]}', "text/plain", UNSUPPORTED),
    (b'{"contents":[]}', None, UNSUPPORTED),
])
@pytest.mark.parametrize("api_key", ["k", ""], ids=["with-key", "without-key"])
def test_unbindable_body_is_400_with_echos_error_text_before_the_key_check(mock, body, ctype, text, api_key):
    route = mock.post(url__regex=r".*").respond(200, content=b"{}")
    r = post(make(api_key=api_key), content=body, ctype=ctype)
    assert r.status_code == 400 and list(r.json()) == ["error"]
    if text is not None:
        assert r.content == json.dumps({"error": text}, separators=(",", ":")).encode() + b"\n"
    assert r.json()["error"].startswith(("code=400, message=", "code=415, message="))
    assert not route.called


# --- configuration and failures -----------------------------------------------------------

def test_missing_api_key_is_500_once_the_body_binds(mock):
    route = mock.post(url__regex=r".*").respond(200, content=b"{}")
    for content in (b"", json.dumps(BODY).encode()):
        r = post(make(api_key=""), content=content)
        assert r.status_code == 500
        assert r.content == b'{"error":"GEMINI_API_KEY environment variable is not set"}\n'
    assert not route.called


def test_provider_timeout_is_504(mock):
    mock.post(URL).mock(side_effect=httpx.ReadTimeout("timed out"))
    r = post(make(), BODY)
    assert r.status_code == 504
    assert r.json()["error"].startswith(f'Post "{URL}": the LLM provider did not answer within 5 seconds')


def test_slow_provider_is_cut_at_the_total_timeout(mock):
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, content=b"{}")

    mock.post(URL).mock(side_effect=slow)
    started = time.monotonic()
    r = post(make(timeout=0.3), BODY)
    assert r.status_code == 504 and "0.3 seconds" in r.json()["error"]
    assert time.monotonic() - started < 3


def test_transport_error_is_500_go_style(mock):
    mock.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    r = post(make(), BODY)
    assert r.status_code == 500
    assert r.json() == {"error": f'Post "{URL}": connection refused'}


def test_api_key_never_leaks_into_answers_or_logs(mock, caplog):
    # A provider error that echoes the URL it was called with, and one that
    # echoes request details: the key is only ever in a header.
    def echo(request):
        return httpx.Response(400, json={"error": {"message": f"bad request to {request.url}",
                                                   "query": request.url.query.decode()}})

    mock.post(URL).mock(side_effect=echo)
    with caplog.at_level(logging.DEBUG):
        r1 = post(make(), BODY)
        mock.post(URL).mock(side_effect=httpx.ConnectError(f"failed to reach {URL}"))
        r2 = post(make(), BODY)
        r3 = post(make(), {"model": "bad\x00model", **BODY})
        mock.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
        r4 = post(make(), BODY)
    assert r1.status_code == 200 and URL in r1.text
    assert [r.status_code for r in (r2, r4)] == [500, 504]
    for r in (r1, r2, r3, r4):
        assert API_KEY not in r.text
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(LlmSettings(api_key=API_KEY, base_url=BASE, timeout=1.0))


def test_redirects_are_not_followed(mock):
    mock.post(URL).respond(307, content=b'{"moved":true}', headers={"location": "https://evil.test/steal"})
    other = mock.post("https://evil.test/steal").respond(200, content=b"{}")
    r = post(make(), BODY)
    assert (r.status_code, r.content) == (200, b'{"moved":true}')
    assert not other.called


def test_one_shared_client_per_service(mock):
    mock.post(URL).respond(200, content=b"{}")
    app = make()
    post(app, BODY)
    first = app.service.client
    post(app, BODY)
    assert app.service.client is first


# --- the legacy middleware ------------------------------------------------------------------

def test_no_session_is_401_and_missing_csrf_is_400(mock):
    route = mock.post(url__regex=r".*").respond(200, content=b"{}")
    r = post(make(), BODY, cookie="csrf=tok")
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized: No valid session"}
    r = post(make(), BODY, cookie=SIGNED_IN.split(";")[0])
    assert r.status_code == 400 and r.json() == {"message": "missing value in cookies"}
    assert not route.called


@pytest.mark.parametrize("method,path,status", [("GET", "/llm/generate", 405), ("POST", "/llm/other", 404),
                                                ("POST", "/llm", 404)])
def test_other_paths_and_methods_are_echo_errors(method, path, status):
    r = TestClient(make()).request(method, path, headers={"Cookie": SIGNED_IN})
    assert r.status_code == status
    if status == 405:
        assert r.headers["allow"] == "OPTIONS, POST"


# --- settings ---------------------------------------------------------------------------------

def test_settings_from_env():
    s = llm_settings_from_env({})
    assert (s.api_key, s.base_url, s.timeout) == ("", "https://generativelanguage.googleapis.com", 60.0)
    s = llm_settings_from_env({"GEMINI_API_KEY": "k", "GEMINI_BASE_URL": "http://x", "LLM_TIMEOUT_SECONDS": "2.5"})
    assert (s.api_key, s.base_url, s.timeout) == ("k", "http://x", 2.5)
    for bad in ("0", "-1", "soon", "inf"):  # an error naming the variable, not a silent default
        with pytest.raises(SettingsError, match="^LLM_TIMEOUT_SECONDS: "):
            llm_settings_from_env({"LLM_TIMEOUT_SECONDS": bad})
    assert llm_settings_from_env({"GEMINI_BASE_URL": ""}).base_url == "https://generativelanguage.googleapis.com"


def test_service_is_registered():
    assert SERVICE.name == "llm" and SERVICE.prefixes == PREFIXES == ("/llm",)
    assert discover(["services"]).owner_of("/llm/generate").name == "llm"


def test_an_async_httpx_request_looks_up_no_module():
    """The LLM client's requests go through httpcore, which (1.0.9) tries
    `import sniffio` on every lock and event it makes; without sniffio
    installed (anyio >= 4.11 dropped it) each try searched sys.path again,
    several times a request. pyproject installs it: no lookup happens."""
    looked_up: list[str] = []

    class Recorder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            looked_up.append(name)
            return None  # let the real finders answer

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()  # the client closed its connection

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with server, httpx.AsyncClient() as client:
            assert (await client.get(url)).text == "ok"  # the first may import lazily
            sys.meta_path.insert(0, Recorder)
            try:
                for _ in range(3):
                    assert (await client.get(url)).text == "ok"
            finally:
                sys.meta_path.remove(Recorder)

    asyncio.run(scenario())
    assert looked_up == []
