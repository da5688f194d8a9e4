"""In-memory brute-force limiter for ``POST /sign-in``.

Three failure counters, each with an exponential lock window once it passes
its threshold (``base * 2**(failures - threshold)`` seconds, capped), and
forgotten after ``forget_after`` seconds without a new failure:

* **email** — failures for one account, from anywhere (slows a distributed
  guesser on one account);
* **pair** — failures for one (email, client address): the requester's own;
* **ip** — failures from one address across accounts (slows spraying).

Fairness rules, so a correct password is not blocked by *other* people:

1. The pair lock always applies (those are the requester's own failures).
2. The email lock is waived for an address that has signed in successfully
   to this account before (a "known good" pair), so an attacker cannot lock the
   owner out from the owner's usual network.
3. The ip lock only applies to accounts that already have failures of their
   own; an account with a clean record signs in from a busy shared address
   (NAT, office proxy) even while someone there is spraying. A sprayer thus
   gets at most one guess per fresh account while the address is locked.

A correct password resets the email and pair counters (the owner proved
themselves) but never the ip counter (else a sprayer could reset it with an
account of their own). Checks run *before* bcrypt, so locked requests cost no
CPU. State is per process: several gateway workers each keep their own.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class _Entry:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True)
class Policy:
    threshold: int          # failures allowed before the first lock
    base_seconds: float     # first lock length
    max_seconds: float      # cap of the exponential window
    forget_after: float     # a quiet counter is dropped after this long


class _Counter(Generic[K]):
    def __init__(self, policy: Policy, max_entries: int) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self._entries: OrderedDict[K, _Entry] = OrderedDict()

    def _get(self, key: K, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry and now >= entry.locked_until and now - entry.last_failure > self.policy.forget_after:
            del self._entries[key]
            return None
        return entry

    def failures(self, key: K, now: float) -> int:
        entry = self._get(key, now)
        return entry.failures if entry else 0

    def retry_after(self, key: K, now: float) -> float:
        entry = self._get(key, now)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    def fail(self, key: K, now: float) -> None:
        entry = self._get(key, now) or _Entry()
        entry.failures += 1
        entry.last_failure = now
        over = entry.failures - self.policy.threshold
        if over >= 0:
            window = min(self.policy.max_seconds, self.policy.base_seconds * 2 ** min(over, 32))
            entry.locked_until = now + window
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def reset(self, key: K) -> None:
        self._entries.pop(key, None)

    def forgive(self, key: K) -> None:
        """Take back one failure (an attempt counted up front that succeeded)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.failures = max(0, entry.failures - 1)
            if entry.failures < self.policy.threshold:
                entry.locked_until = 0.0


EMAIL_POLICY = Policy(threshold=5, base_seconds=30, max_seconds=900, forget_after=3600)
PAIR_POLICY = Policy(threshold=5, base_seconds=30, max_seconds=900, forget_after=3600)
IP_POLICY = Policy(threshold=20, base_seconds=30, max_seconds=900, forget_after=3600)


class SignInLimiter:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        email_policy: Policy = EMAIL_POLICY,
        pair_policy: Policy = PAIR_POLICY,
        ip_policy: Policy = IP_POLICY,
        max_entries: int = 100_000,
    ) -> None:
        self.clock = clock
        self._email: _Counter[str] = _Counter(email_policy, max_entries)
        self._pair: _Counter[tuple[str, str]] = _Counter(pair_policy, max_entries)
        self._ip: _Counter[str] = _Counter(ip_policy, max_entries)
        self._known_good: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_entries = max_entries

    @staticmethod
    def _norm(email: str) -> str:
        return email.strip().lower()

    def retry_after(self, email: str, ip: str) -> int:
        """Seconds the caller must wait (0 = go ahead and check the password)."""
        now = self.clock()
        email = self._norm(email)
        pair = (email, ip)
        waits = [self._pair.retry_after(pair, now)]
        known_good = pair in self._known_good
        if not known_good:
            waits.append(self._email.retry_after(email, now))
            if self._email.failures(email, now) > 0:
                waits.append(self._ip.retry_after(ip, now))
        wait = max(waits)
        return math.ceil(wait) if wait > 0 else 0

    def failure(self, email: str, ip: str) -> None:
        now = self.clock()
        email = self._norm(email)
        self._email.fail(email, now)
        self._pair.fail((email, ip), now)
        self._ip.fail(ip, now)

    def success(self, email: str, ip: str) -> None:
        email = self._norm(email)
        self._email.reset(email)
        self._pair.reset((email, ip))
        self._ip.forgive(ip)  # sign-in counts an attempt before checking it
        self._known_good[(email, ip)] = self.clock()
        self._known_good.move_to_end((email, ip))
        while len(self._known_good) > self._max_entries:
            self._known_good.popitem(last=False)
