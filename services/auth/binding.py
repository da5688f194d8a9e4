"""Echo's ``c.Bind`` + go-playground/validator for ``{"email","password"}`` bodies.

Mirrors the legacy behaviour closely, not byte for byte in the error *texts*:

* empty body (no Content-Length / 0) → nothing bound (then ``required`` fails);
* ``Content-Type`` starting with ``application/json`` → first JSON value decoded;
  keys match case-insensitively (Go's encoding/json), last duplicate wins,
  ``null`` leaves the field empty, trailing data after the value is ignored;
* form bodies bind nothing (the legacy struct has no ``form`` tags);
* any other content type → ``code=415, message=Unsupported Media Type``.

Bind errors are wrapped by the handlers as Go does (``echo.NewHTTPError(400,
err.Error())``), so their message starts ``code=400, message=…``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

FIELDS = ("email", "password")


class BindError(ValueError):
    """The body cannot be bound; ``str(err)`` is the legacy-style message."""


@dataclass
class Credentials:
    email: str = ""
    password: str = ""


def _json_error(exc: json.JSONDecodeError) -> BindError:
    detail = exc.msg
    return BindError(
        f"code=400, message=Syntax error: offset={exc.pos + 1}, error={detail}, internal={detail}"
    )


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def bind_credentials(body: bytes, content_type: str, struct: str) -> Credentials:
    creds = Credentials()
    if not body:
        return creds
    ctype = content_type.strip()
    if ctype.startswith("application/x-www-form-urlencoded") or ctype.startswith("multipart/form-data"):
        return creds
    if not ctype.startswith("application/json"):
        raise BindError("code=415, message=Unsupported Media Type")
    try:
        text = body.decode("utf-8", errors="replace")
        value, _ = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip(" \t\r\n")))
    except json.JSONDecodeError as exc:
        raise _json_error(exc) from None
    if value is None:
        return creds
    if not isinstance(value, dict):
        got = _type_name(value)
        raise BindError(
            f"code=400, message=Unmarshal type error: expected=auth.{struct}, got={got}, "
            f"field=, offset=1, internal=json: cannot unmarshal {got} into Go value of type auth.{struct}"
        )
    for key, val in value.items():
        field = key.lower()
        if field not in FIELDS or val is None:
            continue
        if not isinstance(val, str):
            got = _type_name(val)
            raise BindError(
                f"code=400, message=Unmarshal type error: expected=string, got={got}, field={field}, "
                f"offset=0, internal=json: cannot unmarshal {got} into Go struct field "
                f"{struct}.{field} of type string"
            )
        setattr(creds, field, val)
    return creds


# go-playground/validator's "email" (dot-atom local part; the quoted-string
# form is not accepted here).
_U = "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef"
_ATEXT = rf"[a-zA-Z0-9!#$%&'*+\-/=?^_`{{|}}~{_U}]"
_LABEL = rf"(?:[a-zA-Z0-9{_U}]|[a-zA-Z0-9{_U}][a-zA-Z0-9\-.~{_U}]*[a-zA-Z0-9{_U}])"
_TLD = rf"(?:[a-zA-Z{_U}]|[a-zA-Z{_U}][a-zA-Z0-9\-.~{_U}]*[a-zA-Z{_U}])"
EMAIL_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_TLD}\.?\Z")


def validate_sign_in(creds: Credentials, struct: str = "SigninRequest") -> str | None:
    """validator's error text (one line per failing field), or None when valid."""
    errors = []
    if not creds.email:
        errors.append(f"Key: '{struct}.Email' Error:Field validation for 'Email' failed on the 'required' tag")
    elif not EMAIL_RE.match(creds.email):
        errors.append(f"Key: '{struct}.Email' Error:Field validation for 'Email' failed on the 'email' tag")
    if not creds.password:
        errors.append(f"Key: '{struct}.Password' Error:Field validation for 'Password' failed on the 'required' tag")
    return "\n".join(errors) or None
