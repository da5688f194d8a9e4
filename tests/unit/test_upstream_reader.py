"""The upstream response reader's limits alone, fed bytes (no sockets): how much
head an upstream may send, how many fields and interim answers, and the 101."""
from __future__ import annotations

import httpx
import pytest

from gateway.upstream.http11 import HeadLimits, ResponseReader, UpstreamRefused


class Events:
    def __init__(self) -> None:
        self.heads = 0
        self.completes = 0

    def head_received(self) -> None:
        self.heads += 1

    def body_received(self) -> None:
        pass

    def message_complete(self) -> None:
        self.completes += 1


def reader(**limits) -> tuple[ResponseReader, Events]:
    events = Events()
    r = ResponseReader(events, HeadLimits(**limits))
    r.start(head_only=False)
    return r, events


def feed_all(r: ResponseReader, data: bytes, step: int | None = None) -> None:
    step = step or len(data)
    for i in range(0, len(data), step):
        assert r.feed(data[i:i + step])


def head_of(size: int, status: bytes = b"200 OK", extra: bytes = b"Content-Length: 2\r\n") -> bytes:
    """A response head of exactly ``size`` bytes (padded with one X-Pad field)."""
    start = b"HTTP/1.1 " + status + b"\r\n" + extra
    pad = size - len(start) - len(b"X-Pad: \r\n\r\n")
    assert pad >= 0
    return start + b"X-Pad: " + b"p" * pad + b"\r\n\r\n"


@pytest.mark.parametrize("step", [None, 1000, 7])
def test_a_head_of_exactly_the_limit_passes_and_one_byte_more_is_refused(step):
    r, events = reader(head_size=4096)
    feed_all(r, head_of(4096) + b"ok", step)
    assert events.heads == 1 and r.complete and r.status == 200

    r, events = reader(head_size=4096)
    with pytest.raises(UpstreamRefused, match="over 4096 bytes") as err:
        feed_all(r, head_of(4097) + b"ok", step)
    assert err.value.limit == "upstream_head_size" and events.heads == 0
    assert isinstance(err.value, httpx.RemoteProtocolError)  # the connection is aborted as for garbage


def test_a_huge_head_is_refused_after_reading_no_more_than_the_limit():
    r, _ = reader(head_size=65536)
    r.feed(b"HTTP/1.1 200 OK\r\nX-Big: ")
    with pytest.raises(UpstreamRefused):
        for _ in range(64 * 1024):  # would be 64 MiB; the first reads past 64 KiB stop it
            r.feed(b"v" * 1024)
    assert not r.fields  # llhttp never finished the field: nothing was held


def test_a_small_head_with_a_large_body_in_the_same_read_is_not_refused():
    r, events = reader(head_size=1024)
    body = b"b" * 300_000
    assert r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + body)
    assert events.heads == 1 and r.complete and b"".join(r.chunks) == body


def test_header_count_is_capped():
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(199))
    r, events = reader()
    feed_all(r, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + fields + b"\r\n")
    assert events.heads == 1 and len(r.fields) == 200

    r, _ = reader()
    with pytest.raises(UpstreamRefused, match="more than 200 header fields") as err:
        feed_all(r, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-One-More: 1\r\n" + fields + b"\r\n")
    assert err.value.limit == "upstream_header_count"


def test_interim_answers_count_against_the_head_and_are_capped():
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    r, events = reader()
    feed_all(r, interim * 10 + final)
    assert events.heads == 1 and r.status == 200 and r.fields == [(b"Content-Length", b"content-length", b"2")]

    r, _ = reader()
    with pytest.raises(UpstreamRefused, match="more than 10 interim") as err:
        feed_all(r, interim * 11 + final)
    assert err.value.limit == "upstream_interim_responses"

    # Their bytes and fields count too: ten interim answers of 4 KiB fill a 40 KiB budget.
    big_interim = head_of(4096, b"103 Early Hints", b"")
    r, _ = reader(head_size=40 * 1024)
    with pytest.raises(UpstreamRefused, match="upstream_head_size|over 40960 bytes"):
        feed_all(r, big_interim * 10 + final, 5000)
    r, _ = reader(header_count=15)
    with pytest.raises(UpstreamRefused, match="more than 15 header fields"):
        feed_all(r, interim * 10 + b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n\r\n")


def test_an_interim_flood_is_refused_at_once():
    r, _ = reader()
    with pytest.raises(UpstreamRefused):
        r.feed(b"HTTP/1.1 100 Continue\r\n\r\n" * 200_000)


def test_101_is_refused():
    r, events = reader()
    with pytest.raises(UpstreamRefused, match="101 Switching Protocols") as err:
        r.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI * HTTP/2.0")
    assert err.value.limit == "upgrade" and events.heads == 0


def test_trailers_are_dropped_and_held_to_the_head_limits():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    r, _ = reader()
    feed_all(r, chunked + b"0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n")
    assert r.complete and r.fields == [(b"Transfer-Encoding", b"transfer-encoding", b"chunked")]

    r, _ = reader(head_size=4096)
    with pytest.raises(UpstreamRefused, match="trailer section over 4096 bytes"):
        feed_all(r, chunked + b"0\r\nX-Big: " + b"t" * 10_000 + b"\r\n\r\n", 1000)

    r, _ = reader(header_count=5)
    with pytest.raises(UpstreamRefused, match="more than 5 header fields in a trailer section"):
        feed_all(r, chunked + b"0\r\n" + b"X-T: 1\r\n" * 6 + b"\r\n")


@pytest.mark.parametrize("step", [3, 64, 4096, None])
def test_chunk_data_after_a_size_line_is_never_taken_for_trailers(step):
    # A read that ends right after a chunk-size line leaves the reader unsure
    # whether trailers follow; the chunk's data must still pass however large.
    r, _ = reader(head_size=1024)
    big = b"d" * 50_000
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(big) + big + b"\r\n" + b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
    if step is None:
        head, _, rest = data.partition(b"\r\n\r\n")
        size_line, _, rest = rest.partition(b"\r\n")
        assert r.feed(head + b"\r\n\r\n" + size_line + b"\r\n") and r.feed(rest)
    else:
        feed_all(r, data, step)
    assert r.complete and b"".join(r.chunks) == big * 2


def test_counters_start_over_for_each_response_on_a_connection():
    r, events = reader(head_size=200)
    for _ in range(3):
        r.start(head_only=False)
        assert r.feed(head_of(200) + b"ok")
        assert r.complete
    assert events.heads == 3
