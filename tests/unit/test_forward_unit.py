"""Unit tests of the legacy forwarder's edges, with respx standing in for the network."""
import asyncio
import json

import httpx
import pytest
import respx

from gateway.context import RequestContext
from gateway.upstream.connection import RequestBodyStalled
from gateway.upstream.forwarder import LegacyForwarder
from gateway.upstream.headers import TrustedProxies
from gateway.upstream.http11 import UpstreamRefused
from tests.support.asgi_helpers import call, make_scope

BASE = "http://legacy.internal:1323"


def forwarder(router: respx.Router, trusted=()) -> LegacyForwarder:
    return LegacyForwarder(BASE, httpx.MockTransport(router.async_handler), trusted_proxies=TrustedProxies(trusted))


def run(coro):
    return asyncio.run(coro)


def test_path_query_and_headers_pass_byte_for_byte_with_nothing_injected():
    router = respx.Router()
    route = router.route().respond(200, text="ok")
    scope = make_scope("GET", b"/otel/service/a%2Fb/%7e'x", b"a=1&a=2&b=%20&c", headers=[
        (b"host", b"api.example.com"), (b"cookie", b"session=abc"), (b"x-custom", b"1"), (b"x-custom", b"2"),
    ])
    res = run(call(forwarder(router), scope))
    assert res.status == 200 and res.body == b"ok"
    sent: httpx.Request = route.calls.last.request
    assert sent.url.raw_path == b"/otel/service/a%2Fb/%7e'x?a=1&a=2&b=%20&c"
    assert sent.headers.raw == [
        (b"host", b"api.example.com"), (b"cookie", b"session=abc"), (b"x-custom", b"1"), (b"x-custom", b"2"),
        (b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"api.example.com"),
    ]
    for injected in (b"user-agent", b"accept", b"accept-encoding", b"content-length"):
        assert injected not in [n for n, _ in sent.headers.raw]


