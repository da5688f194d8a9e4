"""Gateway workers (separate processes) opening a fresh SQLite file at once."""
from __future__ import annotations


def test_workers_opening_a_fresh_file_at_once_all_get_the_schema(tmp_path):
    # Two processes race on each fresh file (as gateway workers do at boot).
    import subprocess
    import sys

    script = (
        "import sys; from services.common.db import Database\n"
        "db = Database.from_url('sqlite:///' + sys.argv[1]); db.count_users(); db.dispose()\n"
    )
    for i in range(8):
        path = str(tmp_path / f"fresh{i}.db")
        procs = [subprocess.Popen([sys.executable, "-c", script, path], stderr=subprocess.PIPE) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()[-400:]
