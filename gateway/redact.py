"""What the gateway never shows: passwords in URLs, personal data in diff samples.

Two helpers, each the only place its rule lives, so every output that could
carry the secret calls the same code:

* :func:`redact_url` — credentials in any URL within a text are masked
  (``http://user:***@host``). Used for the health and routes answers, the
  ready detail, the 502/504 log lines, the startup and reload log lines,
  config error messages and the CLI's output.
* :func:`mask_personal` — e-mail addresses and long random tokens within a
  text are replaced by their shape (``<email len=15>``, ``<token len=43>``).
  Used for everything the shadow diff renders (status page, status.json,
  the metrics sample store), on top of the secret-key redaction in
  gateway/migration/diff.py.

Both run off the hot path (startup, error answers, diff rendering), so they
favour being thorough over being fast.
"""
from __future__ import annotations

import re
from typing import Any

# scheme://userinfo@ — the userinfo runs up to the *last* '@' before the path,
# as urllib.parse.urlsplit reads it, so 'http://u:p@ss@host' is masked whole.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s]*)@")


def redact_url(text: str) -> str:
    """Mask the credentials of every URL in ``text``.

    ``http://user:password@host/x`` → ``http://user:***@host/x``. A user name
    without a password is masked too (``http://***@host``): on its own it is
    usually a token (``https://<token>@github.com``). Text without URL
    credentials is returned unchanged.
    """
    if "@" not in text:
        return text  # the common case: nothing to mask, no regex run
    return _USERINFO.sub(_mask_userinfo, text)


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{user}:***@" if colon else f"{scheme}***@"


def redact_tree(value: Any) -> Any:
    """A JSON-like value with :func:`redact_url` applied to every string in it."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {redact_tree(k): redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return value


# -- personal data in diff samples ---------------------------------------------

# An e-mail address: the HTML5 spec's "valid e-mail address" shape, minus the
# local-part characters that delimit query strings ('=', '?', '&', '/'), plus
# the percent-encoded '@' of a query string (?email=ada%40example.com). Every
# quantifier is bounded (RFC 5321's 64-character local part, 63-character
# labels), so a long run of address characters costs linear time, not quadratic.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(r"[A-Za-z0-9.!#$'*+^_`{|}~\-]{1,64}(?:@|%40)" + _LABEL + r"(?:\." + _LABEL + r"){1,8}")
# A candidate token: a long run of the characters API keys, session ids, JWT
# segments, hex digests and UUIDs are made of. '/' and '.' end a run, so URL
# paths and dotted names are looked at piece by piece.
MIN_TOKEN = 20  # characters
_RUN = re.compile(rf"[A-Za-z0-9_\-+~]{{{MIN_TOKEN},}}")
HEX_TOKEN = 32  # hex digits
_HEX = frozenset("0123456789abcdefABCDEF-")


def looks_random(run: str) -> bool:
    """A long run that mixes letters and digits the way generated values do.

    Random base62/base64 strings switch between lower case, upper case and
    digits every few characters; words, snake_case names and CamelCase do not
    (``user_session_identifier_v2``, ``InvalidCredentialsError``), nor do
    numbers. Separators (``_-+~``) neither count nor break a switch. Hex
    switches less (six letters), so 32 hex digits or more — a digest, a UUID,
    a trace id — count as random on their own.

    A heuristic, with a measured miss rate: about 1 in 10,000
    ``secrets.token_urlsafe(32)`` values (a digit or none, long same-case
    runs) switch too seldom and read as a word, and 3 in 200,000 UUIDs; hex
    digests of 16 and 32 bytes were never missed in 200,000 samples each, nor
    64-character base62 values in 20,000.
    """
    if len(run) < MIN_TOKEN:
        return False
    digits = sum(c.isdigit() for c in run)
    letters = sum(c.isalpha() for c in run)
    if letters < 2:
        return False  # a number
    if digits >= 2 and digits + letters >= HEX_TOKEN and all(c in _HEX for c in run):
        return True
    switches, last = 0, None
    for c in run:
        kind = "d" if c.isdigit() else "u" if c.isupper() else "l" if c.islower() else None
        if kind is None:
            continue
        if last is not None and kind != last:
            switches += 1
        last = kind
    # Without digits only a case change every few letters says random: CamelCase
    # switches about every fifth letter, random mixed case every second.
    return switches * (5 if digits >= 2 else 3) >= len(run)


Span = tuple[int, int, str]  # (start, end, replacement) within a text


def personal_spans(text: str) -> list[Span]:
    """Where ``text`` holds an e-mail address or a random-looking token, in order."""
    spans: list[Span] = []
    searched = text
    if "@" in text or "%40" in text:
        pieces, last = [], 0
        for m in _EMAIL.finditer(text):
            spans.append((m.start(), m.end(), f"<email len={m.end() - m.start()}>"))
            # Blank the address out (same length, so offsets hold) before
            # looking for tokens: a long local part is not a second finding.
            pieces += [text[last:m.start()], "\0" * (m.end() - m.start())]
            last = m.end()
        searched = "".join(pieces) + text[last:]
    for m in _RUN.finditer(searched):
        if looks_random(m.group(0)):
            spans.append((m.start(), m.end(), f"<token len={m.end() - m.start()}>"))
    spans.sort()
    return spans


def mask_personal(text: str) -> str:
    """``text`` with e-mail addresses and random-looking tokens replaced by their shape.

    ``"ada@example.com"`` → ``"<email len=15>"``; a 43-character API key →
    ``"<token len=43>"``. Lengths stay visible because a length difference is
    often the whole diff (a truncated key, an extra character). Linear in
    ``len(text)``; for a long text shown cut, use :func:`mask_slice`.
    """
    return mask_slice(text, 0, len(text), context=0)


MASK_CONTEXT = 320  # characters looked at past each edge of a slice: a whole address (64 + 1 + 255)


def mask_slice(text: str, start: int, end: int, *, context: int = MASK_CONTEXT) -> str:
    """``text[start:end]`` masked, judged on ``context`` characters around it.

    An address or token that crosses an edge of the slice is still recognised
    and its mask is shown in place of the part inside, so cutting a long value
    for display never leaves half an address readable (``ada@exam``).
    """
    lo = max(0, start - context)
    spans = personal_spans(text[lo:min(len(text), end + context)])
    out: list[str] = []
    at = start
    for s, e, mask in spans:
        s, e = s + lo, e + lo
        if e <= start or s >= end:
            continue  # wholly outside the slice
        if s > at:
            out.append(text[at:s])
        out.append(mask)
        at = max(at, e)
    if at < end:
        out.append(text[at:end])
    return "".join(out)
