"""Echo v4.13.3's ``c.Bind`` for request bodies, with Go ``encoding/json`` semantics.

The legacy handlers bind into small Go structs and put the binder's error text
in their answers (``"Invalid request body: " + err.Error()`` on /api_keys,
``{"error": err.Error()}`` on /llm/generate, ``echo.NewHTTPError(400,
err.Error())`` in auth), so a drop-in has to decide the same things Go does and
say them the same way (``str(BindError)`` is that ``err.Error()``):

* ``Content-Length: 0`` (empty body) → nothing bound, whatever the type;
* the media type (before ``;``, trimmed, **case-sensitive**) selects the
  decoder: ``application/json``; ``application/xml`` / ``text/xml`` (flat
  string fields only, see below); ``application/x-www-form-urlencoded`` and
  ``multipart/form-data`` bind nothing (the legacy structs have no ``form``
  tags) but a malformed urlencoded body still fails like Go's ``ParseForm``;
  anything else → ``code=415, message=Unsupported Media Type``;
* JSON: only the **first** value is read (trailing bytes are ignored), with
  Go's scanner (its syntax-error texts and offsets), ``EOF`` /
  ``unexpected EOF``, keys matched exactly then case-insensitively (Go's
  fold), the last duplicate winning, ``null`` a no-op for strings and numbers
  and ``nil`` for slices/pointers, invalid UTF-8 replaced by U+FFFD byte by
  byte, lone surrogate escapes → U+FFFD, and the first type mismatch reported
  as ``Unmarshal type error: expected=…, got=…, field=…, offset=…`` with Go
  1.24's ``internal`` text.

This module has no feature-specific code: the auth, api_keys and llm
features describe their structs with :class:`Struct` / :class:`Slice` /
:class:`Ptr` and bind with :func:`bind_request`.

Hostile bodies: the work is linear in the body (no per-byte Python loop, no
tree of the whole value), the body is capped before it is read
(services/body_limit.py), and a body larger than ``INLINE_BIND_BYTES`` is
bound in a worker thread, at most ``BIND_THREADS`` at a time, so a bind never
holds the event loop — Go routes included — for more than a few milliseconds.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from json.decoder import scanstring  # type: ignore[attr-defined]  # in CPython, not in typeshed
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from .goquery import first_error

__all__ = [
    "BindError", "Struct", "Slice", "Ptr", "STRING", "FLOAT64", "INT", "bind_request", "echo_bind",
    "decode_json", "is_chunked",
]

MAX_NESTING_DEPTH = 10000


class BindError(Exception):
    """The body cannot be bound. ``str(err)`` is Echo's ``HTTPError.Error()``."""

    def __init__(self, code: int, message: str, internal: str | None = None) -> None:
        self.code, self.message, self.internal = code, message, internal
        text = f"code={code}, message={message}"
        if internal is not None:
            text += f", internal={internal}"
        super().__init__(text)


# --- types (the Go structs we bind into) -------------------------------------

@dataclass(frozen=True)
class Scalar:
    go: str  # "string", "float64", "int"


STRING, FLOAT64, INT = Scalar("string"), Scalar("float64"), Scalar("int")


@dataclass(frozen=True)
class Struct:
    """A Go struct: ``name`` unqualified, ``package`` as Go prints it."""
    name: str
    package: str
    fields: tuple[tuple[str, str, GoType], ...]  # (Go field name, json name, type)

    @property
    def go(self) -> str:
        return f"{self.package}.{self.name}"

    def zero(self) -> dict[str, Any]:
        return {f: zero_value(t) for f, _, t in self.fields}

    @cached_property
    def members(self) -> _Members:
        """How the decoder finds this struct's fields among an object's keys (built once)."""
        return _Members(self)


@dataclass(frozen=True)
class Slice:
    elem: GoType

    @property
    def go(self) -> str:
        return "[]" + self.elem.go


@dataclass(frozen=True)
class Ptr:
    elem: Struct

    @property
    def go(self) -> str:
        return "*" + self.elem.go


GoType = Scalar | Struct | Slice | Ptr


def zero_value(t: GoType) -> Any:
    if t is STRING:
        return ""
    if t is FLOAT64:
        return 0.0
    if t is INT:
        return 0
    if isinstance(t, Struct):
        return t.zero()
    return None  # nil slice / nil pointer


