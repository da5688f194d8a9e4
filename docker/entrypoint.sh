#!/bin/sh
# Gateway container entrypoint: catch the mistakes a first deploy makes, with
# a message that says what to do, then exec the command (so the gateway itself
# receives SIGTERM and drains in-flight requests).
set -eu

fail() {
    echo "gateway-entrypoint: $*" >&2
    exit 1
}

config="${GATEWAY_CONFIG:-/app/config/routes.yaml}"

if [ -d "$config" ]; then
    fail "$config is a directory, not a file. Docker creates an empty directory when the host
  side of a bind mount does not exist. Fix: stop the stack, delete the directory it created on
  the host (e.g. 'rmdir routes.yaml'), put your routes.yaml there (the repository's one is a good
  start), then 'docker compose up -d' again."
fi
if [ ! -f "$config" ]; then
    fail "$config not found. Mount your routes.yaml there, e.g.
  docker run -v \"\$PWD/routes.yaml:/app/config/routes.yaml:ro\" ...
  (docker-compose.yml already does this with ./routes.yaml)."
fi

# The Python services share the legacy backend's SQLite file unless
# DATABASE_URL points elsewhere. SQLite needs write access to the directory
# (it creates a -journal file next to the database for every write, and
# -wal/-shm files with JUNJO_SQLITE_JOURNAL_MODE=wal) and to the files (a
# -journal left by a crash must be rolled back by whoever opens the file next).
if [ -z "${DATABASE_URL:-}" ]; then
    db="${JUNJO_SQLITE_PATH:-data/app_data.db}"
    dir=$(dirname "$db")
    mkdir -p "$dir" 2>/dev/null || fail "cannot create $dir (uid $(id -u)): mount a writable directory there"
    for path in "$dir" "$db" "$db-journal" "$db-wal" "$db-shm"; do
        if [ -e "$path" ] && [ ! -w "$path" ]; then
            fail "cannot write $path: the gateway runs as uid $(id -u), gid $(id -g), and
  $(ls -ld "$path")
  Fix once on the host, for the bind-mounted directory (the Go backend keeps working):
    sudo chgrp -R $(id -g) .dbdata/sqlite && sudo chmod -R g+rwX .dbdata/sqlite && sudo chmod g+s .dbdata/sqlite
  (docker-compose.yml runs this as the one-shot 'dbdata-permissions' service.)"
        fi
    done
fi

exec "$@"
