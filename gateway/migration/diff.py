"""Compare the answer Go gave with the answer Python would have given.

Pure functions, no I/O: the shadow runner captures two ``Answer``s and asks
``compare`` which fields differ. Like Diffy, a route can also compare Go with
itself (``noisy_fields``) and discount whatever differs there — timestamps,
generated IDs — so what is left is what the migration changed.

What counts as "the same answer" is what the unchanged frontend would notice:

* the status, and the configured headers by value (``content-type`` by default);
* the *shape* of ``Set-Cookie``: which cookie names are set and with which
  attributes — never the values, which are per-session secrets by design;
* the body: structurally when both sides are JSON (ignored paths removed,
  ``unordered`` arrays compared as multisets, each differing leaf reported by
  its JSON path), byte for byte otherwise.

Field names (``Difference.field``) are stable strings — ``status``,
``header:content-type``, ``set-cookie:session``, ``body:$.items[3].name``,
``body`` — so they double as the keys of a route's noise set and of the
"top differences" on the status page. Elements of an unordered array have no
position, so their paths say ``[*]`` (``body:$.tags[*]``).

Everything rendered is redacted: cookie values never appear, secret-looking
keys show only their length, e-mail addresses and random-looking tokens —
in values, keys, headers and non-JSON bodies alike — only their shape
(``<email len=15>``, ``<token len=43>``: gateway/redact.py), long strings
are cut. Samples end up on the status page, in status.json and in the
metrics sample store, so they must never carry a user's data.
"""
from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.context import RawHeaders
from gateway.redact import mask_personal, mask_slice

from .jsonpath import WILD, Pattern, Segment, any_match, parse_json_path, render_path, render_tokens

MAX_TEXT = 200  # characters of any one string before "…(+N chars)"
MAX_RENDER = 300  # characters of a whole rendered value (room for one cut string plus its key)
MAX_DIFFERENCES = 100  # per compare: a shifted 10k-element list must not make 10k entries
MORE_FIELD = "body:+more"  # the entry that says the list above was cut at the limit
MISSING = "<missing>"


# -- the interface -------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One captured HTTP answer."""

    status: int
    headers: RawHeaders  # raw, as sent (repeated Set-Cookie stay separate)
    body: bytes  # possibly truncated by the caller


@dataclass(frozen=True)
class DiffRules:
    """Per route, from routes.yaml. Paths are validated (and compiled) here, so a
    typo fails at config load with the path in the message, not per request."""

    ignore: tuple[str, ...] = ()  # "$.ID", "$[*].CreatedAt", "$..created_at"
    unordered: tuple[str, ...] = ()  # arrays compared as multisets: "$", "$.tags"
    headers: tuple[str, ...] = ("content-type",)  # compared by value, case-insensitive names
    _ignore: tuple[Pattern, ...] = field(init=False, repr=False, compare=False)
    _unordered: tuple[Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: assign through object.__setattr__ (tuples also accept lists from YAML)
        object.__setattr__(self, "ignore", tuple(self.ignore))
        object.__setattr__(self, "unordered", tuple(self.unordered))
        object.__setattr__(self, "headers", tuple(h.lower() for h in self.headers))
        object.__setattr__(self, "_ignore", tuple(parse_json_path(p) for p in self.ignore))
        object.__setattr__(self, "_unordered", tuple(parse_json_path(p) for p in self.unordered))


@dataclass(frozen=True)
class Difference:
    field: str  # "status", "header:content-type", "set-cookie:session", "body:$.Name", "body"
    go: str  # short rendering, redacted
    python: str


def compare(
    go: Answer,
    py: Answer,
    rules: DiffRules,
    noise: frozenset[str] = frozenset(),
    *,
    limit: int = MAX_DIFFERENCES,
) -> list[Difference]:
    """Every difference the frontend could notice, minus ``noise``.

    A field in ``noise`` also discounts everything under it (``body:$.meta``
    covers ``body:$.meta.ts``), and a noise entry written with ``[*]`` covers
    every index (see ``generalise_field``). At most ``limit`` differences are
    listed; when more exist the last entry has field ``MORE_FIELD``.
    """
    out: list[Difference] = []
    for diff in _all_differences(go, py, rules):
        if noise and _is_noise(diff.field, noise):
            continue
        if len(out) == limit:
            out.append(Difference(MORE_FIELD, f"more differences not listed (limit {limit})", ""))
            break
        out.append(diff)
    return out


def noisy_fields(go1: Answer, go2: Answer, rules: DiffRules) -> frozenset[str]:
    """Fields that differ between two Go answers to the same request: noise.

    Concrete paths, as ``compare`` names them; pass them through
    ``generalise_field`` to discount a field at every index of a list.
    """
    return frozenset(d.field for d in _all_differences(go1, go2, rules))


def render_diff(diffs: Sequence[Difference]) -> str:
    """A readable multi-line diff: one ``@ field`` block per difference."""
    if not diffs:
        return "no differences\n"
    blocks = [f"@ {d.field}\n- go:     {d.go}\n+ python: {d.python}\n" for d in diffs]
    return "".join(blocks)


_INDEX_RE = re.compile(r"\[\d+\]")


def generalise_field(field_name: str) -> str:
    """``body:$.items[3].ts`` → ``body:$.items[*].ts``: the same field in every element."""
    return _INDEX_RE.sub("[*]", field_name) if field_name.startswith("body:$") else field_name


# -- redaction and rendering ---------------------------------------------------

_SECRET_EXACT = frozenset({"key", "password", "token", "secret", "apikey", "csrftoken"})
# Suffixes catch the obvious relatives (access_token, client_secret, x-api-key,
# hashedPassword) that the frontend's payloads and Go's structs actually use.
_SECRET_SUFFIXES = ("password", "passwd", "token", "secret", "apikey")
_SECRET_HEADERS = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})


