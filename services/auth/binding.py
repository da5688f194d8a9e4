"""Echo's ``c.Bind`` + go-playground/validator for ``{"email","password"}`` bodies.

Binding goes through the shared Echo binder (services/common/gobind.py), as
every feature's does: the exact media types Echo 4.13.3 accepts (JSON, XML,
form — the URL query included, as ``r.ParseForm`` reads it), Go's JSON decoding
(case-insensitive keys, lone surrogates → U+FFFD) and Go's error texts. Bind
errors are wrapped by the handlers as Go does (``echo.NewHTTPError(400,
err.Error())``), so their message starts ``code=…, message=…``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from services.common.gobind import STRING, BindError, Struct, bind_request

__all__ = ["BindError", "Credentials", "bind_credentials", "validate_sign_in"]


@dataclass
class Credentials:
    email: str = ""
    password: str = ""


def credentials_struct(name: str) -> Struct:
    """The legacy's ``{Email, Password}`` struct (``SigninRequest`` or ``CreateUserRequest``)."""
    return Struct(name, "auth", (("Email", "email", STRING), ("Password", "password", STRING)))


_STRUCTS = {name: credentials_struct(name) for name in ("SigninRequest", "CreateUserRequest")}


async def bind_credentials(request: Request, struct: str) -> Credentials:
    """``c.Bind(&req)`` into the legacy's ``{Email, Password}`` struct, through the
    shared Echo binder (media types, Go's JSON rules and error texts, XML, form).
    Raises the shared :class:`BindError`; ``str(err)`` is Echo's ``err.Error()``."""
    bound = await bind_request(request, _STRUCTS[struct])
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
