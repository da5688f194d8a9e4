"""bcrypt as golang.org/x/crypto/bcrypt uses it: cost 10, ``$2a$`` hashes.

pyca/bcrypt writes ``$2b$`` by default; ``gensalt(prefix=b"2a")`` writes the
same algorithm under Go's ``$2a$`` prefix. Both prefixes (and ``$2y$``) verify.
Passwords over 72 bytes are refused like Go (``ErrPasswordTooLong``): hashing
raises, checking returns False. These calls are CPU-heavy: run them in a thread.
"""
from __future__ import annotations

import bcrypt

DEFAULT_COST = 10
MAX_PASSWORD_BYTES = 72

# A real hash to compare against when the email is unknown, so a miss costs
# the same time as a wrong password (no account enumeration by timing).
_DUMMY_HASH = b"$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"


class PasswordTooLong(ValueError):
    pass


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong("bcrypt: password length exceeds 72 bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost, prefix=b"2a")).decode("ascii")


def check_password(password_hash: str, password: str) -> bool:
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(raw, password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def burn_time(password: str) -> None:
    """Spend one bcrypt comparison's worth of time (unknown email path)."""
    check_password(_DUMMY_HASH.decode(), password[:MAX_PASSWORD_BYTES])