# --- Go's quoteChar, for JSON syntax errors --------------------------------------

_GO_CTRL = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _go_quote_rune(r: int) -> str:
    if r == 0x5C:
        return "\\\\"
    if r < 0x20 or r == 0x7F:
        return _GO_CTRL.get(r, "\\x%02x" % r)
    if 0x80 <= r <= 0xA0 or r == 0xAD:
        return "\\u%04x" % r
    return chr(r)


def _quote_char(c: int) -> str:
    """encoding/json's quoteChar(byte)."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    return "'" + _go_quote_rune(c) + "'"


# --- Go's JSON scanner (scanner.go), to find the first value or the error -----
#
# Go's Decoder scans the whole first value before decoding any of it, so a
# syntax error anywhere wins over a type error earlier on. The scanner below
# makes Go's decisions and says them in Go's words and offsets, but a token at a
# time, not a byte at a time: whitespace, strings, numbers and literals are one
# regex match each, and runs of simple array elements or object members (``1,``
# or ``"k":"v",``, flat containers included) are a single match. Whatever the
# regexes do not accept takes the exact path, which meets the error within a
# few bytes. The work is linear in the input; only containers nested two or
# more deep cost a Python step each.

class _SyntaxError(Exception):
    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(msg)
        self.msg, self.offset = msg, offset


class _EOF(Exception):
    def __init__(self, unexpected: bool) -> None:
        super().__init__("unexpected EOF" if unexpected else "EOF")


_HEX = b"0123456789abcdefABCDEF"
_LITERALS = {ord("t"): (b"true", "true"), ord("f"): (b"false", "false"), ord("n"): (b"null", "null")}

# Every regex call is bounded (at most _RUN items, strings in runs at most
# _RUN_STRING pieces): the re module holds the GIL for a whole match, and a bind
# running in a worker thread must hand it back to the event loop often.
_RUN, _RUN_STRING = 256, 32
_W = rb"[ \t\r\n]*+"
_STR_PIECE = rb'(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'
_STR = rb'"' + _STR_PIECE + b"{0,%d}+" % _RUN_STRING + rb'"'  # a string as an item of a run
_FRACTION, _EXPONENT = rb"\.[0-9]++", rb"[eE][+-]?[0-9]++"
_NUM = rb"-?(?:0|[1-9][0-9]*+)(" + _FRACTION + rb")?(" + _EXPONENT + rb")?"  # groups: did it have them?
_SCALAR = (rb"(?:" + _STR + rb"|-?(?:0|[1-9][0-9]*+)(?:" + _FRACTION + rb")?(?:" + _EXPONENT + rb")?"
           rb"|true|false|null)")
_MORE = b"{0,%d}+" % _RUN
# A container holding scalars only (empty ones included): one level deeper.
_FLAT = (rb"(?:\[" + _W + rb"(?:" + _SCALAR + _W + rb"(?:," + _W + _SCALAR + _W + rb")" + _MORE + rb")?\]"
         rb"|\{" + _W + rb"(?:" + _STR + _W + rb":" + _W + _SCALAR + _W +
         rb"(?:," + _W + _STR + _W + rb":" + _W + _SCALAR + _W + rb")" + _MORE + rb")?\})")
_ITEM, _ITEM_NO_NESTING = rb"(?:" + _SCALAR + rb"|" + _FLAT + rb")", _SCALAR

_WS = re.compile(_W)
_STRING_PART = re.compile(_STR_PIECE + b"{0,%d}+" % _RUN)
_NUMBER = re.compile(_NUM)
# "item," runs after '[' or ',' in an array; '"key":item,' runs in an object.
# The second of each pair is for a container at the depth limit (no nesting).
_ARRAY_RUN = (re.compile(rb"(?:" + _W + _ITEM + _W + rb",)" + _MORE),
              re.compile(rb"(?:" + _W + _ITEM_NO_NESTING + _W + rb",)" + _MORE))
_OBJECT_RUN = (re.compile(rb"(?:" + _W + _STR + _W + rb":" + _W + _ITEM + _W + rb",)" + _MORE),
               re.compile(rb"(?:" + _W + _STR + _W + rb":" + _W + _ITEM_NO_NESTING + _W + rb",)" + _MORE))

# where the scanner is, between tokens; and what an open container expects
_VALUE, _VALUE_OR_CLOSE, _KEY, _KEY_OR_CLOSE, _AFTER_VALUE = range(5)
_ARRAY, _OBJECT_KEY, _OBJECT_VALUE = range(3)


def _error(data: bytes, at: int, context: str) -> _SyntaxError:
    return _SyntaxError(f"invalid character {_quote_char(data[at])} {context}", at + 1)


def _scan_string(data: bytes, i: int) -> int:
    """End of the string literal at ``data[i] == '"'``; Go's error otherwise."""
    n, j = len(data), i + 1
    while True:  # a bounded number of pieces per match (see _RUN)
        end = _STRING_PART.match(data, j).end()
        if end < n and data[end] == 0x22:
            return end + 1
        if end == j:
            break  # data[j] breaks the string
        j = end
    if j >= n:
        raise _EOF(unexpected=True)
    if data[j] != 0x5C:
        raise _error(data, j, "in string literal")  # a control character
    if j + 1 >= n:
        raise _EOF(unexpected=True)
    if data[j + 1] != 0x75:
        raise _error(data, j + 1, "in string escape code")
    for k in range(j + 2, j + 6):  # \u with fewer than four hex digits
        if k >= n:
            raise _EOF(unexpected=True)
        if data[k] not in _HEX:
            raise _error(data, k, "in \\u hexadecimal character escape")
    raise AssertionError("unreachable: the string regex accepts this escape")


