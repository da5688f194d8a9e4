"""A small JSONPath subset for diff rules: ``$ .name .* [n] [*] ["name"] ..name``.

Paths in routes.yaml (``diff.ignore``, ``diff.unordered``) are parsed once, at
config load, so a typo fails there with the path in the message. A concrete
location inside a JSON document is a tuple of segments: ``str`` (object key),
``int`` (array index) or ``WILD`` (an element of an unordered array, rendered
``[*]``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any


class _Wild:
    def __repr__(self) -> str:
        return "WILD"


WILD = _Wild()
Segment = Any  # str | int | _Wild
Token = tuple[str, Any]  # ("key", name|"*") ("index", n) ("any_index", None) ("descend", name|"*")
Pattern = tuple[Token, ...]

_TOKEN_RE = re.compile(
    r"""\.\.(?P<descend>[A-Za-z_$][\w$-]*|\*)"""
    r"""|\.(?P<key>[A-Za-z_$][\w$-]*|\*)"""
    r"""|\[(?P<index>\d+)\]"""
    r"""|\[(?P<any>\*)\]"""
    r"""|\[(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\]"""
)
_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_$][\w$-]*$")


def parse_json_path(text: str) -> Pattern:
    """Parse a JSON path; ValueError says where it stops making sense."""
    if not text.startswith("$"):
        raise ValueError(f"JSON path {text!r} must start with '$' (e.g. '$.ID', '$[*].CreatedAt')")
    tokens: list[Token] = []
    pos = 1
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ValueError(
                f"JSON path {text!r}: can't read {text[pos:]!r} at offset {pos} "
                "(supported: .name .* [n] [*] [\"name\"] ..name)"
            )
        if m["descend"] is not None:
            tokens.append(("descend", m["descend"]))
        elif m["key"] is not None:
            tokens.append(("key", m["key"]))
        elif m["index"] is not None:
            tokens.append(("index", int(m["index"])))
        elif m["any"] is not None:
            tokens.append(("any_index", None))
        else:
            quoted = m["quoted"]
            name = json.loads(quoted) if quoted[0] == '"' else quoted[1:-1].replace("\\'", "'")
            tokens.append(("key", name))
        pos = m.end()
    return tuple(tokens)


def matches(pattern: Pattern, path: Sequence[Segment], ti: int = 0, si: int = 0) -> bool:
    while ti < len(pattern):
        kind, arg = pattern[ti]
        if kind == "descend":
            # ..name: the key may sit any number of segments further down.
            return any(
                isinstance(path[j], str) and arg in ("*", path[j]) and matches(pattern, path, ti + 1, j + 1)
                for j in range(si, len(path))
            )
        if si >= len(path):
            return False
        seg = path[si]
        if kind == "key":
            ok = isinstance(seg, str) and arg in ("*", seg)
        elif kind == "index":
            ok = type(seg) is int and seg == arg
        else:  # any_index
            ok = type(seg) is int or seg is WILD
        if not ok:
            return False
        ti, si = ti + 1, si + 1
    return si == len(path)


def any_match(patterns: Iterable[Pattern], path: Sequence[Segment]) -> bool:
    return any(matches(p, path) for p in patterns)


def render_path(path: Sequence[Segment]) -> str:
    parts = ["$"]
    for seg in path:
        if seg is WILD:
            parts.append("[*]")
        elif type(seg) is int:
            parts.append(f"[{seg}]")
        elif _PLAIN_KEY_RE.match(seg):
            parts.append(f".{seg}")
        else:
            parts.append(f"[{json.dumps(seg, ensure_ascii=False)}]")
    return "".join(parts)


def render_tokens(tokens: Pattern) -> str:
    path: list[Segment] = []
    for kind, arg in tokens:
        path.append(WILD if kind == "any_index" else arg)
    return render_path(path)
