"""Go's ``url.ParseQuery``, for the two things the legacy reads from it.

* Echo's ``c.JSON`` indents when ``c.QueryParams()`` holds a ``pretty`` key
  (:func:`has_key`);
* Echo's form binding (``r.ParseForm``) fails with ParseQuery's error
  (:func:`first_error`).

Go 1.24+ (checked against the stand-in, built with the legacy's Go line):

* more than 10,000 ``&``-separated parameters: nothing is parsed at all, the
  error is ``number of URL query parameters exceeded limit``;
* the query is cut on ``&``; a piece holding ``;`` is skipped (error ``invalid
  semicolon separator in query``, which replaces any earlier error); empty
  pieces are skipped;
* key and value are split on the first ``=`` and each is ``QueryUnescape``d:
  ``+`` is a space, ``%XX`` is a byte; a malformed escape skips the whole pair
  (error ``invalid URL escape "%zz"``, only if no error came before).

So ``?%70retty`` and ``?pr%65tty=1`` are ``pretty``, ``?pretty+`` is ``"pretty "``,
and ``?pretty=%zz`` or ``?pretty=a;b`` are no ``pretty`` at all.
"""
from __future__ import annotations

import re

__all__ = ["MAX_PARAMS", "first_error", "go_quote", "has_key", "query_unescape"]

MAX_PARAMS = 10000  # net/url's defaultMaxParams (GODEBUG urlmaxqueryparams)

MSG_TOO_MANY = "number of URL query parameters exceeded limit"
MSG_SEMICOLON = "invalid semicolon separator in query"

_HEX = frozenset(b"0123456789abcdefABCDEF")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _too_many(raw: bytes) -> bool:
    return raw.count(b"&") + 1 > MAX_PARAMS


def query_unescape(s: bytes) -> bytes | None:
    """``url.QueryUnescape``: ``+`` → space, ``%XX`` → byte; None when an escape is malformed."""
    if b"%" in s:
        if _BAD_ESCAPE.search(s):
            return None
        s = _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), s)  # after the check: no re-decoding
    return s.replace(b"+", b" ") if b"+" in s else s


def has_key(raw: bytes, key: bytes) -> bool:
    """Whether ``url.ParseQuery(raw)`` holds ``key`` (with any value, even empty)."""
    if not raw or _too_many(raw):
        return False
    for piece in raw.split(b"&"):
        if not piece or b";" in piece:
            continue
        name, _, value = piece.partition(b"=")
        if query_unescape(name) == key and query_unescape(value) is not None:
            return True
    return False


def first_error(raw: bytes) -> str | None:
    """The error ``url.ParseQuery(raw)`` returns, or None.

    Linear and without a loop over the pieces: any ``;`` wins (it overwrites
    earlier errors), else the first malformed escape in document order is the
    first one Go meets (pieces in order, key before value)."""
    if _too_many(raw):
        return MSG_TOO_MANY
    if b";" in raw:
        return MSG_SEMICOLON
    m = _BAD_ESCAPE.search(raw)
    if m is None:
        return None
    at = m.start()
    # Go quotes at most 3 bytes, and never past the end of the key or value.
    piece_end = raw.find(b"&", at)
    piece_end = len(raw) if piece_end == -1 else piece_end
    piece_start = raw.rfind(b"&", 0, at) + 1
    equals = raw.find(b"=", piece_start, piece_end)
    end = equals if equals != -1 and at < equals else piece_end
    return f"invalid URL escape {go_quote(raw[at:min(at + 3, end)])}"


def go_quote(raw: bytes) -> str:
    """``strconv.Quote(string(raw))``: invalid UTF-8 bytes as ``\\xNN``."""
    out = ['"']
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append("\\x%02x" % (code - 0xDC00))
        elif ch in '"\\':
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F:
            out.append({7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
                       .get(code, "\\x%02x" % code))
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append("\\u%04x" % code if code < 0x10000 else "\\U%08x" % code)
    return "".join(out) + '"'