def _scan_number(data: bytes, i: int) -> int:
    """End of the number at ``i``; Go's error when it stops half-way (``1.``, ``1e+``, ``-``)."""
    n = len(data)
    m = _NUMBER.match(data, i)
    if m is None:  # '-' without a digit
        if i + 1 >= n:
            raise _EOF(unexpected=True)
        raise _error(data, i + 1, "in numeric literal")
    j = m.end()
    if j < n:
        c = data[j]
        if c == 0x2E and m.start(1) == -1 and m.start(2) == -1:  # '1.' then no digit
            if j + 1 >= n:
                raise _EOF(unexpected=True)
            raise _error(data, j + 1, "after decimal point in numeric literal")
        if c in b"eE" and m.start(2) == -1:  # an exponent without digits
            k = j + 2 if j + 1 < n and data[j + 1] in b"+-" else j + 1
            if k >= n:
                raise _EOF(unexpected=True)
            raise _error(data, k, "in exponent of numeric literal")
    return j


def _scan_literal(data: bytes, i: int) -> int:
    literal, name = _LITERALS[data[i]]
    if data.startswith(literal, i):
        return i + len(literal)
    for k in range(1, len(literal)):
        if i + k >= len(data):
            raise _EOF(unexpected=True)
        if data[i + k] != literal[k]:
            raise _error(data, i + k, f"in literal {name} (expecting {_quote_char(literal[k])})")
    raise AssertionError("unreachable")


