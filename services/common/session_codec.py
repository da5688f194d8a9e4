"""The legacy ``session`` cookie: gorilla/securecookie (signed, not encrypted) + gob.

Wire format (see the legacy contract, "The session cookie")::

    value = base64url_padded(TS "|" P "|" MAC)
    P     = base64url_padded(gob(map[interface{}]interface{}{"userEmail": email}))
    MAC   = HMAC-SHA256(secret, b"session|" + TS + b"|" + P)   (raw 32 bytes)

``SessionCodec`` mints byte-identical values to gorilla for the same timestamp
and accepts anything gorilla would accept for this app, with these rules:

* values over 4096 chars, bad base64, a bad MAC or a non-integer TS → rejected;
* TS older than ``max_age`` (30 days) → rejected;
* TS in the future → **accepted**, as securecookie does (it only checks a
  minimum age when one is configured, and the legacy code configures none);
* the gob payload must be exactly the legacy shape: the constant type
  definition of ``map[interface{}]interface{}`` then a map whose keys and
  values are all ``string`` interfaces. Anything else is rejected, never raised.

Key rotation: ``secrets[0]`` mints; every secret in ``secrets`` is tried when
decoding (securecookie's ``DecodeMulti`` does the same).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

COOKIE_NAME = "session"
MAX_AGE_SECONDS = 86400 * 30
MAX_LENGTH = 4096

# Message 1 of every gorilla session: gob's definition of
# map[interface{}]interface{} as type id 64 — length 0x0d, typeid -64 (0x7f),
# wireType{MapT: mapType{CommonType{Id: 64}, Key: interface(8), Elem: interface(8)}}.
GOB_TYPE_DEFINITION = bytes.fromhex("0d 7f 04 01 02 ff 80 00 01 10 01 10 00 00")
_GOB_MAP_TYPE_ID = b"\xff\x80"          # type id 64 as a gob int (zig-zag 128)
_GOB_STRING_NAME = b"string"
_GOB_STRING_TYPE_ID = b"\x0c"          # built-in string type id 6, zig-zag 12

_TS_RE = re.compile(rb"[+-]?[0-9]+\Z")
_INT64_MAX = 2**63 - 1


class GobError(ValueError):
    """The gob stream is not exactly the legacy session shape."""


# --- gob primitives -------------------------------------------------------

def _gob_uint(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([256 - len(raw)]) + raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise GobError("gob: unexpected end of data")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self) -> int:
        first = self.take(1)[0]
        if first < 0x80:
            return first
        size = 256 - first
        if size > 8:
            raise GobError("gob: uint too large")
        return int.from_bytes(self.take(size), "big")

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def _gob_string_interface(value: str) -> bytes:
    raw = value.encode("utf-8")
    body = b"\x00" + _gob_uint(len(raw)) + raw  # singleton delta, then the string
    return _gob_uint(len(_GOB_STRING_NAME)) + _GOB_STRING_NAME + _GOB_STRING_TYPE_ID \
        + _gob_uint(len(body)) + body


def _read_string_interface(r: _Reader) -> str:
    name = r.take(r.uint())
    if name != _GOB_STRING_NAME:
        raise GobError("gob: interface value is not a string")
    if r.take(1) != _GOB_STRING_TYPE_ID:
        raise GobError("gob: unexpected type id for string")
    body = _Reader(r.take(r.uint()))
    if body.take(1) != b"\x00":
        raise GobError("gob: bad singleton delta")
    raw = body.take(body.uint())
    if not body.at_end():
        raise GobError("gob: trailing bytes in interface value")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GobError("gob: string is not UTF-8") from exc


def gob_encode_values(values: Mapping[str, str]) -> bytes:
    """gob of map[interface{}]interface{} with string keys and values, as Go writes it."""
    body = _GOB_MAP_TYPE_ID + b"\x00" + _gob_uint(len(values))
    for key, val in values.items():
        body += _gob_string_interface(key) + _gob_string_interface(val)
    return GOB_TYPE_DEFINITION + _gob_uint(len(body)) + body


def gob_decode_values(data: bytes) -> dict[str, str]:
    """Inverse of :func:`gob_encode_values`; raises :class:`GobError` on any other shape."""
    if not data.startswith(GOB_TYPE_DEFINITION):
        raise GobError("gob: not a map[interface{}]interface{} session")
    outer = _Reader(data[len(GOB_TYPE_DEFINITION):])
    msg = _Reader(outer.take(outer.uint()))
    if not outer.at_end():
        raise GobError("gob: trailing messages")
    if msg.take(2) != _GOB_MAP_TYPE_ID or msg.take(1) != b"\x00":
        raise GobError("gob: value is not the session map")
    count = msg.uint()
    values: dict[str, str] = {}
    for _ in range(count):
        key = _read_string_interface(msg)
        values[key] = _read_string_interface(msg)
    if not msg.at_end():
        raise GobError("gob: trailing bytes in value message")
    return values


# --- base64 (Go's base64.URLEncoding: padded, strict alphabet) -----------

def _b64encode(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw)


_URL_B64 = re.compile(rb"[A-Za-z0-9_-]*={0,2}")


def _b64decode(text: bytes) -> bytes:
    # Go's base64.URLEncoding takes only its own alphabet: "+" and "/" are errors.
    if not _URL_B64.fullmatch(text):
        raise binascii.Error("not base64url")
    return base64.urlsafe_b64decode(text)


# --- the codec ------------------------------------------------------------

class SessionCodec:
    """Encode/decode the legacy ``session`` cookie value.

    ``secrets``: raw HMAC keys, the first mints, all are accepted.
    """

    def __init__(
        self,
        secrets: Sequence[bytes],
        *,
        max_age: int = MAX_AGE_SECONDS,
        name: str = COOKIE_NAME,
    ) -> None:
        keys = tuple(secrets)
        if not keys or any(not k for k in keys):
            raise ValueError("SessionCodec needs at least one non-empty secret")
        self._keys = keys
        self.max_age = max_age
        self.name = name

    def _mac(self, key: bytes, ts: bytes, payload: bytes) -> bytes:
        msg = self.name.encode() + b"|" + ts + b"|" + payload
        return hmac.new(key, msg, hashlib.sha256).digest()

    def encode_values(self, values: Mapping[str, str], now: float | None = None) -> str:
        """Mint a cookie value for an arbitrary string→string session map."""
        ts = str(int(time.time() if now is None else now)).encode()
        payload = _b64encode(gob_encode_values(values))
        mac = self._mac(self._keys[0], ts, payload)
        value = _b64encode(ts + b"|" + payload + b"|" + mac).decode("ascii")
        if len(value) > MAX_LENGTH:
            raise ValueError("securecookie: the value is too long")
        return value

    def encode(self, email: str, now: float | None = None) -> str:
        """Mint the cookie value gorilla writes for ``Values["userEmail"] = email``."""
        return self.encode_values({"userEmail": email}, now)

    def decode_values(self, value: str, now: float | None = None) -> dict[str, str] | None:
        """The session map, or None when gorilla would fail to decode ``value``."""
        try:
            if not isinstance(value, str) or len(value) > MAX_LENGTH:
                return None
            raw = _b64decode(value.encode("ascii"))
            parts = raw.split(b"|", 2)
            if len(parts) != 3:
                return None
            ts, payload, mac = parts
            if not any(hmac.compare_digest(self._mac(k, ts, payload), mac) for k in self._keys):
                return None
            if not _TS_RE.match(ts):
                return None
            issued = int(ts)
            if abs(issued) > _INT64_MAX:
                return None
            current = int(time.time() if now is None else now)
            if self.max_age and issued < current - self.max_age:
                return None
            return gob_decode_values(_b64decode(payload))
        except (ValueError, binascii.Error, UnicodeError):
            # GobError is a ValueError; nothing malformed may escape as an exception.
            return None

    def decode(self, value: str, now: float | None = None) -> str | None:
        """The signed-in email, or None (invalid cookie, or no string ``userEmail``)."""
        values = self.decode_values(value, now)
        if values is None:
            return None
        email = values.get("userEmail")
        return email if isinstance(email, str) else None
