"""Start the long test modules first, one per xdist worker.

``make test`` runs the suite with ``-n 6 --dist worksteal``: each worker is
first handed a contiguous share of the collection, and a worker that runs out
steals from the end of another's queue. A module that takes tens of seconds,
mostly waiting (the bench smoke run, the slow-reader framing tests), then
ran wherever the collection order put it; when that was late, the run ended
with one worker waiting and the machine idle (2-9 % busy for ~6 s, sampled
from /proc/stat, 2026-12-03).

A module marked ``pytest.mark.long(seconds=S)`` is moved, whole and in its own
order (its tests share module fixtures and some depend on the order), to the
front of a worker's share, the longest first onto the least loaded share;
the rest keeps its order. Every worker computes the same order from the same
collection, as xdist requires.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pytest


def first_shares(total: int, workers: int) -> list[int]:
    """The sizes of the contiguous shares worksteal hands out at the start
    (xdist/scheduler/worksteal.py, ``check_schedule``)."""
    sizes = []
    for remaining_nodes in range(workers, 0, -1):
        size = total // remaining_nodes
        sizes.append(size)
        total -= size
    return sizes


def long_first(items: Sequence[pytest.Item], workers: int) -> list[pytest.Item]:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    long_units: list[tuple[float, list[pytest.Item]]] = []
    for module in modules.values():
        marker = module[0].get_closest_marker("long")
        if marker is not None and all(i.get_closest_marker("long") is not None for i in module):
            long_units.append((float(marker.kwargs.get("seconds", 10)), module))
    if not long_units:
        return list(items)
    moved = {id(i) for _, unit in long_units for i in unit}
    rest = [i for i in items if id(i) not in moved]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for seconds, unit in sorted(long_units, key=lambda u: -u[0]):
        j = load.index(min(load))
        heads[j] += unit
        load[j] += seconds
    ordered: list[pytest.Item] = []
    start = 0
    for head, size in zip(heads, first_shares(len(items), workers)):
        take = max(0, size - len(head))
        ordered += head + rest[start:start + take]
        start += take
    return ordered + rest[start:]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    # xdist sets a worker's own --dist to "no": tell it the controller's.
    node.workerinput["long_first_dist"] = node.config.getoption("dist", None)


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", {})
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1 and workerinput.get("long_first_dist") == "worksteal":
        items[:] = long_first(items, workers)