def _first_value_end(data: bytes) -> int:
    """Index just past Go's Decoder's first JSON value in ``data``.

    Raises :class:`_SyntaxError` (Go's message and offset) or :class:`_EOF`.
    """
    n = len(data)
    stack: list[int] = []
    state = _VALUE
    i = 0
    while True:
        if state == _AFTER_VALUE:
            if not stack:
                return i  # a top-level value ends where it ends; the rest is never read
            i = _WS.match(data, i).end()
            if i >= n:
                raise _EOF(unexpected=True)
            c, top = data[i], stack[-1]
            if top == _OBJECT_KEY:
                if c != 0x3A:
                    raise _error(data, i, "after object key")
                stack[-1], state = _OBJECT_VALUE, _VALUE
            elif top == _OBJECT_VALUE:
                if c == 0x2C:
                    stack[-1], state = _OBJECT_KEY, _KEY
                elif c == 0x7D:
                    stack.pop()
                else:
                    raise _error(data, i, "after object key:value pair")
            elif c == 0x2C:
                state = _VALUE
            elif c == 0x5D:
                stack.pop()
            else:
                raise _error(data, i, "after array element")
            i += 1
            if not stack and state == _AFTER_VALUE:
                return i
            continue

        if state in (_KEY, _KEY_OR_CLOSE):
            end = _OBJECT_RUN[len(stack) >= MAX_NESTING_DEPTH].match(data, i).end()
            if end > i:
                i, state = end, _KEY
            i = _WS.match(data, i).end()
            if i >= n:
                raise _EOF(unexpected=True)
            c = data[i]
            if c == 0x7D and state == _KEY_OR_CLOSE:  # "{}"
                stack[-1], state = _OBJECT_VALUE, _AFTER_VALUE
                continue
            if c != 0x22:
                raise _error(data, i, "looking for beginning of object key string")
            i, state = _scan_string(data, i), _AFTER_VALUE
            continue

        # _VALUE or _VALUE_OR_CLOSE
        if stack and stack[-1] == _ARRAY:
            end = _ARRAY_RUN[len(stack) >= MAX_NESTING_DEPTH].match(data, i).end()
            if end > i:
                i, state = end, _VALUE
        i = _WS.match(data, i).end()
        if i >= n:
            raise _EOF(unexpected=bool(stack))  # only whitespace so far: a plain EOF
        c = data[i]
        if c == 0x5D and state == _VALUE_OR_CLOSE:  # "[]"
            state = _AFTER_VALUE
            continue
        if c == 0x7B or c == 0x5B:
            if len(stack) >= MAX_NESTING_DEPTH:  # Go: "invalid character '[' exceeded max depth"
                raise _error(data, i, "exceeded max depth")
            stack.append(_OBJECT_KEY if c == 0x7B else _ARRAY)
            state = _KEY_OR_CLOSE if c == 0x7B else _VALUE_OR_CLOSE
            i += 1
            continue
        if c == 0x22:
            i = _scan_string(data, i)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            i = _scan_number(data, i)
        elif c in _LITERALS:
            i = _scan_literal(data, i)
        else:
            raise _error(data, i, "looking for beginning of value")
        state = _AFTER_VALUE


# --- decode the (valid) first value into Go types ----------------------------------
#
# Like Go's decodeState: walk the value once, decode what the struct has a field
# for, skip the rest. Only the first type mismatch is ever reported, so the walk
# stops there. Skipping is a regex over everything but brackets and strings.

_SKIP_PLAIN = re.compile(rb'[^"\[\]{}]*+')
_SURROGATES = re.compile("[\ud800-\udfff]")
_KIND = {0x7B: "object", 0x5B: "array", 0x22: "string", 0x74: "bool", 0x66: "bool", 0x6E: "null"}
_GO_INT = re.compile(rb"-?[0-9]+\Z")


_PIECE = 64 << 10  # bytes or characters per call where one big call would hold the GIL long


def _utf8_pieces(raw: bytes) -> Iterator[bytes]:
    """``raw`` in pieces that never split a valid UTF-8 sequence: a cut falls
    before a byte that is not a continuation byte, or after 4 of them in a row
    (which no valid sequence holds), so decoding the pieces one by one gives
    what decoding the whole would."""
    start, n = 0, len(raw)
    while start < n:
        end = min(start + _PIECE, n)
        if end < n:
            for back in range(4):
                if not 0x80 <= raw[end - back] <= 0xBF:
                    end -= back
                    break
        yield raw[start:end]
        start = end


def _go_text(raw: bytes, escapes: bool = False) -> str:
    """A string literal's body as Go decodes it: every byte of invalid UTF-8 is
    U+FFFD (Python's own "replace" would merge a truncated sequence into one);
    with ``escapes``, the escapes go through the C ``scanstring`` (surrogate
    pairs joined exactly as Go's ``unquote`` joins them) and a lone surrogate
    escape is U+FFFD as well."""
    try:
        text = raw.decode("utf-8")
        clean = True
    except UnicodeDecodeError:  # undecodable bytes ride along as surrogateescape's U+DC80-U+DCFF
        text = "".join(piece.decode("utf-8", "surrogateescape") for piece in _utf8_pieces(raw))
        clean = False
    if escapes:
        text, _ = scanstring(text + '"', 0, True)
        clean = clean and b"\\u" not in raw
    if clean:
        return text
    return "".join(_SURROGATES.sub("\ufffd", text[i:i + _PIECE]) for i in range(0, len(text), _PIECE))


