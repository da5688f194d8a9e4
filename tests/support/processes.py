"""Processes as /proc shows them: whether one still runs, and a parent's children."""
from __future__ import annotations

import re
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (exited, not reaped yet) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(parent: int) -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of the live processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        match = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        if match and int(match.group(1)) == parent and alive(int(entry.name)):
            found.append((int(entry.name), argv))
    return found
