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

This module has no feature-specific code: the api_keys and llm features
describe their structs with :class:`Struct` / :class:`Slice` / :class:`Ptr`.
(It belongs in ``services/common`` once a second team needs it.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Union

from .goquery import first_error

__all__ = [
    "BindError", "Struct", "Slice", "Ptr", "STRING", "FLOAT64", "INT", "echo_bind",
    "decode_json", "go_quote", "is_chunked",
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
    fields: tuple[tuple[str, str, "GoType"], ...]  # (Go field name, json name, type)

    @property
    def go(self) -> str:
        return f"{self.package}.{self.name}"

    def zero(self) -> dict[str, Any]:
        return {f: zero_value(t) for f, _, t in self.fields}


@dataclass(frozen=True)
class Slice:
    elem: "GoType"

    @property
    def go(self) -> str:
        return "[]" + self.elem.go


@dataclass(frozen=True)
class Ptr:
    elem: Struct

    @property
    def go(self) -> str:
        return "*" + self.elem.go


GoType = Union[Scalar, Struct, Slice, Ptr]


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


# --- Go's strconv.Quote, for error texts ----------------------------------------

_GO_CTRL = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _go_quote_rune(r: int) -> str:
    if r == 0x5C:
        return "\\\\"
    if r < 0x20 or r == 0x7F:
        return _GO_CTRL.get(r, "\\x%02x" % r)
    if 0x80 <= r <= 0xA0 or r == 0xAD:
        return "\\u%04x" % r
    return chr(r)


def go_quote(s: str) -> str:
    """``strconv.Quote`` for the Latin-1/ASCII texts that appear in binder errors."""
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        else:
            out.append(_go_quote_rune(ord(ch)) if ord(ch) < 0x100 else ch)
    return '"' + "".join(out) + '"'


def _quote_char(c: int) -> str:
    """encoding/json's quoteChar(byte)."""
    if c == 0x27:
        return "'\\''"
    if c == 0x22:
        return "'\"'"
    return "'" + _go_quote_rune(c) + "'"


# --- Go's JSON scanner (scanner.go), to find the first value or the error -----

class _SyntaxError(Exception):
    def __init__(self, msg: str, offset: int) -> None:
        super().__init__(msg)
        self.msg, self.offset = msg, offset


class _EOF(Exception):
    def __init__(self, unexpected: bool) -> None:
        super().__init__("unexpected EOF" if unexpected else "EOF")


_SPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]*')

# scanner states
(S_BEGIN_VALUE_OR_EMPTY, S_BEGIN_VALUE, S_BEGIN_STRING_OR_EMPTY, S_BEGIN_STRING, S_END_VALUE,
 S_END_TOP, S_IN_STRING, S_IN_STRING_ESC, S_U, S_U1, S_U12, S_U123, S_NEG, S_1, S_0, S_DOT,
 S_DOT0, S_E, S_ESIGN, S_E0, S_LIT) = range(21)
P_OBJECT_KEY, P_OBJECT_VALUE, P_ARRAY_VALUE = range(3)

_LITERALS = {ord("t"): (b"true", "true"), ord("f"): (b"false", "false"), ord("n"): (b"null", "null")}


def _first_value_end(data: bytes) -> int:
    """Index just past Go's Decoder's first JSON value in ``data``.

    Raises :class:`_SyntaxError` (Go's message and offset) or :class:`_EOF`.
    """
    stack: list[int] = []
    state = S_BEGIN_VALUE
    lit: bytes = b""
    lit_name = ""
    lit_pos = 0
    i, n = 0, len(data)

    def err(c: int, context: str) -> _SyntaxError:
        return _SyntaxError(f"invalid character {_quote_char(c)} {context}", i + 1)

    while i < n:
        c = data[i]
        # Each branch either consumes c (i += 1 / continue) or re-dispatches.
        if state == S_IN_STRING:
            m = _STRING_RUN.match(data, i)
            i = m.end()
            if i >= n:
                break
            c = data[i]
            if c == 0x22:
                state = S_END_VALUE
            elif c == 0x5C:
                state = S_IN_STRING_ESC
            else:
                raise err(c, "in string literal")
            i += 1
            continue
        if state == S_IN_STRING_ESC:
            if c in b'bfnrt\\/"':
                state = S_IN_STRING
            elif c == 0x75:
                state = S_U
            else:
                raise err(c, "in string escape code")
            i += 1
            continue
        if state in (S_U, S_U1, S_U12, S_U123):
            if c not in _HEX:
                raise err(c, "in \\u hexadecimal character escape")
            state = S_IN_STRING if state == S_U123 else state + 1
            i += 1
            continue
        if state == S_LIT:
            if c != lit[lit_pos]:
                raise err(c, f"in literal {lit_name} (expecting {_quote_char(lit[lit_pos])})")
            lit_pos += 1
            if lit_pos == len(lit):
                state = S_END_VALUE
            i += 1
            continue
        if state == S_NEG:
            if c == 0x30:
                state = S_0
            elif 0x31 <= c <= 0x39:
                state = S_1
            else:
                raise err(c, "in numeric literal")
            i += 1
            continue
        if state == S_1:
            if c in _DIGITS:
                i += 1
                continue
            state = S_0  # fall through to state0 with the same byte
        if state == S_0:
            if c == 0x2E:
                state = S_DOT
                i += 1
                continue
            if c in b"eE":
                state = S_E
                i += 1
                continue
            state = S_END_VALUE
        if state == S_DOT:
            if c not in _DIGITS:
                raise err(c, "after decimal point in numeric literal")
            state = S_DOT0
            i += 1
            continue
        if state == S_DOT0:
            if c in _DIGITS:
                i += 1
                continue
            if c in b"eE":
                state = S_E
                i += 1
                continue
            state = S_END_VALUE
        if state == S_E:
            state = S_ESIGN
            if c in b"+-":
                i += 1
                continue
        if state == S_ESIGN:
            if c not in _DIGITS:
                raise err(c, "in exponent of numeric literal")
            state = S_E0
            i += 1
            continue
        if state == S_E0:
            if c in _DIGITS:
                i += 1
                continue
            state = S_END_VALUE
        if state == S_END_VALUE:
            if not stack:
                return i  # completed top-level value before this byte
            if c in _SPACE:
                i += 1
                continue
            ps = stack[-1]
            if ps == P_OBJECT_KEY:
                if c != 0x3A:
                    raise err(c, "after object key")
                stack[-1] = P_OBJECT_VALUE
                state = S_BEGIN_VALUE
            elif ps == P_OBJECT_VALUE:
                if c == 0x2C:
                    stack[-1] = P_OBJECT_KEY
                    state = S_BEGIN_STRING
                elif c == 0x7D:
                    stack.pop()
                    if not stack:
                        return i + 1
                else:
                    raise err(c, "after object key:value pair")
            else:
                if c == 0x2C:
                    state = S_BEGIN_VALUE
                elif c == 0x5D:
                    stack.pop()
                    if not stack:
                        return i + 1
                else:
                    raise err(c, "after array element")
            i += 1
            continue
        if state == S_BEGIN_STRING_OR_EMPTY:
            if c in _SPACE:
                i += 1
                continue
            if c == 0x7D:
                stack[-1] = P_OBJECT_VALUE
                state = S_END_VALUE
                continue
            state = S_BEGIN_STRING
        if state == S_BEGIN_STRING:
            if c in _SPACE:
                i += 1
                continue
            if c != 0x22:
                raise err(c, "looking for beginning of object key string")
            state = S_IN_STRING
            i += 1
            continue
        if state == S_BEGIN_VALUE_OR_EMPTY:
            if c in _SPACE:
                i += 1
                continue
            if c == 0x5D:
                state = S_END_VALUE
                continue
            state = S_BEGIN_VALUE
        # S_BEGIN_VALUE
        if c in _SPACE:
            i += 1
            continue
        if c == 0x7B:
            if len(stack) >= MAX_NESTING_DEPTH:
                raise _SyntaxError("exceeded max depth", i + 1)
            stack.append(P_OBJECT_KEY)
            state = S_BEGIN_STRING_OR_EMPTY
        elif c == 0x5B:
            if len(stack) >= MAX_NESTING_DEPTH:
                raise _SyntaxError("exceeded max depth", i + 1)
            stack.append(P_ARRAY_VALUE)
            state = S_BEGIN_VALUE_OR_EMPTY
        elif c == 0x22:
            state = S_IN_STRING
        elif c == 0x2D:
            state = S_NEG
        elif c == 0x30:
            state = S_0
        elif 0x31 <= c <= 0x39:
            state = S_1
        elif c in _LITERALS:
            lit, lit_name = _LITERALS[c]
            lit_pos = 1
            state = S_LIT
        else:
            raise err(c, "looking for beginning of value")
        i += 1
    # EOF: a pending top-level number/literal completes on an invented space.
    if not stack and state in (S_END_VALUE, S_1, S_0, S_DOT0, S_E0):
        return n
    raise _EOF(unexpected=any(b not in _SPACE for b in data))


# --- parse the (valid) first value into nodes -------------------------------------

@dataclass
class Node:
    kind: str      # "object", "array", "string", "number", "bool", "null"
    offset: int    # Go's UnmarshalTypeError offset for this value
    value: Any = None
    items: list = field(default_factory=list)  # object: [(key, Node)], array: [Node]


_ESC = {ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t",
        ord("\\"): "\\", ord("/"): "/", ord('"'): '"'}
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WS = re.compile(rb"[ \t\r\n]*")


def _decode_utf8_go(raw: bytes) -> str:
    """Go's UTF-8 decoding: every byte of an invalid sequence becomes U+FFFD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i, n = [], 0, len(raw)
    while i < n:
        b = raw[i]
        size = 1 if b < 0x80 else 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        if size:
            try:
                out.append(raw[i:i + size].decode("utf-8"))
                i += size
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        i += 1
    return "".join(out)


def _unquote(data: bytes, start: int) -> tuple[str, int]:
    """Decode the string literal at ``data[start] == '"'``; returns (text, end)."""
    i = start + 1
    parts: list[str] = []
    while True:
        m = _STRING_RUN.match(data, i)
        if m.end() > i:
            parts.append(_decode_utf8_go(data[i:m.end()]))
        i = m.end()
        c = data[i]
        if c == 0x22:
            return "".join(parts), i + 1
        # backslash (the scanner guaranteed validity)
        e = data[i + 1]
        if e != 0x75:
            parts.append(_ESC[e])
            i += 2
            continue
        r = int(data[i + 2:i + 6], 16)
        i += 6
        if 0xD800 <= r < 0xE000:
            if 0xD800 <= r < 0xDC00 and data[i:i + 2] == b"\\u":
                try:
                    r2 = int(data[i + 2:i + 6], 16)
                except ValueError:
                    r2 = -1
                if 0xDC00 <= r2 < 0xE000:
                    parts.append(chr(0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00)))
                    i += 6
                    continue
            parts.append("\ufffd")
            continue
        parts.append(chr(r))


def _parse(data: bytes, end: int) -> Node:
    """Nodes for the syntactically valid value in ``data[:end]`` (iteratively,
    so Go's 10000-deep nesting does not hit Python's recursion limit)."""
    pos = 0
    stack: list[list[Any]] = []  # [container node, pending object key]
    while True:
        pos = _WS.match(data, pos).end()
        c = data[pos]
        node: Node | None = None
        if stack and stack[-1][0].kind == "object" and stack[-1][1] is None:
            if c == 0x7D:  # "{}"
                pos += 1
                node = stack.pop()[0]
            else:
                key, pos = _unquote(data, pos)
                pos = _WS.match(data, pos).end() + 1  # the ':'
                stack[-1][1] = key
                continue
        elif c == 0x5D:  # "[]"
            pos += 1
            node = stack.pop()[0]
        elif c == 0x7B:
            stack.append([Node("object", pos + 1), None])
            pos += 1
            continue
        elif c == 0x5B:
            stack.append([Node("array", pos + 1), None])
            pos += 1
            continue
        elif c == 0x22:
            text, pos = _unquote(data, pos)
            node = Node("string", pos, text)
        elif c in b"tf":
            pos += 4 if c == 0x74 else 5
            node = Node("bool", pos, c == 0x74)
        elif c == 0x6E:
            pos += 4
            node = Node("null", pos)
        else:
            m = _NUMBER.match(data, pos)
            pos = m.end()
            node = Node("number", pos, m.group().decode("ascii"))
        # attach the finished node, closing containers as they end
        while True:
            if not stack:
                return node
            top = stack[-1]
            if top[0].kind == "object":
                top[0].items.append((top[1], node))
                top[1] = None
            else:
                top[0].items.append(node)
            pos = _WS.match(data, pos).end()
            if data[pos] == 0x2C:
                pos += 1
                break
            pos += 1  # '}' or ']'
            node = stack.pop()[0]


# --- decode nodes into Go types ------------------------------------------------

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


@dataclass
class _Ctx:
    errors: list = field(default_factory=list)
    struct: str = ""
    fields: list = field(default_factory=list)

    def fail(self, value: str, typ: GoType, offset: int) -> None:
        if not self.errors:
            self.errors.append(_TypeError(value, typ.go, offset, self.struct, list(self.fields)))


def _decode(node: Node, typ: GoType, cur: Any, ctx: _Ctx) -> Any:
    if node.kind == "null":
        return None if isinstance(typ, (Slice, Ptr)) else cur
    if isinstance(typ, Ptr):
        if node.kind in ("object", "array", "string", "number", "bool"):
            return _decode(node, typ.elem, cur if cur is not None else typ.elem.zero(), ctx)
    if isinstance(typ, Struct):
        if node.kind != "object":
            ctx.fail("array" if node.kind == "array" else node.kind, typ, node.offset)
            return cur
        exact = {j: (f, t) for f, j, t in typ.fields}
        folded = {_fold(j): (f, t) for f, j, t in typ.fields}
        out = dict(cur)
        saved = (ctx.struct, len(ctx.fields))
        for key, child in node.items:
            hit = exact.get(key) or folded.get(_fold(key))
            if hit is None:
                continue
            fname, ftype = hit
            ctx.struct = typ.name
            ctx.fields.append([j for f, j, _ in typ.fields if f == fname][0])
            out[fname] = _decode(child, ftype, out[fname], ctx)
            ctx.struct = saved[0]
            del ctx.fields[saved[1]:]
        return out
    if isinstance(typ, Slice):
        if node.kind != "array":
            ctx.fail(node.kind, typ, node.offset)
            return cur
        old = list(cur or [])
        out = []
        for idx, child in enumerate(node.items):
            base = old[idx] if idx < len(old) else zero_value(typ.elem)
            out.append(_decode(child, typ.elem, base, ctx))
        return out
    # scalars
    if node.kind in ("object", "array"):
        ctx.fail(node.kind, typ, node.offset)
        return cur
    if typ is STRING:
        if node.kind != "string":
            ctx.fail(node.kind, typ, node.offset)
            return cur
        return node.value
    if node.kind != "number":
        ctx.fail(node.kind, typ, node.offset)
        return cur
    text = node.value
    if typ is INT:
        if re.fullmatch(r"-?[0-9]+", text) and -(2**63) <= int(text) < 2**63:
            return int(text)
        ctx.fail("number " + text, typ, node.offset)
        return cur
    value = float(text)
    if value in (float("inf"), float("-inf")):
        ctx.fail("number " + text, typ, node.offset)
        return cur
    return value


def decode_json(data: bytes, typ: Struct) -> dict[str, Any]:
    """Echo's JSON deserialize of ``data`` into a zero ``typ``; raises :class:`BindError`."""
    try:
        end = _first_value_end(data)
    except _SyntaxError as exc:
        raise BindError(400, f"Syntax error: offset={exc.offset}, error={exc.msg}", exc.msg) from None
    except _EOF as exc:
        raise BindError(400, str(exc), str(exc)) from None
    ctx = _Ctx()
    result = _decode(_parse(data, end), typ, typ.zero(), ctx)
    if ctx.errors:
        e = ctx.errors[0]
        raise BindError(400, f"Unmarshal type error: expected={e.typ}, got={e.value}, "
                             f"field={e.field}, offset={e.offset}", e.internal)
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