def _unquote(data: bytes, start: int) -> tuple[str, int]:
    """The (valid) string literal at ``data[start]``: (text, end), as Go decodes it."""
    end = _scan_string(data, start)
    raw = data[start + 1:end - 1]
    return _go_text(raw, escapes=0x5C in raw), end


def _skip(data: bytes, pos: int) -> int:
    """End of the (valid) value at ``pos``."""
    c = data[pos]
    if c == 0x22:
        return _scan_string(data, pos)
    if c in b"tn":
        return pos + 4
    if c == 0x66:
        return pos + 5
    if c not in b"[{":
        return _NUMBER.match(data, pos).end()
    depth = 0
    while True:  # over brackets and strings; everything else in one match
        c = data[pos]
        if c == 0x22:
            pos = _scan_string(data, pos)
        else:
            if c in b"[{":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return pos + 1
            pos += 1
        pos = _SKIP_PLAIN.match(data, pos).end()


class _TypeError(Exception):
    def __init__(self, value: str, typ: str, offset: int, struct: str, fields: list[str]) -> None:
        self.value, self.typ, self.offset, self.struct = value, typ, offset, struct
        self.field = ".".join(fields)
        if struct or self.field:
            internal = (f"json: cannot unmarshal {value} into Go struct field "
                        f"{struct}.{self.field} of type {typ}")
        else:
            internal = f"json: cannot unmarshal {value} into Go value of type {typ}"
        self.internal = internal
        super().__init__(internal)


def _fold(name: str) -> str:
    """encoding/json's foldName, for names compared with ASCII field names."""
    out = []
    for ch in name:
        if ch < "\x80":
            out.append(ch.upper())
        elif ch == "\u212a":  # KELVIN SIGN folds to K
            out.append("K")
        elif ch == "\u017f":  # LATIN SMALL LETTER LONG S folds to S
            out.append("S")
        else:
            out.append(ch)
    return "".join(out)


class _Members:
    """A struct's fields by exact and by folded JSON name, and a regex that
    skips a run of members the struct has no field for: plain ASCII keys (no
    escapes) that do not fold to a field name, with simple values. Folding is
    ASCII case for such keys, so a case-insensitive look-ahead decides it."""

    def __init__(self, typ: Struct) -> None:
        self.exact = {j: (f, j, t) for f, j, t in typ.fields}
        self.folded = {_fold(j): (f, j, t) for f, j, t in typ.fields}
        names = b"|".join(re.escape(j.encode()) for _, j, _ in typ.fields)
        key = rb'"(?!(?i:' + names + rb')")[\x20\x21\x23-\x5b\x5d-\x7f]*+"'
        self.unknown_run = re.compile(rb"(?:" + key + _W + rb":" + _W + _ITEM + _W + rb"," + _W + rb")" + _MORE)

    def find(self, key: str) -> tuple[str, str, GoType] | None:
        return self.exact.get(key) or self.folded.get(_fold(key))