def is_secret_name(name: str) -> bool:
    norm = name.lower().replace("_", "").replace("-", "")
    return norm in _SECRET_EXACT or norm.endswith(_SECRET_SUFFIXES)


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def _shown(text: str, limit: int = MAX_TEXT) -> str:
    """A string from an answer as a sample shows it: personal data masked, cut at ``limit``.

    Masked on the slice with its surroundings (``mask_slice``), so an address
    the cut runs through is still masked whole."""
    head = mask_slice(text, 0, min(len(text), limit))
    return head if len(text) <= limit else f"{head}…(+{len(text) - limit} chars)"


def _redacted(value: Any) -> str:
    size = len(value) if isinstance(value, str) else len(json.dumps(value))
    return f"<redacted len={size}>"


def _scrub(value: Any) -> Any:
    """A copy safe to show: secret keys' values replaced, personal data masked
    (keys too: a map keyed by e-mail address), long strings cut."""
    if isinstance(value, dict):
        return {mask_personal(k): _redacted(v) if is_secret_name(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _shown(value)
    return value


def render_value(value: Any, path: Sequence[Segment] = ()) -> str:
    """One JSON value as a short, redacted, single-line string."""
    if value is _MISSING:
        return MISSING
    if value is _IGNORED:
        return "<ignored>"
    last_key = next((s for s in reversed(path) if isinstance(s, str)), None)
    if last_key is not None and is_secret_name(last_key):
        return json.dumps(_redacted(value))
    return _cut(json.dumps(_scrub(value), ensure_ascii=False, default=_unjsonable), MAX_RENDER)


def _unjsonable(obj: object) -> str:
    return "<ignored>" if obj is _IGNORED else str(obj)


# -- the comparison ------------------------------------------------------------

_MISSING = object()  # a key or element one side doesn't have
_IGNORED = object()  # an array element an ignore path removed: equal to anything


def _all_differences(go: Answer, py: Answer, rules: DiffRules) -> Iterator[Difference]:
    if go.status != py.status:
        yield Difference("status", str(go.status), str(py.status))
    yield from _header_differences(go.headers, py.headers, rules.headers)
    yield from _cookie_differences(go.headers, py.headers)
    yield from _body_differences(go, py, rules)


def _values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


def _normal_header(name: bytes, values: list[bytes]) -> str | None:
    if not values:
        return None
    text = ", ".join(v.decode("latin-1").strip() for v in values)
    if name == b"content-type":
        # "application/json; charset=UTF-8" (Go's echo) and "application/json"
        # (Starlette) mean the same: JSON is UTF-8 by definition (RFC 8259 §8.1).
        params = [p.strip().lower() for p in text.split(";")]
        if params[0] == "application/json":
            params = [p for p in params if p.replace(" ", "") != "charset=utf-8"]
        text = "; ".join(params)
    return text


def _header_differences(go: RawHeaders, py: RawHeaders, names: Iterable[str]) -> Iterator[Difference]:
    for name in names:
        raw = name.lower().encode("latin-1")
        if raw == b"set-cookie":
            continue  # compared by shape below, never by value
        g, p = _normal_header(raw, _values(go, raw)), _normal_header(raw, _values(py, raw))
        if g != p:
            yield _difference(f"header:{name}", _render_header(raw, g), _render_header(raw, p))


def _render_header(name: bytes, value: str | None) -> str:
    if value is None:
        return MISSING
    if name in _SECRET_HEADERS or is_secret_name(name.decode("latin-1")):
        return f"<redacted len={len(value)}>"
    return json.dumps(_shown(value))


# Set-Cookie: names and attributes only. Expires is compared by presence: its
# value is "now + N", which differs between any two answers by construction.
_COOKIE_FLAGS = ("httponly", "secure")
_COOKIE_VALUED = ("path", "domain", "max-age", "samesite")
_ATTR_NAMES = {"path": "Path", "domain": "Domain", "max-age": "Max-Age", "expires": "Expires",
               "httponly": "HttpOnly", "secure": "Secure", "samesite": "SameSite"}


def _cookie_shape(header: bytes) -> tuple[str, str]:
    """``(name, "Path=/; Max-Age=60; Expires=<set>; HttpOnly")`` — no value."""
    text = header.decode("latin-1")
    first, *attrs = text.split(";")
    name = first.split("=", 1)[0].strip()
    seen: dict[str, str | None] = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        key = key.strip().lower()
        val = val.strip()
        if key == "domain":
            val = val.lower().lstrip(".")  # a leading dot is ignored (RFC 6265 §5.2.3)
        elif key == "samesite":
            val = val.lower()
        if key in _COOKIE_VALUED:
            seen[key] = val
        elif key == "expires":
            seen[key] = "<set>"
        elif key in _COOKIE_FLAGS:
            seen[key] = None
    parts = [f"{_ATTR_NAMES[k]}={seen[k]}" if seen[k] is not None else _ATTR_NAMES[k]
             for k in ("path", "domain", "max-age", "expires", "httponly", "secure", "samesite") if k in seen]
    return name, "; ".join(parts)


def _cookies(headers: RawHeaders) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in _values(headers, b"set-cookie"):
        name, shape = _cookie_shape(value)
        out.setdefault(name, []).append(shape)
    return out


def _cookie_differences(go: RawHeaders, py: RawHeaders) -> Iterator[Difference]:
    g, p = _cookies(go), _cookies(py)
    for name in sorted(g.keys() | p.keys()):
        if g.get(name) != p.get(name):
            yield Difference(f"set-cookie:{name}", _render_cookie(name, g.get(name)), _render_cookie(name, p.get(name)))


def _render_cookie(name: str, shapes: list[str] | None) -> str:
    if shapes is None:
        return MISSING
    return " | ".join(_cut(f"{name}=<value>" + (f"; {s}" if s else "")) for s in shapes)


# -- bodies --------------------------------------------------------------------


def _decoded_body(answer: Answer) -> bytes:
    """The body as the browser sees it: undo gzip/deflate (the forwarder passes
    Go's encoded bytes through; Python's in-process answer is usually plain)."""
    encoding = b",".join(_values(answer.headers, b"content-encoding")).strip().lower()
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        wbits = 47 if encoding != b"deflate" else 15  # 47: gzip or zlib header, auto
        try:
            # decompressobj, not decompress: a body the caller truncated still
            # yields the prefix it has.
            return zlib.decompressobj(wbits).decompress(answer.body)
        except zlib.error:
            return answer.body
    return answer.body


def _looks_json(answer: Answer, body: bytes) -> bool:
    ctype = b",".join(_values(answer.headers, b"content-type")).lower()
    if b"json" in ctype.split(b";")[0]:
        return True
    # Untyped or mistyped: only bodies that start like a JSON document, so a
    # text/plain "1" and "1.0" stay different bytes.
    return body.lstrip()[:1] in (b"{", b"[", b'"')


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return _MISSING


def _body_differences(go: Answer, py: Answer, rules: DiffRules) -> Iterator[Difference]:
    gb, pb = _decoded_body(go), _decoded_body(py)
    if gb == pb:
        return
    if _looks_json(go, gb) and _looks_json(py, pb):
        g, p = _parse_json(gb), _parse_json(pb)
        if g is not _MISSING and p is not _MISSING:
            yield from _json_differences(_normalise(g, (), rules), _normalise(p, (), rules), (), rules)
            return
    yield _difference("body", *_byte_previews(gb, pb))


def _normalise(value: Any, path: tuple[Segment, ...], rules: DiffRules) -> Any:
    """Ignored paths removed, integral floats as ints (Go writes 1, Python 1.0),
    unordered arrays sorted by canonical text, bottom-up so nesting works."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            child = (*path, k)
            if not (rules._ignore and any_match(rules._ignore, child)):
                out[k] = _normalise(v, child, rules)
        return out
    if isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            child = (*path, i)
            items.append(_IGNORED if rules._ignore and any_match(rules._ignore, child) else _normalise(v, child, rules))
        if rules._unordered and any_match(rules._unordered, path):
            items = sorted((v for v in items if v is not _IGNORED), key=_canonical)
        return items
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=lambda o: "\x00ignored")


def _same_scalar(a: Any, b: Any) -> bool:
    # True == 1 in Python, but not in JSON.
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def _json_differences(g: Any, p: Any, path: tuple[Segment, ...], rules: DiffRules) -> Iterator[Difference]:
    if g is _IGNORED or p is _IGNORED:
        return
    if isinstance(g, dict) and isinstance(p, dict):
        for k in [*g, *(k for k in p if k not in g)]:
            yield from _json_differences(g.get(k, _MISSING), p.get(k, _MISSING), (*path, k), rules)
    elif isinstance(g, list) and isinstance(p, list):
        if rules._unordered and any_match(rules._unordered, path):
            yield from _multiset_differences(g, p, path, rules)
        else:
            for i in range(max(len(g), len(p))):
                gi = g[i] if i < len(g) else _MISSING
                pi = p[i] if i < len(p) else _MISSING
                yield from _json_differences(gi, pi, (*path, i), rules)
    elif isinstance(g, (dict, list)) or isinstance(p, (dict, list)) or not _same_scalar(g, p):
        yield _difference(f"body:{_field_path(path)}", render_value(g, path), render_value(p, path))


def _field_path(path: Sequence[Segment]) -> str:
    """The JSON path as a field name, keys masked like values: field names are
    metrics labels and status-page rows (``$.byEmail["<email len=15>"]``)."""
    return render_path([mask_personal(s) if isinstance(s, str) else s for s in path])


def _difference(field_name: str, go: str, python: str) -> Difference:
    if go == python:
        # Masking (or cutting) hid what differs; say so rather than show two equal lines.
        python += "  (differs from go; masked)"
    return Difference(field_name, go, python)


def _multiset_differences(g: list, p: list, path: tuple[Segment, ...], rules: DiffRules) -> Iterator[Difference]:
    """Elements only one side has; leftovers are paired in sorted order so two
    records that differ in one field report that field, not two whole records."""
    only_g = _unmatched(g, p)
    only_p = _unmatched(p, g)
    child = (*path, WILD)
    for i in range(max(len(only_g), len(only_p))):
        gi = only_g[i] if i < len(only_g) else _MISSING
        pi = only_p[i] if i < len(only_p) else _MISSING
        yield from _json_differences(gi, pi, child, rules)


def _unmatched(mine: list, theirs: list) -> list:
    """Elements of ``mine`` left over once each finds an equal partner in ``theirs``."""
    partners = Counter(map(_canonical, theirs))
    out = []
    for v in mine:
        key = _canonical(v)
        if partners[key] > 0:
            partners[key] -= 1
        else:
            out.append(v)
    return out


def _printable(chunk: bytes) -> str | None:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = chunk.decode("utf-8", errors="replace")
        if text.count("\ufffd") > 2:  # binary, or cut mid-character more than at the ends
            return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


# Non-JSON bodies (forms, HTML, text) can carry secrets as key=value too.
_SECRET_TEXT_RE = re.compile(
    r"""(?i)((?:api[_-]?key|key|password|passwd|token|secret|csrf[_-]?token)["']?\s*[=:]\s*["']?)[^"'&\s,;<]+"""
)


def _byte_previews(g: bytes, p: bytes, window: int = 48) -> tuple[str, str]:
    at = next((i for i, (a, b) in enumerate(zip(g, p)) if a != b), min(len(g), len(p)))
    start = max(0, at - 16)
    return _byte_preview(g, start, window, at), _byte_preview(p, start, window, at)


def _byte_preview(body: bytes, start: int, window: int, at: int) -> str:
    # Masked on the bytes around the window too (latin-1 maps bytes to
    # characters one to one, and addresses and tokens are ASCII), so one the
    # window cuts through is masked whole.
    chunk = mask_slice(body.decode("latin-1"), start, start + window).encode("latin-1")
    text = _printable(chunk)
    if text is not None:
        shown = json.dumps(_SECRET_TEXT_RE.sub(r"\1<redacted>", text), ensure_ascii=False)
    else:
        shown = "hex " + chunk.hex()
    before = "…" if start > 0 else ""
    after = "…" if start + window < len(body) else ""
    return f"{len(body)} bytes, first difference at byte {at}: {before}{shown}{after}"


# -- noise ---------------------------------------------------------------------


def _is_noise(field_name: str, noise: frozenset[str]) -> bool:
    return any(a in noise for a in _ancestors(field_name))


def _ancestors(field_name: str) -> Iterator[str]:
    """The field, every field above it, and their ``[*]`` forms."""
    yield field_name
    if not field_name.startswith("body:"):
        return
    if field_name.startswith("body:$"):
        try:
            tokens = parse_json_path(field_name[len("body:"):])
        except ValueError:
            tokens = ()
        for n in range(len(tokens), -1, -1):
            text = "body:" + render_tokens(tokens[:n])
            yield text
            yield generalise_field(text)
    yield "body"
