"""tests/support/long_first.py: long modules start first, one per worker's share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.long_first import first_shares, long_first


@dataclass
class Marker:
    kwargs: dict[str, Any]


@dataclass
class Item:
    nodeid: str
    seconds: float | None = None

    def get_closest_marker(self, name: str) -> Marker | None:
        return Marker({"seconds": self.seconds}) if name == "long" and self.seconds is not None else None


def module(name: str, n: int, seconds: float | None = None) -> list[Item]:
    return [Item(f"tests/{name}.py::t{i}", seconds) for i in range(n)]


def test_shares_match_worksteal_first_split() -> None:
    assert first_shares(1600, 6) == [266, 266, 267, 267, 267, 267]
    assert sum(first_shares(7, 3)) == 7


def test_long_modules_head_the_shares_longest_first_on_the_least_loaded() -> None:
    items = (module("a", 30) + module("slow_b", 4, 50) + module("c", 30) + module("slow_d", 3, 34)
             + module("slow_e", 2, 10) + module("f", 30) + module("slow_g", 2, 8))
    ordered = long_first(items, 3)
    assert sorted(i.nodeid for i in ordered) == sorted(i.nodeid for i in items)  # each once
    starts = [0]
    for size in first_shares(len(items), 3)[:-1]:
        starts.append(starts[-1] + size)
    heads = [ordered[s].nodeid.split("::")[0] for s in starts]
    assert heads == ["tests/slow_b.py", "tests/slow_d.py", "tests/slow_e.py"]
    # slow_g (8 s) joins the least loaded share, behind slow_e (10 s).
    share3 = [i.nodeid.split("::")[0] for i in ordered[starts[2]:starts[2] + 4]]
    assert share3 == ["tests/slow_e.py"] * 2 + ["tests/slow_g.py"] * 2
    # A module stays whole and in its order; the others keep theirs.
    for name in ("a", "c", "f", "slow_b", "slow_d"):
        mine = [i.nodeid for i in ordered if i.nodeid.startswith(f"tests/{name}.py")]
        assert mine == [f"tests/{name}.py::t{k}" for k in range(len(mine))]
    rest = [i.nodeid for i in ordered if "slow" not in i.nodeid]
    assert rest == [i.nodeid for i in items if "slow" not in i.nodeid]


def test_without_long_modules_nothing_moves() -> None:
    items = module("a", 5) + module("b", 5)
    assert long_first(items, 6) == items