class _Decoder:
    """Go's decodeState over the bytes of a value the scanner accepted."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.struct = ""  # the Go struct and field path of the value being decoded,
        self.fields: list[str] = []  # for UnmarshalTypeError

    def fail(self, pos: int, typ: GoType, number: str | None = None) -> _TypeError:
        c = self.data[pos]
        if c in b"[{":
            offset = pos + 1  # Go reports containers just past the bracket
        else:
            offset = _skip(self.data, pos)  # and scalars just past their end
        value = _KIND.get(c, "number") if number is None else "number " + number
        return _TypeError(value, typ.go, offset, self.struct, list(self.fields))

    def value(self, pos: int, typ: GoType, cur: Any) -> tuple[Any, int]:
        """(decoded value, end) for the value at ``pos`` into ``typ`` over ``cur``."""
        data = self.data
        c = data[pos]
        if c == 0x6E:  # null: a no-op, except nil for slices and pointers
            return (None if isinstance(typ, (Slice, Ptr)) else cur), pos + 4
        if isinstance(typ, Ptr):
            return self.value(pos, typ.elem, cur if cur is not None else typ.elem.zero())
        if isinstance(typ, Struct):
            if c != 0x7B:
                raise self.fail(pos, typ)
            return self.struct_value(pos, typ, cur)
        if isinstance(typ, Slice):
            if c != 0x5B:
                raise self.fail(pos, typ)
            return self.slice_value(pos, typ, cur)
        if c in b"[{" or (typ is STRING) != (c == 0x22) or (typ is not STRING and c in b"tf"):
            raise self.fail(pos, typ)
        if typ is STRING:
            return _unquote(data, pos)
        end = _NUMBER.match(data, pos).end()
        text = data[pos:end].decode("ascii")
        if typ is INT:
            if _GO_INT.match(data, pos, end) and -(2**63) <= int(text) < 2**63:
                return int(text), end
            raise self.fail(pos, typ, text)
        number = float(text)
        if number in (float("inf"), float("-inf")):
            raise self.fail(pos, typ, text)
        return number, end

    def struct_value(self, pos: int, typ: Struct, cur: dict[str, Any]) -> tuple[Any, int]:
        data, members = self.data, typ.members
        out = dict(cur)
        pos = _WS.match(data, pos + 1).end()
        if data[pos] == 0x7D:
            return out, pos + 1
        while True:
            pos = members.unknown_run.match(data, pos).end()  # members we would only skip
            key, pos = _unquote(data, pos)
            pos = _WS.match(data, _WS.match(data, pos).end() + 1).end()  # past ':'
            hit = members.find(key)
            if hit is None:
                pos = _skip(data, pos)
            else:
                name, json_name, ftype = hit
                saved = (self.struct, len(self.fields))
                self.struct = typ.name
                self.fields.append(json_name)
                out[name], pos = self.value(pos, ftype, out[name])
                self.struct = saved[0]
                del self.fields[saved[1]:]
            pos = _WS.match(data, pos).end()
            if data[pos] == 0x7D:
                return out, pos + 1
            pos = _WS.match(data, pos + 1).end()  # past ','

    def slice_value(self, pos: int, typ: Slice, cur: list | None) -> tuple[Any, int]:
        data = self.data
        old: list[Any] = cur or []
        out: list[Any] = []
        pos = _WS.match(data, pos + 1).end()
        if data[pos] == 0x5D:
            return out, pos + 1
        while True:
            base = old[len(out)] if len(out) < len(old) else zero_value(typ.elem)
            item, pos = self.value(pos, typ.elem, base)
            out.append(item)
            pos = _WS.match(data, pos).end()
            if data[pos] == 0x5D:
                return out, pos + 1
            pos = _WS.match(data, pos + 1).end()


def decode_json(data: bytes, typ: Struct) -> dict[str, Any]:
    """Echo's JSON deserialize of ``data`` into a zero ``typ``; raises :class:`BindError`.

    Linear in ``len(data)`` (tests/bench/gobind_bench.py): under 50 ms per MiB
    for flat hostile shapes (``[1,1,…]``, whitespace, many keys), about half a
    second per MiB at worst (containers nested two deep or more cost a Python
    step each, as do large slices of structs), so the caller caps bodies
    (services/body_limit.py) and binds large ones off the event loop
    (:func:`bind_request`)."""
    # Each BindError is raised after its except block: raised inside it, it
    # would keep the scanner's or decoder's exception as __context__, and with
    # its traceback every frame's locals — the whole decoded value, tens of MiB
    # for a hostile body — for as long as anything holds the BindError.
    error: BindError | None = None
    try:
        _first_value_end(data)
    except _SyntaxError as exc:
        error = BindError(400, f"Syntax error: offset={exc.offset}, error={exc.msg}", exc.msg)
    except _EOF as exc:
        error = BindError(400, str(exc), str(exc))
    if error is not None:
        raise error
    start = _WS.match(data, 0).end()
    try:
        result, _ = _Decoder(data).value(start, typ, typ.zero())  # never reads past ``end``
    except _TypeError as e:
        error = BindError(400, f"Unmarshal type error: expected={e.typ}, got={e.value}, "
                               f"field={e.field}, offset={e.offset}", e.internal)
    if error is not None:
        raise error
    return result


# --- form and XML bodies ----------------------------------------------------------

# net/http's maxFormSize: ParseForm reads at most this much of a urlencoded body.
MAX_FORM_SIZE = 10 << 20


def _bind_xml(body: bytes, typ: Struct) -> dict[str, Any]:
    """encoding/xml into a struct of untagged string fields (elements by Go field name)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else 1
        detail = f"XML syntax error on line {line}: {exc.msg if hasattr(exc, 'msg') else exc}"
        raise BindError(400, f"Syntax error: line={line}, error={detail}", detail) from None
    out = typ.zero()
    for fname, _, ftype in typ.fields:
        if ftype is not STRING:
            continue
        for child in root:
            if child.tag == fname:
                out[fname] = "".join(child.itertext())
    return out


