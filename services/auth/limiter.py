"""Brute-force limiter for ``POST /sign-in`` (the Go backend has none).

Every attempt is counted *before* its bcrypt check, on up to three counters,
and taken back when the password was right:

* **pair** -- one client's attempts on one account (``PAIR_POLICY``): 5, then
  that client is locked out of that account for 30 s, doubling to 15 min.
  Only the guesser's own attempts count, so it never hits the owner elsewhere.
* **account** -- everyone's attempts on one account (``ACCOUNT_POLICY``): past
  10, attempts are *spaced out*, one per 2 s, doubling to at most one a
  minute. A ceiling against a guesser spread over many addresses that slows
  the owner by at most a minute (429 + ``Retry-After``), never locks them out.
* **client** -- one client's attempts across accounts (``CLIENT_POLICY``): 20,
  then 30 s doubling to 15 min. Spraying one guess at each of many accounts.

A client that has signed in to an account before (a *known-good* pair, kept 30
days) skips the account and client counters for that account: a sprayer
sharing the owner's NAT, or a guesser elsewhere, does not slow the owner down.

The client is the address the gateway derived (``scope["client"]``: the socket
peer, or the forwarded client when the peer is a trusted proxy); IPv6 clients
count per /64, the block one host usually gets.

Every counter is one row, counted by a single conditional upsert
(:mod:`.limiter_store`), so concurrent attempts -- in threads, workers or
replicas sharing the store -- get exactly the single-process budget: the
``threshold``-th attempt sets the block inside the statement that counted it,
and no statement counts past a block.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

KNOWN_GOOD_SECONDS = 30 * 86400  # as long as a session cookie lives


@dataclass(frozen=True)
class Policy:
    threshold: int          # attempts before the first block
    base_seconds: float     # the first block
    max_seconds: float      # the longest block
    forget_after: float     # a counter quiet this long starts again from zero

    def block_after(self, attempts: int) -> float:
        """Seconds blocked once ``attempts`` have been counted (0: not blocked)."""
        if attempts < self.threshold:
            return 0.0
        return min(self.max_seconds, self.base_seconds * 2 ** min(attempts - self.threshold, 32))

    def ladder(self) -> list[tuple[int, float]]:
        """(attempts, block) from the threshold until the block reaches its cap."""
        steps, n = [], self.threshold
        while True:
            block = self.block_after(n)
            steps.append((n, block))
            if block >= self.max_seconds:
                return steps
            n += 1


PAIR_POLICY = Policy(threshold=5, base_seconds=30, max_seconds=900, forget_after=3600)
ACCOUNT_POLICY = Policy(threshold=10, base_seconds=2, max_seconds=60, forget_after=3600)
CLIENT_POLICY = Policy(threshold=20, base_seconds=30, max_seconds=900, forget_after=3600)


class LimiterStore(Protocol):
    """Where the counters live (one SQL implementation: :mod:`.limiter_store`)."""

    def blocked_until(self, keys: list[tuple[str, str]], now: float) -> float: ...
    def count(self, kind: str, key: str, policy: Policy, now: float) -> float | None:
        """Count one attempt unless blocked: None when counted, else the block's end."""
    def forgive(self, kind: str, key: str, policy: Policy) -> None: ...
    def reset(self, kind: str, key: str) -> None: ...
    def is_known_good(self, account: str, client: str, since: float) -> bool: ...
    def remember_good(self, account: str, client: str, now: float) -> None: ...


def client_key(address: str) -> str:
    """IPv4 as is; IPv6 per /64 (one host usually holds the whole block)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is the IPv4 client a.b.c.d
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignInLimiter:
    def __init__(
        self,
        store: LimiterStore | Callable[[], LimiterStore],
        *,
        clock: Callable[[], float] = time.time,  # wall clock: replicas share the counters
        pair_policy: Policy = PAIR_POLICY,
        account_policy: Policy = ACCOUNT_POLICY,
        client_policy: Policy = CLIENT_POLICY,
    ) -> None:
        self._store = store
        self.clock = clock
        self.policies = {"pair": pair_policy, "account": account_policy, "client": client_policy}

    @property
    def store(self) -> LimiterStore:
        return self._store() if callable(self._store) else self._store

    @staticmethod
    def _keys(email: str, address: str) -> tuple[str, str, str]:
        account, client = email.strip().lower(), client_key(address)
        # The client never holds a "|" (an address or a /64): the first one splits.
        return account, client, f"{client}|{account}"

    def attempt(self, email: str, address: str) -> int:
        """Count one attempt, or refuse it: seconds to wait (0 = counted: check
        the password now, and call :meth:`success` when it was right)."""
        now = self.clock()
        account, client, pair = self._keys(email, address)
        store = self.store
        counters = [("pair", pair)]
        if not store.is_known_good(account, client, now - KNOWN_GOOD_SECONDS):
            counters += [("account", account), ("client", client)]
        # A read first: a refused attempt is not counted anywhere.
        until = store.blocked_until(counters, now)
        if until > now:
            return math.ceil(until - now)
        for kind, key in counters:
            # Counted only while not blocked, in one statement: a block that
            # another request (or replica) set since the read refuses it here.
            refused = store.count(kind, key, self.policies[kind], now)
            if refused is not None:
                return max(1, math.ceil(refused - now))
        return 0

    def success(self, email: str, address: str) -> None:
        """The password was right: the owner's counters start again, the client
        gets back the attempt counted up front, and the pair is known good."""
        account, client, pair = self._keys(email, address)
        store = self.store
        store.reset("pair", pair)
        store.reset("account", account)
        # Never reset: a sprayer could clear their budget with an account of their own.
        store.forgive("client", client, self.policies["client"])
        store.remember_good(account, client, self.clock())

