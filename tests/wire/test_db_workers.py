"""Gateway workers (separate processes) opening a fresh SQLite file at once."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

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
TIMEOUT = 60  # seconds for any one answer: a racer stuck on a lock fails the test, never hangs the run


def test_workers_opening_a_fresh_file_at_once_all_get_the_schema(tmp_path):
    errors = [tempfile.TemporaryFile(dir=tmp_path) for _ in range(3)]
    racers = [subprocess.Popen([sys.executable, "-c", RACER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=err, text=True) for err in errors]

    def lines(want: str, what: object) -> None:
        """One line from every racer, each within TIMEOUT."""
        with ThreadPoolExecutor(len(racers)) as pool:
            got = [f.result(timeout=TIMEOUT) for f in [pool.submit(p.stdout.readline) for p in racers]]  # type: ignore[union-attr]
        for err, line in zip(errors, got):
            err.seek(0)
            assert line == want, (what, line, err.read()[-400:])

    try:
        lines("ready\n", "start")
        for i in range(8):
            path = str(tmp_path / f"fresh{i}.db")
            for p in racers:
                p.stdin.write(path + "\n")  # type: ignore[union-attr]
            for p in racers:
                p.stdin.flush()  # type: ignore[union-attr]
            lines("ok\n", i)
    finally:
        for p in racers:
            p.kill()
            p.wait()
