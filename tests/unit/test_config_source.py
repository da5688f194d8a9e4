"""routes.yaml that could be turned against the process is refused, quickly and readably.

Unit level (the parser); tests/test_config_hostile.py runs the same files
through a real gateway's reload.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from gateway.routing.config import RoutesError, load_config, parse_config

# 7 levels of aliases: 350 bytes that used to expand to a 34 MB error string.
ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(7)
) + "routes: *h\n"


def problems_of(text: str | bytes, **kwargs) -> list[str]:
    with pytest.raises(RoutesError) as info:
        parse_config(text, "routes.yaml", environ={}, **kwargs)
    return [str(p) for p in info.value.problems]


def test_an_alias_bomb_is_one_short_error_naming_the_line():
    started = time.monotonic()
    out = problems_of(ALIAS_BOMB)
    assert out == ["routes.yaml:1: a: YAML anchors and aliases (&name, *name) are not allowed in routes.yaml: "
                   "write each value out"]
    assert time.monotonic() - started < 5  # generous: it used to take minutes


@pytest.mark.parametrize("text,line,fragment", [
    ("routes:\n  - &r {prefix: /a, to: go}\n", 2, "anchors and aliases"),
    ("legacy: {url: !!str http://x}\n", 1, "YAML tags (tag:yaml.org,2002:str) are not allowed"),
    ("routes: !!python/object:os.system {}\n", 1, "YAML tags"),
    ("a: " + "[" * 40 + "]" * 40 + "\n", 1, "nested more than 16 levels deep"),
    ("legacy:\n  url: " + "x" * 5000 + "\n", 2, "a value of 5,000 characters; at most 4096"),
    ("routes: []\n---\nroutes: []\n", 2, "more than one YAML document"),
    ("legacy:\n  url: http://a:1\n  url: http://b:1\n", 3, "legacy.url: key given twice"),
    (b"routes: []\n# \xff\n", 2, "not UTF-8 text"),
    ("routes:\n  - prefix: /a\n    to: go\n   bad: indent\n", 4, "invalid YAML"),
])
def test_refused_constructs(text, line, fragment):
    out = problems_of(text)
    assert len(out) == 1 and out[0].startswith(f"routes.yaml:{line}:") and fragment in out[0], out


def test_oversized_lists_are_one_problem_each():
    methods = ", ".join(["GET"] * 17)
    routes = "".join(f"  - {{prefix: /r{i}, to: go}}\n" for i in range(1001))
    out = problems_of(f"trusted_proxies: []\nroutes:\n  - {{prefix: /a, to: go, methods: [{methods}]}}\n" + routes)
    assert out == ["routes.yaml:3: routes: at most 1,000 items, got 1,002",
                   "routes.yaml:3: routes[0].methods: at most 16 items, got 17"]


def test_a_million_values_stop_at_the_node_budget():
    text = "routes:\n  - prefix: /a\n    to: go\n    methods: [" + ",".join(["GET"] * 200_000) + "]\n"
    started = time.monotonic()
    out = problems_of(text)
    assert len(out) == 1 and "more than 100,000 YAML values" in out[0]
    assert time.monotonic() - started < 10


def test_the_deadline_is_checked_while_composing():
    text = "trusted_proxies: [" + ",".join(["10.0.0.1"] * 5000) + "]\n"
    out = problems_of(text, deadline=time.monotonic() - 1)
    assert len(out) == 1 and "took too long" in out[0]


# --- what is read at all ----------------------------------------------------------------

def load_problem(path: Path) -> str:
    with pytest.raises(RoutesError) as info:
        load_config(path, environ={})
    (problem,) = info.value.problems
    return str(problem)


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    big = tmp_path / "routes.yaml"
    big.write_text("routes: []\n# " + "x" * (10 << 20) + "\n")  # a 10 MB scalar-ish file
    out = load_problem(big)
    assert out == f"{big}:0: <file>: file is 10,485,774 bytes; routes.yaml may be at most 1,048,576 bytes (1 MiB)"


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "routes.yaml"
    os.mkfifo(fifo)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(load_problem(fifo)), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert result == [f"{fifo}:0: <file>: not a regular file: it is a FIFO (named pipe); routes.yaml must be "
                      "a plain file (a symlink to one is fine)"]


def test_devices_and_directories_are_refused_with_the_reason(tmp_path):
    zero = tmp_path / "routes.yaml"
    zero.symlink_to("/dev/zero")
    assert "not a regular file: it is a character device" in load_problem(zero)
    assert "points to /dev/zero" in load_problem(zero)
    assert "it is a directory" in load_problem(tmp_path)
    assert "cannot read: No such file or directory" in load_problem(tmp_path / "missing.yaml")


def test_a_configmap_style_symlink_chain_is_read(tmp_path):
    # Kubernetes: routes.yaml → ..data/routes.yaml, ..data → ..2024_01_01/
    version = tmp_path / "..2024_01_01"
    version.mkdir()
    (version / "routes.yaml").write_text("routes:\n  - {prefix: /users, to: go}\n")
    (tmp_path / "..data").symlink_to(version.name)
    (tmp_path / "routes.yaml").symlink_to("..data/routes.yaml")
    assert load_config(tmp_path / "routes.yaml", environ={}).routes[0].prefix == "/users"
