"""gateway/ops/logs.py: JSON lines, the hand-built access line, the writer that
never makes its caller wait for stdout."""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import logging.config
import os
import threading
import time
from collections.abc import Iterator

import pytest

from gateway.ops import logs
from tests.support.waiting import until

FIELDS = {"method": "GET", "path": "/users/7", "status": 200, "ms": 1.2345, "route": "/users", "state": "go",
          "backend": "go", "service": None, "client": "127.0.0.1", "request_id": "req-1",
          "trace_id": "0af7651916cd43dd8448eb211c80319c"}


# -- the access line -------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/users/7", "/a b", '/quote"d', "/back\\slash", "/ctl\x01\x7f", "/latin-\xe9\xff", "/%2F%22", "/<script>",
    "/\u2028line-separator", "",
])
@pytest.mark.parametrize("overrides", [
    {}, {"state": None, "route": "(rejected)", "backend": "gateway", "status": 400},
    {"backend": "python", "state": "python", "service": "ping"}, {"client": None},
    {"upstream_error": "ConnectError", "status": 502}, {"status": 0, "ms": 0.0}, {"ms": 123456.789},
    {"client": "203.0.113.9", "peer": "10.0.0.7"},
])
def test_access_line_is_the_object_json_dumps_would_make(path: str, overrides: dict) -> None:
    fields = {**FIELDS, "path": path, **overrides}
    line = logs.access_line(**fields, now=1_764_656_831.599)
    assert line.endswith("}\n") and "\n" not in line[:-1]
    assert line.isascii()
    record = json.loads(line)
    expected = {"time": "2025-12-02T06:27:11.599Z", "level": "info", "logger": "gateway.access",
                **{k: v for k, v in fields.items() if k != "upstream_error"}}
    expected["ms"] = round(fields["ms"], 2)
    if fields.get("upstream_error"):
        expected["upstream_error"] = fields["upstream_error"]
    assert record == expected


def test_access_line_fields_come_in_a_fixed_order() -> None:
    record = json.loads(logs.access_line(**FIELDS, upstream_error="ReadTimeout"))
    assert list(record) == ["time", "level", "logger", "method", "path", "status", "ms", "route", "state",
                            "backend", "service", "client", "request_id", "trace_id", "upstream_error"]


def test_timestamp_is_rfc3339_utc_with_milliseconds() -> None:
    for now in (0.0, 1_764_656_831.0, 1_764_656_831.999, 1_764_656_832.0005, 2_000_000_000.25):
        text = logs.timestamp(now)
        parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
        assert abs(parsed.timestamp() - now) < 0.001
        assert len(text) == len("2026-12-02T06:27:11.599Z")


# -- the writer --------------------------------------------------------------------

@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # fills after a dozen lines
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def read_lines(fd: int, count: int) -> list[str]:
    """Read from ``fd`` until ``count`` lines have arrived."""
    data = b""
    while data.count(b"\n") < count:
        chunk = os.read(fd, 1 << 16)
        assert chunk, f"EOF after {len(data.splitlines())} of {count} lines"
        data += chunk
    return data.decode().splitlines()


def start_reader(fd: int, count: int) -> tuple[threading.Thread, list[str]]:
    """A thread reading ``count`` lines from ``fd`` into the list it returns."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(read_lines(fd, count)))
    reader.start()
    return reader, got


def line(i: int) -> str:
    return json.dumps({"n": i, "pad": "x" * 200}) + "\n"


def test_lines_arrive_whole_and_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001)
    reader, got = start_reader(r, 2000)
    for i in range(2000):
        writer.write(line(i))
    assert writer.flush()
    reader.join(30)
    assert [json.loads(x)["n"] for x in got] == list(range(2000))


def test_under_steady_traffic_the_writer_needs_no_wake_up_per_batch(pipe: tuple[int, int]) -> None:
    """Callers wake the writer only when the queue goes from empty to one line.
    Lines that arrive while it renders a batch must go out with the next batch,
    not wait for the idle timeout (60 s here, so a missed wake-up would hold
    them far past the test's patience)."""
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001, idle_wait=60)
    reader, got = start_reader(r, 200)

    def slow_render(i: int) -> str:  # rendering takes a while: lines pile up behind the batch
        time.sleep(0.002)
        return line(i)

    def steady() -> None:
        for i in range(200):
            writer.defer(slow_render, i)
            time.sleep(0.001)

    threading.Thread(target=steady, daemon=True).start()
    reader.join(20)
    assert not reader.is_alive(), f"{len(got)} of 200 lines written: the writer slept on a non-empty queue"
    assert [json.loads(x)["n"] for x in got] == list(range(200))


def test_a_flush_racing_finish_still_returns_at_once(pipe: tuple[int, int]) -> None:
    """finish() ends the writer thread; a line or a flush that comes right
    after is written by its caller, never left in the queue."""
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001, idle_wait=60)
    writer.write(line(0))
    assert writer.finish()
    writer._items.append(line(1))  # as if queued by a caller that read _synchronous just before finish()
    assert writer.flush(timeout=5)
    os.set_blocking(r, False)
    assert [json.loads(x)["n"] for x in os.read(r, 1 << 16).decode().splitlines()] == [0, 1]


def test_a_flush_does_not_wait_out_the_gathering_pause(pipe: tuple[int, int]) -> None:
    """After each batch the writer pauses to let lines gather (60 s here). A
    flush, what a graceful stop makes, cuts the pause short: with the pause
    waited out, this flush would time out and every stop would last one more
    pause."""
    r, w = pipe
    writer = logs.LineWriter(w, interval=60)
    writer.write(line(0))
    assert writer.flush(timeout=10)  # the first batch: the writer now pauses
    writer.write(line(1))
    assert writer.flush(timeout=10), "the flush waited for the writer's pause to end"
    assert [json.loads(x)["n"] for x in read_lines(r, 2)] == [0, 1]