def is_chunked(headers: Iterable[tuple[str, str]]) -> bool:
    """The request's length is unknown to Go (``ContentLength == -1``)."""
    return any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)


def echo_bind(body: bytes, content_type: str, typ: Struct, *, query: bytes = b"",
              method: str = "POST", chunked: bool = False) -> dict[str, Any]:
    """``c.Bind(&req)`` for a POST/PUT/PATCH body: the bound struct as a dict.

    Raises :class:`BindError`, whose ``str()`` is Echo's ``err.Error()``.
    ``chunked``: Echo skips binding only when ``ContentLength == 0``; a chunked
    request's length is unknown, so an empty chunked body is decoded, and fails
    with ``EOF`` as JSON or XML (see :func:`is_chunked`).
    """
    if not body and not chunked:
        return typ.zero()
    mediatype = content_type.split(";", 1)[0].strip()
    if mediatype == "application/json":
        return decode_json(body, typ)
    if mediatype in ("application/xml", "text/xml"):
        if not body.strip():  # encoding/xml's Decode finds no token: io.EOF
            raise BindError(400, "EOF", "EOF")
        return _bind_xml(body, typ)
    if mediatype == "application/x-www-form-urlencoded":
        problem = None
        if method in ("POST", "PUT", "PATCH"):
            problem = "http: POST too large" if len(body) > MAX_FORM_SIZE else first_error(body)
        problem = problem or first_error(query)
        if problem:
            raise BindError(400, problem, problem)
        return typ.zero()
    if mediatype == "multipart/form-data":
        return typ.zero()
    raise BindError(415, "Unsupported Media Type")



# --- binding a request, off the event loop when it is large ----------------------

# Up to this size a bind takes about a millisecond at most, whatever the JSON:
# it runs inline (the legacy's own bodies are a few dozen bytes). Larger bodies
# go to a worker thread.
INLINE_BIND_BYTES = 1 << 10
# Binds in worker threads at once. One: a bind holds the GIL while it runs, and
# two CPU-bound threads only trade it between themselves while the event loop
# waits longer for its turn (measured with tests/test_body_limits_wire.py's
# attack: /ping's median 8 ms with one, 20-25 ms with two, and fewer binds
# done). Others wait, holding nothing but their (capped) body.
BIND_THREADS = 1
_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None


def _bind_slots() -> asyncio.Semaphore:
    """One semaphore per event loop (tests run several loops in one process)."""
    global _slots
    loop = asyncio.get_running_loop()
    if _slots is None or _slots[0] is not loop:
        _slots = (loop, asyncio.Semaphore(BIND_THREADS))
    return _slots[1]


async def bind_request(request: Request, typ: Struct) -> dict[str, Any]:
    """``c.Bind(&req)`` for a POST/PUT/PATCH request: read the body, bind it.

    Raises :class:`BindError` (``str()`` is Echo's ``err.Error()``). The body
    read is capped by the registry's guard (services/body_limit.py), which
    answers 413 itself when the cap is passed.
    """
    body = await request.body()
    args = (body, request.headers.get("content-type", ""), typ)
    options = {"query": request.scope.get("query_string", b""), "method": request.method,
               "chunked": is_chunked(request.headers.items())}
    if len(body) <= INLINE_BIND_BYTES:
        return echo_bind(*args, **options)
    async with _bind_slots():
        return await run_in_threadpool(echo_bind, *args, **options)
