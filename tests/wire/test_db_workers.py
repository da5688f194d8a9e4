"""Gateway workers (separate processes) opening a fresh SQLite file at once."""
from __future__ import annotations

import subprocess
import sys

# Each racer imports the database layer once, then opens every file it is sent
# the moment it reads its name: the three start on a file within microseconds
# of each other, as workers booting together do (closer than three fresh
# interpreters would, whose start-up jitter is tens of milliseconds).
RACER = (
    "import sys; from services.common.db import Database\n"
    "print('ready', flush=True)\n"
    "for line in sys.stdin:\n"
    "    db = Database.from_url('sqlite:///' + line.strip()); db.count_users(); db.dispose()\n"
    "    print('ok', flush=True)\n"
)


def test_workers_opening_a_fresh_file_at_once_all_get_the_schema(tmp_path):
    racers = [subprocess.Popen([sys.executable, "-c", RACER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for p in racers:
            assert p.stdout is not None and p.stdout.readline() == "ready\n", p.stderr and p.stderr.read()[-400:]
        for i in range(8):
            path = str(tmp_path / f"fresh{i}.db")
            for p in racers:
                assert p.stdin is not None
                p.stdin.write(path + "\n")
            for p in racers:
                p.stdin.flush()  # type: ignore[union-attr]
            for p in racers:
                line = p.stdout.readline()  # type: ignore[union-attr]
                assert line == "ok\n", (i, p.stderr.read()[-400:] if p.poll() is not None else line)  # type: ignore[union-attr]
    finally:
        for p in racers:
            p.kill()
            p.wait()