def test_write_never_waits_for_a_blocked_pipe(pipe: tuple[int, int]) -> None:
    """Nobody reads the pipe while 1,000 lines (50 pipe-fulls) are written: the
    writes all return, and every line arrives once somebody reads."""
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001)
    writes = threading.Thread(target=lambda: [writer.write(line(i)) for i in range(1000)], daemon=True)
    writes.start()
    writes.join(30)
    assert not writes.is_alive(), "write() waited for the pipe"
    assert writer.flush(timeout=0.05) is False  # the writer thread is stuck on the full pipe ...
    got = read_lines(r, 1000)  # ... until somebody reads
    assert [json.loads(x)["n"] for x in got] == list(range(1000))
    assert writer.flush()


def test_a_backlog_past_the_bound_drops_lines_and_says_how_many(pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = logs.LineWriter(w, max_lines=200, interval=0.001)
    for i in range(1000):  # ~215 KB while nobody reads: far past the bound (and a 64 KiB pipe)
        writer.write(line(i))
    os.set_blocking(r, False)
    data = bytearray()

    def accounted() -> tuple[list[int], list[int]] | None:
        """(line numbers received, dropped counts reported) once they add up to 1,000."""
        try:
            data.extend(os.read(r, 1 << 20))
        except BlockingIOError:
            pass
        records = [json.loads(x) for x in data.decode().splitlines(keepends=True) if x.endswith("\n")]
        numbers = [rec["n"] for rec in records if "n" in rec]
        reports = [rec for rec in records if rec.get("logger") == "gateway.logs"]
        dropped = [int(rec["message"].split()[0]) for rec in reports]
        assert all(rec["level"] == "warning" and "log line(s) dropped" in rec["message"] for rec in reports)
        return (numbers, dropped) if len(numbers) + sum(dropped) == 1000 else None

    numbers, dropped = until(accounted, what="every line written or reported dropped")
    assert dropped and 0 < len(numbers) < 1000
    assert numbers[0] == 0 and numbers == sorted(set(numbers))  # whole lines, in order, none twice


def test_after_finish_each_line_is_written_before_write_returns(pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001)
    for i in range(5):
        writer.write(line(i))
    assert writer.finish()
    writer.write(line(5))
    os.set_blocking(r, False)
    got = os.read(r, 1 << 16).decode().splitlines()  # no waiting: it is already there
    assert [json.loads(x)["n"] for x in got] == list(range(6))


def test_a_closed_pipe_is_not_an_error_for_the_caller(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    writer = logs.LineWriter(w, interval=0.001)
    writer.write(line(0))
    assert writer.flush()
    assert writer.failed == 1


# -- logging ----------------------------------------------------------------------

@pytest.fixture
def json_logging(pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The handler gateway serve's logging config installs, with the process's
    writer on a pipe. (Not dictConfig itself: it would close pytest's own
    handlers; the wire tests run the real config.)"""
    r, w = pipe
    monkeypatch.setattr(logs, "_stdout", logs.LineWriter(w, interval=0.001))
    monkeypatch.setattr(logs, "_configured", False)
    root = logging.getLogger()
    handler = logs.JsonLineHandler()
    root.addHandler(handler)
    monkeypatch.setattr(root, "level", logging.INFO)
    try:
        yield r
    finally:
        root.removeHandler(handler)
        logging.captureWarnings(False)


def test_log_config_installs_the_json_handler_on_the_root_logger() -> None:
    config = logs.log_config("warning")
    factory = config["handlers"]["json"]["()"]
    module, _, name = factory.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is logs.JsonLineHandler
    assert config["root"] == {"handlers": ["json"], "level": "WARNING"}
    assert config["disable_existing_loggers"] is False  # loggers made at import keep working
    assert config["loggers"]["gateway.access"]["level"] == "INFO"  # not tied to --log-level


def test_every_logger_writes_one_json_object_per_line(json_logging: int) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("gateway").exception("backend for %s raised", "/users")
    assert logs.configured_writer() is logs._stdout
    logs._stdout.flush()
    first, second = (json.loads(x) for x in read_lines(json_logging, 2))
    assert first["message"] == "Started server process [42]"
    assert (first["level"], first["logger"]) == ("info", "uvicorn.error")
    assert second["message"] == "backend for /users raised" and second["level"] == "error"
    assert "ValueError: boom\nsecond line" in second["exc"] and "Traceback" in second["exc"]
    dt.datetime.strptime(second["time"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_the_access_log_bypasses_logging_only_under_gateway_serve(json_logging: int) -> None:
    from gateway.app import _access_sink, _ThroughLogging

    assert _access_sink() is logs._stdout  # straight to the writer
    logs._configured = False
    assert isinstance(_access_sink(), _ThroughLogging)  # embedded: through the gateway.access logger


def test_a_deferred_line_is_rendered_by_the_writer_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = logs.LineWriter(w, interval=0.001)
    reader, got = start_reader(r, 302)
    for i in range(300):
        if i % 3:
            writer.write(line(i))
        else:
            writer.defer(line, i)  # rendered later, by the writer thread
    writer.defer(lambda record: 1 / 0, None)  # a broken renderer costs its line, nothing else
    writer.write(line(300))
    assert writer.flush()
    reader.join(30)
    assert [json.loads(x)["n"] for x in got[:300]] == list(range(300))
    assert "could not be rendered: ZeroDivisionError" in json.loads(got[300])["message"]
    assert json.loads(got[301])["n"] == 300
