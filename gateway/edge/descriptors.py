"""Descriptor headroom: how many client connections one worker may hold.

Every client connection is a file descriptor, and so is everything else the
gateway needs to keep working: upstream connections to the Go backend, the
listening socket, log files, SQLite/DuckDB files, the metrics directory, the
services' own clients. A connection flood that takes the last descriptor
breaks all of those at once (accept() and connect() fail with EMFILE), and
with ``RLIMIT_NOFILE=1024`` slowloris did exactly that. So:

* at start, the soft limit is raised as far as the hard limit allows;
* each worker caps its client connections below the limit, keeping a reserve
  for the upstream pool (``legacy.pool_size``), a fixed allowance for files and
  the rest, and the connections being refused or closed politely at that moment.
"""
from __future__ import annotations

import logging
import resource

log = logging.getLogger("gateway.edge")

# Listening socket, stdio and log files, SQLite/DuckDB files and their journals,
# the metrics and state directories, service clients (gRPC, Gemini), imports.
FIXED_RESERVE = 64
# Connections beyond the limit that get their 503 and a short lingering close
# (gateway/edge/protocol.py); past this many at once, the rest are closed bare.
LINGER_BUDGET = 64


def raise_nofile_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (before, after, hard).

    Child processes (``--workers N``) inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _nr_open())
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
            return soft, soft, hard
    return soft, max(soft, target), hard


def _nr_open() -> int:
    """The kernel's per-process ceiling (when the hard limit says 'unlimited')."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def soft_nofile() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else _nr_open()


def reserve(pool_size: int) -> int:
    """Descriptors a worker keeps for everything but client connections."""
    return pool_size + FIXED_RESERVE + LINGER_BUDGET


def connection_ceiling(configured: int, nofile: int, pool_size: int) -> int:
    """Client connections one worker admits: the configured maximum, lowered
    to fit under the descriptor limit with the reserve kept (at least 1)."""
    return max(1, min(configured, nofile - reserve(pool_size)))