def test_hop_by_hop_headers_are_removed_both_ways():
    router = respx.Router()
    route = router.route().mock(return_value=httpx.Response(200, headers=[
        (b"Connection", b"X-Secret, close"), (b"X-Secret", b"1"), (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Authenticate", b"Basic"), (b"Trailer", b"X"), (b"Upgrade", b"h2c"), (b"X-Keep", b"yes"),
    ], content=b"x"))
    scope = make_scope("GET", b"/x", headers=[
        (b"host", b"h"), (b"connection", b"keep-alive, x-drop-me"), (b"x-drop-me", b"1"), (b"keep-alive", b"300"),
        (b"te", b"trailers"), (b"proxy-authorization", b"Basic eA=="), (b"upgrade", b"websocket"), (b"x-keep", b"1"),
    ])
    res = run(call(forwarder(router), scope))
    sent = [n for n, _ in route.calls.last.request.headers.raw]
    assert sent == [b"host", b"x-keep", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"]
    assert [n for n, _ in res.headers if n.lower() != b"content-length"] == [b"X-Keep"]


def test_repeated_set_cookie_headers_arrive_separately_and_identical():
    cookies = [b"a=1; Path=/", b"b=2; Path=/; HttpOnly", b'c="x,y"; Expires=Wed, 21 Oct 2026 07:28:00 GMT']
    router = respx.Router()
    router.route().mock(return_value=httpx.Response(200, headers=[(b"Set-Cookie", c) for c in cookies], content=b""))
    res = run(call(forwarder(router), make_scope()))
    assert res.header(b"set-cookie") == cookies


def test_forwarded_headers_trusted_only_from_configured_proxies():
    def sent_for(client_ip, trusted):
        router = respx.Router()
        route = router.route().respond(204)
        scope = make_scope(headers=[(b"host", b"h"), (b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-proto", b"https"),
                                    (b"x-forwarded-host", b"public.example")], client=(client_ip, 1))
        run(call(forwarder(router, trusted), scope))
        return [(n, v) for n, v in route.calls.last.request.headers.raw if n.startswith(b"x-forwarded")]

    # An arbitrary client cannot spoof its address or scheme.
    assert sent_for("198.51.100.7", ()) == [
        (b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"http"), (b"x-forwarded-host", b"h")]
    # A trusted proxy's chain is kept, and its own address appended rightmost.
    assert sent_for("10.0.0.5", ("10.0.0.0/8",)) == [
        (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"public.example"), (b"x-forwarded-for", b"1.1.1.1, 10.0.0.5")]


def test_request_body_streams_with_content_length_kept():
    router = respx.Router()
    seen = {}

    async def handler(request: httpx.Request):
        seen["body"] = await request.aread()
        seen["headers"] = request.headers.raw
        return httpx.Response(201)

    router.route().mock(side_effect=handler)
    scope = make_scope("POST", b"/api_keys", headers=[(b"host", b"h"), (b"content-length", b"11"), (b"content-type", b"application/json")])
    res = run(call(forwarder(router), scope, [b'{"name"', b':"x"}']))
    assert res.status == 201
    assert seen["body"] == b'{"name":"x"}'
    assert (b"content-length", b"11") in seen["headers"]
    assert b"transfer-encoding" not in [n for n, _ in seen["headers"]]


def test_chunked_request_is_rechunked_upstream():
    router = respx.Router()
    route = router.route().respond(200)
    scope = make_scope("POST", b"/x", headers=[(b"host", b"h"), (b"transfer-encoding", b"chunked")])
    run(call(forwarder(router), scope, [b"ab", b"cd"]))
    assert (b"transfer-encoding", b"chunked") in route.calls.last.request.headers.raw


def test_response_body_is_not_decoded():
    import gzip
    raw = gzip.compress(b"hello " * 100)
    router = respx.Router()
    router.route().mock(return_value=httpx.Response(200, headers=[(b"Content-Encoding", b"gzip")], content=raw))
    res = run(call(forwarder(router), make_scope()))
    assert res.body == raw and res.header(b"content-encoding") == [b"gzip"]


def test_redirects_are_not_followed():
    router = respx.Router()
    router.route().respond(302, headers={"Location": "/elsewhere"})
    res = run(call(forwarder(router), make_scope()))
    assert res.status == 302 and res.header(b"location") == [b"/elsewhere"]


def test_head_gets_no_body():
    router = respx.Router()
    router.route().respond(200, headers={"Content-Length": "5"}, content=b"hello")
    res = run(call(forwarder(router), make_scope("HEAD")))
    assert res.status == 200 and res.body == b"" and res.completed


FAILURES = [  # (exception, status, what any client is told, what only the log says)
    (httpx.ConnectError("connection refused"), 502, "Bad gateway: the legacy Go backend is unreachable.",
     ["unreachable", "connection refused", "legacy.url"]),
    (httpx.ConnectTimeout("timed out"), 504,
     "Gateway timeout: the legacy Go backend did not accept a connection in time.", ["connection", "timed out"]),
    (httpx.ReadTimeout("timed out"), 504, "Gateway timeout: the legacy Go backend did not answer in time.",
     ["did not answer GET /slow", "read_timeout"]),
    (httpx.RemoteProtocolError("garbage"), 502, "Bad gateway: the legacy Go backend failed while answering.",
     ["failed while answering GET /slow", "garbage"]),
    (UpstreamRefused("upstream_header_count", "more header fields than the gateway accepts",
                     "upstream sent more than 200 header fields in its response head (limit upstream_header_count)"),
     502, "Bad gateway: the legacy Go backend sent more header fields than the gateway accepts.",
     ["answered GET /slow over a limit", "more than 200 header fields", "[upstream_header_count]"]),
]
REQUEST_ID = b"req-4711"


@pytest.mark.parametrize("exc,status,summary,details", FAILURES)
def test_upstream_failures_tell_the_client_what_failed_and_the_log_where(exc, status, summary, details, caplog):
    import json
    router = respx.Router()
    router.route().mock(side_effect=exc)
    scope = make_scope(raw_path=b"/slow", headers=[(b"host", b"h"), (b"x-request-id", REQUEST_ID)])
    with caplog.at_level("WARNING", logger="gateway.forward"):
        res = run(call(forwarder(router), scope))
    assert res.status == status
    assert res.header(b"content-type") == [b"application/json"]
    message = json.loads(res.body)["message"]
    assert message == f"{summary} Request id req-4711 — the gateway's log has the details."
    assert BASE not in message and "legacy.internal" not in message
    log_line = "\n".join(r.getMessage() for r in caplog.records)
    for word in [BASE, "req-4711", *details]:
        assert word in log_line


@pytest.mark.parametrize("exc,status,summary,details", FAILURES)
def test_debug_errors_put_the_detail_in_the_body(exc, status, summary, details):
    import json
    router = respx.Router()
    router.route().mock(side_effect=exc)
    fwd = LegacyForwarder(BASE, httpx.MockTransport(router.async_handler), debug_errors=True)
    res = run(call(fwd, make_scope(raw_path=b"/slow")))
    message = json.loads(res.body)["message"]
    assert res.status == status and message.startswith(summary) and BASE in message
    for word in details:
        assert word in message


def test_no_cookie_jar_between_users():
    router = respx.Router()
    route = router.route().respond(200, headers={"Set-Cookie": "session=alice; Path=/"})
    fwd = forwarder(router)
    run(call(fwd, make_scope(headers=[(b"host", b"h"), (b"cookie", b"session=alice")])))
    run(call(fwd, make_scope(headers=[(b"host", b"h")])))
    assert b"cookie" not in [n for n, _ in route.calls.last.request.headers.raw]


def test_missing_host_gets_the_upstream_host():
    router = respx.Router()
    route = router.route().respond(200)
    run(call(forwarder(router), make_scope(headers=[])))
    assert route.calls.last.request.headers.raw[0] == (b"host", b"legacy.internal:1323")


def test_httpx_internals_are_the_ones_httpx_fast_writes():
    """Fails when an httpx outside the tested range is installed (pyproject
    pins it): httpx_fast then builds through the public API, which is correct
    but slower. Re-check the private fields it fills (Headers._list and
    ._encoding, URL._uri_reference) and the attributes Request and Response
    get, then move the pin."""
    from gateway.upstream import httpx_fast

    assert httpx_fast.internals_match() and httpx_fast.FAST, (
        f"httpx {httpx.__version__} changed the private fields gateway/upstream/httpx_fast.py writes")


@pytest.mark.parametrize("fast", [True, False], ids=["private-fields", "public-api"])
def test_fast_httpx_builders_agree_with_the_public_api(fast, monkeypatch):
    from gateway.upstream import httpx_fast
    from gateway.upstream.httpx_fast import header_triples, headers_from_fields, url_with_target

    monkeypatch.setattr(httpx_fast, "FAST", fast)
    pairs = [(b"Host", b"h"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"X-Odd", b"v, w")]
    fast_headers = headers_from_fields([(n, n.lower(), v) for n, v in pairs])
    slow = httpx.Headers(pairs)
    assert fast_headers.raw == slow.raw and fast_headers.multi_items() == slow.multi_items()
    assert fast_headers.get_list("set-cookie") == ["a=1", "b=2"] and fast_headers["x-odd"] == "v, w"
    assert header_triples(slow) == header_triples(fast_headers) == [(n, n.lower(), v) for n, v in pairs]
    base = httpx.URL("http://legacy.internal:1323")
    url = url_with_target(base, b"/a%2Fb/%7e/x", b"q=1&q=2")
    assert url.raw_path == b"/a%2Fb/%7e/x?q=1&q=2"
    assert (url.scheme, url.host, url.port) == ("http", "legacy.internal", 1323)
    assert str(url) == "http://legacy.internal:1323/a%2Fb/%7e/x?q=1&q=2"
    assert url_with_target(base, b"/p", b"").raw_path == b"/p"
    for path in (b"/x|y^z", b"/%ZZ/q", b"/.well-known/x", b"/a;b=c/%2e"):
        assert url_with_target(base, path, b"y=%ZZ|&z").raw_path == path + b"?y=%ZZ|&z"
    # Requests and responses: the attributes httpx's constructors set, equal.
    from gateway.upstream.httpx_fast import new_request, new_response

    stream = httpx.ByteStream(b"")
    request = new_request("GET", url, fast_headers, stream)
    public = httpx.Request("GET", url, headers=slow, stream=stream)
    assert vars(request).keys() == vars(public).keys() and all(
        getattr(request, k) == getattr(public, k) for k in vars(public))
    response = new_response(201, fast_headers, stream, request, {"http_version": b"HTTP/1.1"})
    public_response = httpx.Response(201, headers=slow, stream=stream, request=request,
                                     extensions={"http_version": b"HTTP/1.1"})
    assert vars(response).keys() == vars(public_response).keys() and all(
        getattr(response, k) == getattr(public_response, k) for k in vars(public_response))
    assert response.request is request and response.status_code == 201 and response.http_version == "HTTP/1.1"


@pytest.mark.parametrize("cls", [httpx.Request, httpx.Response])
def test_an_httpx_whose_constructors_set_more_turns_the_fast_path_off(cls, monkeypatch):
    """Should httpx's Request or Response constructor start setting another
    attribute, the objects httpx_fast makes would lack it: the import-time
    check says so, and the public constructors are used."""
    from gateway.upstream import httpx_fast

    init = cls.__init__

    def init_and_more(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.something_new = None

    assert httpx_fast.internals_match()
    monkeypatch.setattr(cls, "__init__", init_and_more)
    assert not httpx_fast.internals_match()


class _Trickle(httpx.AsyncByteStream):
    """A response body that sends one chunk and then nothing, for ever."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self):
        yield b"first"
        await asyncio.sleep(3600)

    async def aclose(self) -> None:
        self.closed = True


def test_total_timeout_before_the_answer_is_a_504_saying_so(caplog):
    async def slow(request):
        await asyncio.sleep(3600)

    router = respx.Router()
    router.route().mock(side_effect=slow)
    fwd = LegacyForwarder(BASE, httpx.MockTransport(router.async_handler), total_timeout=0.05)
    scope = make_scope(raw_path=b"/slow", headers=[(b"host", b"h"), (b"x-request-id", REQUEST_ID)])
    with caplog.at_level("WARNING", logger="gateway.forward"):
        res = run(call(fwd, scope))
    assert res.status == 504 and res.completed
    assert res.body.startswith(b'{"message":"Gateway timeout: the legacy Go backend did not answer in time. '
                               b'Request id req-4711')
    log_line = "\n".join(r.getMessage() for r in caplog.records)
    assert "req-4711" in log_line and "legacy.total_timeout (0.05 s)" in log_line


def test_total_timeout_after_the_answer_started_aborts_the_client_connection(caplog):
    body = _Trickle()
    router = respx.Router()
    router.route().mock(return_value=httpx.Response(200, stream=body))
    fwd = LegacyForwarder(BASE, httpx.MockTransport(router.async_handler), total_timeout=0.05)
    scope = make_scope(raw_path=b"/trickle", headers=[(b"host", b"h"), (b"x-request-id", REQUEST_ID)])
    with caplog.at_level("WARNING", logger="gateway.forward"):
        res = run(call(fwd, scope))
    # The head and the first chunk went out; the answer never ends as if complete.
    assert res.status == 200 and res.body == b"first" and not res.completed
    assert body.closed
    log_line = "\n".join(r.getMessage() for r in caplog.records)
    assert "req-4711" in log_line and "total_timeout" in log_line and "aborting the client connection" in log_line


def test_no_total_timeout_by_default():
    fwd = LegacyForwarder(BASE, httpx.MockTransport(lambda request: httpx.Response(204)))
    assert fwd.total_timeout is None


def test_a_stalled_request_body_is_a_408_that_closes_the_connection(caplog):
    router = respx.Router()
    router.route().mock(side_effect=RequestBodyStalled(30))
    scope = make_scope("POST", b"/upload", headers=[(b"host", b"h"), (b"content-length", b"100"),
                                                     (b"x-request-id", REQUEST_ID)])
    with caplog.at_level("WARNING", logger="gateway.forward"):
        res = run(call(forwarder(router), scope, [b"part"]))
    assert res.status == 408 and res.header(b"connection") == [b"close"]
    assert json.loads(res.body) == {"message": "Request timeout: no request body arrived for 30 s. "
                                               "Request id req-4711."}
    assert any("req-4711" in r.getMessage() and "body_idle_timeout" in r.getMessage() for r in caplog.records)


def test_upstream_settings_come_from_config_with_defaults_for_what_it_lacks():
    from gateway.routing.models import LegacyConfig, LimitsConfig
    from gateway.upstream.forwarders import Forwarders, UpstreamSettings

    plain = UpstreamSettings.from_config(LegacyConfig(url=BASE, pool_size=64))
    assert (plain.pool_size, plain.total_timeout, plain.body_pool_share, plain.body_idle_timeout) == (64, None, 0.5, 30)
    assert (plain.head_size, plain.header_count, plain.interim_responses) == (65536, 200, 10)

    legacy = LegacyConfig(url=BASE, total_timeout=90, body_pool_share=0.25)
    limits = LimitsConfig(upstream_head_size=8192, upstream_header_count=50, body_idle_timeout=5)
    forwarders = Forwarders()
    fwd = forwarders.get(legacy, (), limits)
    transport = fwd.transport
    assert fwd.total_timeout == 90 and transport.body_idle_timeout == 5
    assert (transport.head_limits.head_size, transport.head_limits.header_count) == (8192, 50)
    assert transport.pool.max_body_connections == 128  # a quarter of 512
    # Unchanged settings keep the live pool; so does a caller that knows only legacy: (readiness).
    assert forwarders.get(legacy, (), limits.model_copy()) is fwd
    assert forwarders.get(legacy, ()) is fwd
    # Changed limits build a new one and retire the old pool.
    again = forwarders.get(legacy, (), limits.model_copy(update={"upstream_header_count": 100}))
    assert again is not fwd and transport.pool.retired and forwarders.current() is again


def test_a_client_leaving_mid_exchange_cancels_it():
    cancelled = asyncio.Event()

    async def slow_upstream(request: httpx.Request) -> httpx.Response:
        try:
            await asyncio.Event().wait()  # the backend is still thinking
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def scenario():
        gone = asyncio.Event()
        fwd = LegacyForwarder(BASE, httpx.MockTransport(slow_upstream))
        exchange = asyncio.ensure_future(call(fwd, make_scope(), disconnect_after_body=gone))
        await asyncio.sleep(0.01)
        gone.set()  # the client disconnects
        await asyncio.wait_for(cancelled.wait(), 10)
        return await asyncio.wait_for(exchange, 10)

    result = run(scenario())
    assert result.status == 0 and not result.messages  # nothing sent to a client that left


def test_a_finished_exchange_leaves_no_watcher_behind():
    """The disconnect watch is no Task: when the exchange ends, the pending
    receive() is closed where it waits, and nothing is left running."""
    async def scenario():
        closed: list[str] = []

        async def receive():
            try:
                await asyncio.Event().wait()  # a client that neither sends nor leaves
            finally:
                closed.append("receive closed")
            return {"type": "http.disconnect"}

        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        router = respx.Router()
        router.route().respond(200, content=b"ok")
        before = asyncio.all_tasks()
        await forwarder(router)(make_scope(), receive, send)
        assert asyncio.all_tasks() == before
        return closed, sent

    closed, sent = run(scenario())
    assert closed == ["receive closed"]
    assert sent[0]["status"] == 200 and b"".join(m.get("body", b"") for m in sent[1:]) == b"ok"


class _Cycle:
    """What _EdgeWatch reads of an EdgeCycle."""

    def __init__(self, disconnected: bool) -> None:
        self.loop = None
        self.disconnected = disconnected
        self.on_disconnect = None

    def tell_disconnected(self) -> None:
        callback = self.on_disconnect
        if callback is not None and self.disconnected:
            self.on_disconnect = None
            callback()


@pytest.mark.parametrize("gone_before_the_watch", [True, False])
def test_the_edge_watch_cancels_the_exchange_when_the_client_leaves(gone_before_the_watch):
    from gateway.upstream.forwarder import _EdgeWatch

    cycle = _Cycle(disconnected=gone_before_the_watch)
    watch = _EdgeWatch(cycle)  # type: ignore[arg-type]  # duck-typed EdgeCycle

    async def exchange() -> str:
        watch.start()
        if not gone_before_the_watch:
            cycle.disconnected = True
            asyncio.get_running_loop().call_soon(cycle.tell_disconnected)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "cancelled"
        return "ran to its end"

    assert run(exchange()) == "cancelled"
    assert watch.client_gone and cycle.on_disconnect is None


def test_a_stopped_edge_watch_cancels_nothing():
    from gateway.upstream.forwarder import _EdgeWatch

    cycle = _Cycle(disconnected=False)
    watch = _EdgeWatch(cycle)  # type: ignore[arg-type]

    async def exchange() -> str:
        watch.start()
        watch.stop()
        cycle.disconnected = True
        cycle.tell_disconnected()
        await asyncio.sleep(0.01)
        return "ran to its end"

    assert run(exchange()) == "ran to its end"
    assert not watch.client_gone


class _WholeStream(httpx.AsyncByteStream):
    """A response body that came in with its head, as our transport's does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def take_whole(self) -> bytes:
        return self.data

    def close_now(self) -> None: ...

    async def __aiter__(self):  # type: ignore[override]
        yield self.data


class _WholeTransport(httpx.AsyncBaseTransport):
    def __init__(self, streamed: bool) -> None:
        self.streamed = streamed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = b"hello"
        stream = httpx.ByteStream(body) if self.streamed else _WholeStream(body)
        return httpx.Response(200, headers=[(b"content-length", b"5")], stream=stream)  # type: ignore[arg-type]


def sent_by_forward(fwd: LegacyForwarder, ctx: RequestContext, scope: dict, **kwargs) -> list[dict]:
    """The ASGI messages ``fwd.forward`` sends for ``scope``, its client never
    leaving (receive() waits for ever)."""
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    run(fwd.forward(ctx, scope, receive, send, **kwargs))
    return sent


@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_all_in_with_its_head_is_promised_to_the_edge_as_one_write(streamed):
    from gateway.context import BODY_FOLLOWS

    sent = sent_by_forward(LegacyForwarder(BASE, _WholeTransport(streamed)), RequestContext(b"r", b"t"),
                           make_scope("GET", b"/x"))
    assert [m["type"] for m in sent][:2] == ["http.response.start", "http.response.body"]
    # The promise only when the whole body is in hand, and then it is the next message.
    assert sent[0].get(BODY_FOLLOWS, False) is (not streamed)
    if not streamed:
        assert sent[1] == {"type": "http.response.body", "body": b"hello", "more_body": False}
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"hello"


def test_a_stamping_forwarder_answers_for_the_gateway():
    # stamp=True is how the gateway calls it with send() unwrapped: every
    # answer gets the request id and a Date (unless the backend sent them), and
    # the status it sent goes into the context, failures included.
    router = respx.Router()
    router.get("/plain").respond(200, text="ok")
    router.get("/own").respond(200, text="ok", headers=[(b"X-Request-Id", b"go-1"), (b"Date", b"Tue, 01 Jan 2030")])
    router.get("/dead").mock(side_effect=httpx.ConnectError("refused"))

    def go(path: bytes, stamp: bool) -> tuple[RequestContext, list[dict]]:
        ctx = RequestContext(b"req-9", b"t")
        return ctx, sent_by_forward(forwarder(router), ctx, make_scope("GET", path), stamp=stamp)

    def named(message: dict, name: bytes) -> list[bytes]:
        return [v for n, v in message["headers"] if n.lower() == name]

    for path, status, request_id in ((b"/plain", 200, b"req-9"), (b"/own", 200, b"go-1"), (b"/dead", 502, b"req-9")):
        ctx, sent = go(path, stamp=True)
        start = sent[0]
        assert (start["status"], ctx.status) == (status, status), path
        assert named(start, b"x-request-id") == [request_id], path
        dates = named(start, b"date")
        assert len(dates) == 1 and (dates == [b"Tue, 01 Jan 2030"] if path == b"/own" else dates[0].endswith(b" GMT"))
    for path in (b"/plain", b"/dead"):  # unstamped: the answer as the backend (or the gateway's error) has it
        ctx, sent = go(path, stamp=False)
        assert ctx.status == 0 and not named(sent[0], b"x-request-id") and not named(sent[0], b"date")
