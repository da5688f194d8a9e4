"""Measure a request head as its bytes arrive, before the HTTP parser sees them.

httptools (llhttp) has no size limits and buffers a header field that spans
reads by concatenating its pieces; uvicorn keeps every header it is handed. So
a head that never ends would grow the process without bound. The edge protocol
runs each read that belongs to a head through :class:`HeadScanner` first and
refuses the connection as soon as a limit is crossed — the offending bytes are
never parsed, and the request never reaches the app.

The scanner only finds line ends and the blank line that ends the head; the
parser stays the authority on what the head means. Lines end at ``\\n`` (llhttp
requires ``\\r\\n`` and rejects a bare ``\\n`` itself), and empty lines before the
request line are allowed as RFC 9112 §2.2 says (they count towards the size).
"""
from __future__ import annotations

from dataclasses import dataclass

from .limits import EdgeLimits

_CR = 0x0D


@dataclass(frozen=True, slots=True)
class Verdict:
    """A head that crossed a limit: the answer and which limit."""

    status: int  # 414 or 431
    limit: str  # the EdgeLimits field
    message: str


class HeadScanner:
    """Line lengths, line count and size of the head being received.

    :meth:`scan` is called with each read (from an offset) and says where the
    head ends in it, if it does, and whether a limit was crossed."""

    __slots__ = ("cr", "limits", "line", "lines", "size")

    def __init__(self, limits: EdgeLimits):
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        self.line = 0  # bytes of the current, unfinished line
        self.cr = False  # the unfinished line ends with \r (its \n may come next)
        self.lines = 0  # finished non-empty lines: the request line, then fields
        self.size = 0  # bytes of this head so far

    @property
    def started(self) -> bool:
        return self.size > 0

    def scan(self, data: bytes, pos: int = 0) -> tuple[int, bool, Verdict | None]:
        """Scan ``data[pos:]``; return ``(end, done, verdict)``.

        ``end`` is the offset just past the head's blank line when ``done``,
        else ``len(data)`` (the head goes on in the next read) or the offset
        where a limit was crossed. A finished head resets the scanner for the
        next one."""
        if self.size == 0:
            fast = self._whole_head(data, pos)
            if fast is not None:
                return fast
        n = len(data)
        i = pos
        while i < n:
            j = data.find(b"\n", i)
            if j == -1:  # the line goes on in the next read
                added = n - i
                self.line += added
                self.size += added
                self.cr = data[n - 1] == _CR
                return n, False, self._unfinished_line() or self._size()
            seg = j - i
            length = self.line + seg  # bytes before the \n
            cr = data[j - 1] == _CR if seg else self.cr
            content = length - 1 if cr and length else length
            self.size += seg + 1
            self.line, self.cr = 0, False
            i = j + 1
            if content == 0:
                if self.lines == 0:  # an empty line before the request line
                    verdict = self._size()
                    if verdict:
                        return i, False, verdict
                    continue
                verdict = self._size()
                self.reset()
                return i, True, verdict
            self.lines += 1
            verdict = self._finished_line(content) or self._size()
            if verdict:
                return i, False, verdict
        return n, False, None

    def _whole_head(self, data: bytes, pos: int) -> tuple[int, bool, Verdict | None] | None:
        """The common case in one go: a fresh scanner and a whole, plain head
        (CRLF line ends only) within this read. None: take the general path."""
        end = data.find(b"\r\n\r\n", pos)
        limits = self.limits
        if end <= pos or end + 4 - pos > limits.head_size or data[pos] in b"\r\n":
            return None
        fields = data.count(b"\r\n", pos, end)  # the line ends inside the head: one a header field
        if data.count(b"\n", pos, end) != fields:
            return None  # a bare \n somewhere: count it the careful way
        first = data.find(b"\r\n", pos, end)
        if (first if first >= 0 else end) - pos > limits.request_line:
            return end, False, _request_line(limits)
        if fields > limits.header_count:
            return end, False, _header_count(limits)
        if end - pos > limits.header_line:
            # Some line might be too long: measure each (a head this size is rare).
            if max(map(len, data[pos:end].split(b"\r\n")[1:]), default=0) > limits.header_line:
                return end, False, _header_line(limits)
        # else no line is longer than the whole head, which is within the limit
        return end + 4, True, None

    def _unfinished_line(self) -> Verdict | None:
        content = self.line - 1 if self.cr else self.line
        if self.lines == 0:
            return _request_line(self.limits) if content > self.limits.request_line else None
        return _header_line(self.limits) if content > self.limits.header_line else None

    def _finished_line(self, content: int) -> Verdict | None:
        limits = self.limits
        if self.lines == 1:
            return _request_line(limits) if content > limits.request_line else None
        if content > limits.header_line:
            return _header_line(limits)
        if self.lines - 1 > limits.header_count:
            return _header_count(limits)
        return None

    def _size(self) -> Verdict | None:
        if self.size > self.limits.head_size:
            return Verdict(431, "head_size", f"Request header fields too large: the request head is over "
                                             f"{self.limits.head_size} bytes.")
        return None


def _request_line(limits: EdgeLimits) -> Verdict:
    return Verdict(414, "request_line", f"URI too long: the request line is over {limits.request_line} bytes.")


def _header_line(limits: EdgeLimits) -> Verdict:
    return Verdict(431, "header_line", f"Request header fields too large: a header field is over "
                                       f"{limits.header_line} bytes.")


def _header_count(limits: EdgeLimits) -> Verdict:
    return Verdict(431, "header_count", f"Request header fields too large: more than "
                                        f"{limits.header_count} header fields.")


def measured_head(limits: EdgeLimits, method: bytes, url: bytes,
                  headers: list[tuple[bytes, bytes]]) -> Verdict | None:
    """The limits checked on a head the parser has already taken apart (one
    pipelined behind a chunked body in the same read, which the scanner could
    not see): sizes from the parts, the spaces around ``:`` not counted."""
    request_line = len(method) + len(url) + len(b"  HTTP/1.1")
    if request_line > limits.request_line:
        return _request_line(limits)
    if len(headers) > limits.header_count:
        return _header_count(limits)
    size = request_line + 2 + 2
    for name, value in headers:
        line = len(name) + 1 + len(value)
        if line > limits.header_line:
            return _header_line(limits)
        size += line + 2
    if size > limits.head_size:
        return Verdict(431, "head_size", f"Request header fields too large: the request head is over "
                                         f"{limits.head_size} bytes.")
    return None
