"""The gorilla ``session`` cookie: byte-identical minting, strict decoding, rotation."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.common.session_codec import (
    GOB_TYPE_DEFINITION,
    MAX_AGE_SECONDS,
    SessionCodec,
    gob_decode_values,
    gob_encode_values,
)
from services.common.settings import settings_from_env
from tests.vectors import load_vectors

VECTORS = load_vectors()
MINT = VECTORS["mint"]
SIGNOUT_VALUE = VECTORS["signout_set_cookie"].split(";")[0].split("=", 1)[1]
TS = MINT[0]["timestamp"]


def _ids(v):
    return f"{v['secret'][:6]}-{v['email'][:12]}"


@pytest.mark.parametrize("vector", MINT, ids=_ids)
def test_mint_is_byte_identical_to_gorilla(vector):
    codec = SessionCodec([vector["secret"].encode()])
    assert codec.encode(vector["email"], now=vector["timestamp"]) == vector["cookie_value"]


@pytest.mark.parametrize("vector", MINT, ids=_ids)
def test_every_vector_decodes(vector):
    codec = SessionCodec([vector["secret"].encode()])
    assert codec.decode(vector["cookie_value"], now=vector["timestamp"] + 60) == vector["email"]


def test_signout_vector_is_an_empty_session_map():
    # Minted by the gorilla code for a request without a session. The legacy's
    # sign-out of a signed-in request re-encodes that session instead; Python
    # always sends this empty map (docs/auth.md).
    codec = SessionCodec([b"dev-secret"])
    assert codec.decode_values(SIGNOUT_VALUE, now=TS) == {}
    assert codec.decode(SIGNOUT_VALUE, now=TS) is None
    assert codec.encode_values({}, now=TS) == SIGNOUT_VALUE


def test_gob_prefix_and_round_trip():
    data = gob_encode_values({"userEmail": "x" * 300})
    assert data.startswith(GOB_TYPE_DEFINITION)
    assert gob_decode_values(data) == {"userEmail": "x" * 300}


def test_expiry_window_is_thirty_days():
    codec = SessionCodec([b"dev-secret"])
    value = MINT[0]["cookie_value"]
    assert codec.decode(value, now=TS + MAX_AGE_SECONDS) == MINT[0]["email"]
    assert codec.decode(value, now=TS + MAX_AGE_SECONDS + 1) is None


def test_future_timestamps_are_accepted_like_securecookie():
    codec = SessionCodec([b"dev-secret"])
    assert codec.decode(MINT[0]["cookie_value"], now=TS - 10 * 86400) == MINT[0]["email"]


def _forge(secret: bytes, ts: bytes, gob: bytes) -> str:
    payload = base64.urlsafe_b64encode(gob)
    mac = hmac.new(secret, b"session|" + ts + b"|" + payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(ts + b"|" + payload + b"|" + mac).decode()


@pytest.mark.parametrize("bad", [
    "",
    "not-base64!!",
    MINT[0]["cookie_value"].rstrip("=") + "A",                       # broken padding
    MINT[0]["cookie_value"][:-8] + "AAAAAAA=",                       # tampered MAC
    base64.urlsafe_b64encode(b"1795793923|abc").decode(),              # two parts
    "A" * 4097,                                                        # too long
])
def test_malformed_values_are_rejected_without_exceptions(bad):
    assert SessionCodec([b"dev-secret"]).decode(bad, now=TS) is None


def test_tampered_payload_is_rejected():
    raw = base64.urlsafe_b64decode(MINT[0]["cookie_value"])
    ts, payload, mac = raw.split(b"|", 2)
    other = base64.urlsafe_b64encode(gob_encode_values({"userEmail": "eve@example.com"}))
    value = base64.urlsafe_b64encode(ts + b"|" + other + b"|" + mac).decode()
    assert SessionCodec([b"dev-secret"]).decode(value, now=TS) is None


def test_wrong_secret_is_rejected():
    assert SessionCodec([b"other"]).decode(MINT[0]["cookie_value"], now=TS) is None


@pytest.mark.parametrize("gob", [
    b"",
    GOB_TYPE_DEFINITION,                                               # no value message
    GOB_TYPE_DEFINITION + b"\x04\xff\x80\x00\x01",                     # count 1, no entries
    GOB_TYPE_DEFINITION + b"\x05\xff\x80\x00\x00\x00",                 # trailing byte
    gob_encode_values({"userEmail": "a"}) + b"\x00",                   # trailing message
    gob_encode_values({"userEmail": "a"}).replace(b"\x06string", b"\x06strinG", 1),
    gob_encode_values({"userEmail": "a"})[1:],                         # wrong type definition
    bytes.fromhex("0c7f040102ff80000110011000") + b"\x04\xff\x80\x00\x00",
])
def test_unexpected_gob_shapes_are_rejected(gob):
    secret = b"dev-secret"
    value = _forge(secret, str(TS).encode(), gob)
    assert SessionCodec([secret]).decode_values(value, now=TS) is None


def test_int_value_instead_of_string_is_rejected():
    # map{"userEmail": int(7)}: the interface names type "int" (id 2).
    body = (b"\xff\x80\x00\x01" + b"\x06string\x0c\x0b\x00\x09userEmail"
            + b"\x03int\x04\x02\x00\x0e")
    gob = GOB_TYPE_DEFINITION + bytes([len(body)]) + body
    assert SessionCodec([b"k"]).decode_values(_forge(b"k", str(TS).encode(), gob), now=TS) is None


def test_non_numeric_timestamp_is_rejected():
    gob = gob_encode_values({"userEmail": "a@b.co"})
    assert SessionCodec([b"k"]).decode(_forge(b"k", b" 1795793923", gob), now=TS) is None
    assert SessionCodec([b"k"]).decode(_forge(b"k", b"+1795793923", gob), now=TS) == "a@b.co"


def test_rotation_mints_with_first_and_accepts_all():
    old = SessionCodec([b"dev-secret"])
    rotated = SessionCodec([b"new-secret", b"dev-secret"])
    assert rotated.decode(old.encode("a@b.co", now=TS), now=TS) == "a@b.co"
    fresh = rotated.encode("a@b.co", now=TS)
    assert SessionCodec([b"new-secret"]).decode(fresh, now=TS) == "a@b.co"
    assert old.decode(fresh, now=TS) is None


def test_settings_build_the_rotation_list_from_env():
    s = settings_from_env({"JUNJO_SESSION_SECRET": "new", "JUNJO_SESSION_SECRETS_PREVIOUS": "a, b,,"})
    assert s.session_secrets == (b"new", b"a", b"b")
    assert s.session_codec.decode(SessionCodec([b"b"]).encode("x@y.z", now=TS), now=TS) == "x@y.z"


def test_unicode_secret_uses_utf8_bytes():
    vector = next(v for v in MINT if not v["secret"].isascii())
    s = settings_from_env({"JUNJO_SESSION_SECRET": vector["secret"]})
    assert s.session_codec.encode(vector["email"], now=TS) == vector["cookie_value"]


def test_too_long_value_cannot_be_minted():
    with pytest.raises(ValueError):
        SessionCodec([b"k"]).encode("a" * 4000, now=TS)


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        SessionCodec([b""])


def test_standard_base64_alphabet_is_rejected_like_go():
    # Go's base64.URLEncoding rejects "+" and "/" even when the MAC would match.
    vector = next(v for v in VECTORS["mint"] if "-" in v["cookie_value"] or "_" in v["cookie_value"])
    codec = SessionCodec([vector["secret"].encode()])
    assert codec.decode(vector["cookie_value"], now=vector["timestamp"]) == vector["email"]
    std = vector["cookie_value"].replace("-", "+").replace("_", "/")
    assert codec.decode(std, now=vector["timestamp"]) is None
