"""Echo's ``c.Bind`` + go-playground/validator for ``{"email","password"}`` bodies.

Binding goes through the shared Echo binder (services/common/gobind.py): the
exact media types Echo 4.13.3 accepts (JSON, XML, form), Go's JSON decoding
(case-insensitive keys, lone surrogates → U+FFFD) and Go's error texts. Bind
errors are wrapped by the handlers as Go does (``echo.NewHTTPError(400,
err.Error())``), so their message starts ``code=…, message=…``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.gobind import STRING, Struct, echo_bind
from services.common.gobind import BindError as GoBindError



class BindError(ValueError):
    """The body cannot be bound; ``str(err)`` is the legacy-style message."""


@dataclass
class Credentials:
    email: str = ""
    password: str = ""


def bind_credentials(body: bytes, content_type: str, struct: str, *, chunked: bool = False) -> Credentials:
    """``c.Bind(&req)`` into the legacy's ``{Email, Password}`` struct, through the
    shared Echo binder (media types, Go's JSON rules and error texts, XML)."""
    typ = Struct(struct, "auth", (("Email", "email", STRING), ("Password", "password", STRING)))
    try:
        bound = echo_bind(body, content_type, typ, chunked=chunked)
    except GoBindError as exc:
        raise BindError(str(exc)) from None
    return Credentials(email=bound["Email"] or "", password=bound["Password"] or "")


# go-playground/validator's "email" (dot-atom local part; the quoted-string
# form is not accepted here).
_U = "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef"
_ATEXT = rf"[a-zA-Z0-9!#$%&'*+\-/=?^_`{{|}}~{_U}]"
_LABEL = rf"(?:[a-zA-Z0-9{_U}]|[a-zA-Z0-9{_U}][a-zA-Z0-9\-.~{_U}]*[a-zA-Z0-9{_U}])"
_TLD = rf"(?:[a-zA-Z{_U}]|[a-zA-Z{_U}][a-zA-Z0-9\-.~{_U}]*[a-zA-Z{_U}])"
EMAIL_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_TLD}\Z")


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
