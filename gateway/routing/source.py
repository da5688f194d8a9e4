"""Read routes.yaml safely and turn it into plain data that remembers its lines.

Config is trusted input, but a reload must never stop the gateway serving, so
every way a file can make the parser work without bound is refused up front
with a clear reason (issue 14):

* only a **regular file** is read (a symlink to one is fine: Kubernetes mounts
  ConfigMaps as a ``..data/`` symlink chain); FIFOs, devices, sockets and
  directories are refused *before* they are opened, and the file is opened
  ``O_NONBLOCK`` so one swapped in between can't block either;
* at most ``MAX_FILE_BYTES``;
* no YAML **anchors or aliases** (``&a`` / ``*a``): a 350-byte alias bomb
  expands to gigabytes, and a routes file never needs them;
* no explicit tags, at most ``MAX_DEPTH`` levels of nesting, ``MAX_NODES``
  values, ``MAX_SCALAR`` characters per value, one document;
* a cooperative ``deadline`` (checked while composing), so a reload in a
  worker thread really stops when it is given up on.

We compose the tree ourselves from libyaml's event stream (PyYAML's composer
resolves aliases, and yaml.Node trees cost ~1 KiB per value): each mapping key
and value keeps the line it came from, so a validation error on
``("routes", 2, "to")`` can name ``routes.yaml:9``.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from .problems import Problem, RoutesError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a 1,000-route file is ~60 KiB
MAX_NODES = 100_000  # every scalar, list and mapping counts one
MAX_DEPTH = 16  # routes.yaml needs 4 (routes → item → diff → ignore)
MAX_SCALAR = 4096  # characters in one value or key

Path = tuple[str | int, ...]  # ("routes", 2, "to")

_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
_RESOLVER = Resolver()
_CONSTRUCT = SafeConstructor()
_SCALAR_TAGS = {
    "tag:yaml.org,2002:null": _CONSTRUCT.construct_yaml_null,
    "tag:yaml.org,2002:bool": _CONSTRUCT.construct_yaml_bool,
    "tag:yaml.org,2002:int": _CONSTRUCT.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCT.construct_yaml_float,
}
_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFSOCK: "a socket",
}


@dataclass
class Document:
    """Plain data (dicts, lists, scalars) plus where each piece was written."""

    data: Any
    value_lines: dict[Path, int] = field(default_factory=dict)  # path → line of its value
    key_lines: dict[Path, int] = field(default_factory=dict)  # path → line of its key
    problems: list[Problem] = field(default_factory=list)  # non-fatal: duplicate keys

    def line(self, path: Path, *, key: bool = False) -> int:
        """The line of ``path`` (its key's line when ``key``), else its nearest parent's."""
        lines = self.key_lines if key else self.value_lines
        for cut in range(len(path), -1, -1):
            found = lines.get(path[:cut]) or self.value_lines.get(path[:cut])
            if found:
                return found
        return 1


def read_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, or :class:`RoutesError` saying why not."""
    name = os.fspath(path)

    def refuse(message: str) -> RoutesError:
        return RoutesError([Problem(name, 0, "<file>", message)])

    try:
        st = os.stat(name)  # follows symlinks; never blocks, whatever the file is
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise refuse(_not_regular(name, st.st_mode))
    if st.st_size > max_bytes:
        raise refuse(_too_big(st.st_size, max_bytes))
    try:
        # O_NONBLOCK: if a FIFO was swapped in since the stat, open returns at
        # once instead of waiting for a writer (and fstat below refuses it).
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(_not_regular(name, st.st_mode))
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:  # it grew after the stat
            raise refuse(_too_big(total, max_bytes, at_least=True))
        return b"".join(chunks)
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _not_regular(name: str, mode: int) -> str:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    target = os.path.realpath(name)
    via = f" ({name} points to {target})" if target != os.path.abspath(name) else ""
    return f"not a regular file: it is {kind}{via}; routes.yaml must be a plain file (a symlink to one is fine)"


def _too_big(size: int, limit: int, *, at_least: bool = False) -> str:
    return (f"file is {'at least ' if at_least else ''}{size:,} bytes; routes.yaml may be at most "
            f"{limit:,} bytes ({limit / (1 << 20):g} MiB)")


class _Fatal(Exception):
    """Stops composing: the rest of the file can't be read meaningfully."""

    def __init__(self, line: int, key: str, message: str):
        super().__init__(message)
        self.line, self.key, self.message = line, key, message


def compose(text: str, file: str, *, deadline: float | None = None) -> Document:
    """Plain data from YAML ``text``, or :class:`RoutesError` (aliases, syntax, caps)."""
    try:
        return _Composer(text, file, deadline).run()
    except _Fatal as exc:
        raise RoutesError([Problem(file, exc.line, exc.key, exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or str(exc)
        raise RoutesError([Problem(file, mark.line + 1 if mark else 1, "<yaml>", f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise RoutesError([Problem(file, 1, "<yaml>", f"invalid YAML: {exc}")]) from None


def key_path(path: Path) -> str:
    """``("routes", 2, "to")`` → ``routes[2].to``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Composer:
    def __init__(self, text: str, file: str, deadline: float | None):
        self.parser = _BASE(text)
        self.file = file
        self.deadline = deadline
        self.doc = Document(None)
        self.nodes = 0

    def run(self) -> Document:
        try:
            self._expect(yaml.StreamStartEvent)
            if self.parser.check_event(yaml.StreamEndEvent):
                return self.doc  # empty file: data None
            self._expect(yaml.DocumentStartEvent)
            self.doc.data = self._node((), 0)
            self._expect(yaml.DocumentEndEvent)
            if not self.parser.check_event(yaml.StreamEndEvent):
                event = self.parser.peek_event()
                raise _Fatal(_line(event), "<yaml>", "more than one YAML document ('---'); routes.yaml holds one")
            return self.doc
        finally:
            self.parser.dispose()

    def _expect(self, kind: type) -> yaml.Event:
        event = self.parser.get_event()
        if not isinstance(event, kind):  # pragma: no cover - libyaml guarantees the order
            raise _Fatal(_line(event), "<yaml>", f"unexpected {type(event).__name__}")
        return event

    def _count(self, event: yaml.Event, path: Path) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Fatal(_line(event), key_path(path) or "<file>",
                         f"more than {MAX_NODES:,} YAML values; routes.yaml is far larger than any route table needs")
        if self.deadline is not None and self.nodes % 1024 == 0 and time.monotonic() > self.deadline:
            raise _Fatal(_line(event), "<file>", "reading the file took too long; it is too large or complex")

    def _node(self, path: Path, depth: int) -> Any:
        event = self.parser.get_event()
        where = key_path(path) or "<file>"
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Fatal(_line(event), where, "YAML anchors and aliases (&name, *name) are not allowed in "
                                              "routes.yaml: write each value out")
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":  # "!" only says "a plain string"
            raise _Fatal(_line(event), where, f"YAML tags ({tag}) are not allowed in routes.yaml")
        self._count(event, path)
        self.doc.value_lines[path] = _line(event)
        if isinstance(event, yaml.ScalarEvent):
            return self._scalar(event, where)
        if depth >= MAX_DEPTH:
            raise _Fatal(_line(event), where, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(event, yaml.SequenceStartEvent):
            items: list[Any] = []
            while not self.parser.check_event(yaml.SequenceEndEvent):
                items.append(self._node((*path, len(items)), depth + 1))
            self.parser.get_event()
            return items
        if isinstance(event, yaml.MappingStartEvent):
            return self._mapping(path, depth)
        raise _Fatal(_line(event), where, f"unexpected {type(event).__name__}")  # pragma: no cover

    def _mapping(self, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while not self.parser.check_event(yaml.MappingEndEvent):
            key_event = self.parser.peek_event()
            where = key_path(path) or "<file>"
            if not isinstance(key_event, yaml.ScalarEvent):
                raise _Fatal(_line(key_event), where, "keys must be plain names, not lists or mappings")
            if key_event.anchor is not None or key_event.tag not in (None, "!"):
                self._node(path, depth)  # raises the anchor/tag error
            self.parser.get_event()
            self._count(key_event, path)
            name = key_event.value  # the key as written: `on:` stays "on", not True
            if len(name) > MAX_SCALAR:
                raise _Fatal(_line(key_event), where, f"a key of {len(name):,} characters; at most {MAX_SCALAR}")
            child = (*path, name)
            if name in out:
                self.doc.problems.append(Problem(self.file, _line(key_event), key_path(child), "key given twice"))
                self._node((*child, "<again>"), depth + 1)  # read and drop the second value
                continue
            self.doc.key_lines[child] = _line(key_event)
            out[name] = self._node(child, depth + 1)
        self.parser.get_event()
        return out

    def _scalar(self, event: yaml.ScalarEvent, where: str) -> Any:
        value = event.value
        if len(value) > MAX_SCALAR:
            raise _Fatal(_line(event), where, f"a value of {len(value):,} characters; at most {MAX_SCALAR}")
        if not event.implicit[0]:
            return value  # quoted: always a string
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, event.implicit)
        construct = _SCALAR_TAGS.get(tag)
        if construct is None:
            return value  # str, and timestamps etc. kept as written
        try:
            return construct(yaml.ScalarNode(tag, value))
        except (ValueError, ConstructorError) as exc:
            raise _Fatal(_line(event), where, f"cannot read {value[:40]!r}: {exc}") from None


def _line(event: yaml.Event) -> int:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else 1
