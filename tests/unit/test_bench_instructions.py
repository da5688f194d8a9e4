"""tools/bench/instructions.py and tools/bench/ab.py: their arithmetic. The runs
themselves are development tools, not in the suite (valgrind is not part of the
test setup, and ab.py saturates a core for a minute)."""
from __future__ import annotations

from pathlib import Path

from tools.bench.instructions import Row, callgrind_total, format_rows, yardsticks


def test_the_total_is_read_from_a_callgrind_file(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.123.1"
    out.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=(1) main\n5 100\nsummary: 826394065\n"
                   "totals: 826394065\n")
    assert callgrind_total(out) == 826_394_065
    (tmp_path / "empty").write_text("events: Ir\n")
    assert callgrind_total(tmp_path / "empty") == 0


def test_rows_are_per_request_with_ratios_to_the_first_row_of_each_path() -> None:
    rows = [Row("gateway", "/small", 450_000_000, 1000), Row("gateway", "/ping", 480_000_000, 1000),
            Row("gateway@HEAD~3", "/small", 500_000_000, 1000), Row("ping-app", "/ping", 348_000_000, 1000)]
    assert rows[0].per_request == 450_000
    lines = format_rows(rows).splitlines()
    assert lines[1].split()[-2:] == ["450,000", "1.000"]
    assert lines[3].split()[0] == "gateway@HEAD~3" and lines[3].split()[-1] == "1.111"
    assert lines[4].split()[-1] == "0.725"


def test_the_yardsticks_are_the_gateway_against_the_floor_and_the_ping_app() -> None:
    rows = [Row("gateway", "/small", 340_000_000, 1000), Row("gateway", "/ping", 460_000_000, 1000),
            Row("floor", "/small", 26_000_000, 1000), Row("ping-app", "/ping", 345_000_000, 1000),
            Row("gateway@HEAD~1", "/small", 1, 1)]  # another commit's gateway is no yardstick
    small, ping = yardsticks(rows)
    assert small.startswith("GET /small: gateway ÷ floor = 13.08× in instructions (340,000 ÷ 26,000;")
    assert ping.startswith("GET /ping: ping app alone ÷ gateway = 0.75× in instructions (345,000 ÷ 460,000;")
    assert yardsticks(rows[:2]) == []  # without the yardsticks' own rows, nothing to say


def test_ab_reports_each_sides_median_and_the_ratio() -> None:
    from tools.bench.ab import Side, format_result

    a, b = Side("692fdad", {"/small": [130.0, 120.0, 150.0]}), Side("this tree", {"/small": [100.0, 90.0, 95.0]})
    line = format_result(a, b, ["/small"])
    assert line.startswith("/small: 692fdad 130.0 µs/req [130.0, 120.0, 150.0], this tree 95.0 µs/req")
    assert line.endswith("this tree ÷ 692fdad = 0.731")
