"""A browser-like cookie jar over httpx, for end-to-end auth journeys.

What it does, the way a browser (and the unchanged frontend) would:

* stores every ``Set-Cookie`` by name (one host, so name is the key);
* honours deletions: ``Max-Age=0`` (or negative) deletes, and without
  ``Max-Age`` an ``Expires`` in the past deletes (``Max-Age`` wins when both
  are present, RFC 6265 §5.3 step 3);
* sends the stored cookies back in one ``Cookie`` header;
* ignores ``Secure`` — the tests run over plain http on loopback, where a real
  browser would refuse to send the Secure ``session``/``csrf`` cookies;
* on unsafe methods sends ``X-CSRF-Token`` with the token the last
  ``GET /csrf`` returned in its body (the ``csrf`` cookie is HttpOnly, so a
  frontend can only learn the token from that body). The legacy CSRF lookup is
  ``header:X-CSRF-Token,cookie:csrf``, so the cookie alone also passes; pass
  ``send_csrf_header=False`` to behave like a client that never sends it.

Path/Domain scoping is deliberately not modelled (single host, and the legacy
``csrf`` cookie has no ``Path``; see docs/migrating-auth.md, caveats).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class SetCookie:
    """One parsed ``Set-Cookie`` header: name, value and its attributes.

    ``attrs`` maps the attribute name as sent (``Path``, ``Max-Age``, ``HttpOnly``
    …) to its value (``None`` for flags), in the order they were sent.
    """

    raw: str
    name: str
    value: str
    attrs: dict[str, str | None]

    @classmethod
    def parse(cls, header: str) -> SetCookie:
        pair, *rest = header.split(";")
        name, _, value = pair.strip().partition("=")
        attrs: dict[str, str | None] = {}
        for part in rest:
            part = part.strip()
            if not part:
                continue
            key, eq, val = part.partition("=")
            attrs[key.strip()] = val.strip() if eq else None
        return cls(header, name.strip(), value.strip(), attrs)

    def attr(self, name: str) -> str | None:
        for key, val in self.attrs.items():
            if key.lower() == name.lower():
                return val
        return None

    def has(self, name: str) -> bool:
        return any(key.lower() == name.lower() for key in self.attrs)

    @property
    def expires_at(self) -> float | None:
        raw = self.attr("Expires")
        return parsedate_to_datetime(raw).timestamp() if raw else None

    def is_deletion(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if self.has("Max-Age"):
            try:
                return int(self.attr("Max-Age") or "0") <= 0
            except ValueError:
                return False  # an unparsable Max-Age is ignored (RFC 6265)
        expires = self.expires_at
        return expires is not None and expires <= now


def set_cookies(response: httpx.Response) -> list[SetCookie]:
    return [SetCookie.parse(h) for h in response.headers.get_list("set-cookie")]


def set_cookie(response: httpx.Response, name: str) -> SetCookie:
    """The single ``Set-Cookie`` for ``name`` in ``response`` (asserts exactly one)."""
    found = [c for c in set_cookies(response) if c.name == name]
    assert len(found) == 1, f"expected one Set-Cookie {name!r}, got {response.headers.get_list('set-cookie')}"
    return found[0]


@dataclass
class BrowserJar:
    base_url: str
    send_csrf_header: bool = True
    timeout: float = 10.0
    cookies: dict[str, str] = field(default_factory=dict)
    csrf_token: str | None = None
    history: list[httpx.Response] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout)

    # --- the jar ------------------------------------------------------------

    def store(self, response: httpx.Response) -> None:
        now = time.time()
        for cookie in set_cookies(response):
            if cookie.is_deletion(now):
                self.cookies.pop(cookie.name, None)
            else:
                self.cookies[cookie.name] = cookie.value

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    # --- requests -------------------------------------------------------------

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs) -> httpx.Response:
        method = method.upper()
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = self.cookie_header()
        if self.send_csrf_header and self.csrf_token and method in UNSAFE_METHODS:
            hdrs.setdefault("X-CSRF-Token", self.csrf_token)
        self._client.cookies.clear()  # httpx must not keep or add cookies of its own
        response = self._client.request(method, path, headers=hdrs, **kwargs)
        self._client.cookies.clear()
        self.store(response)
        if method == "GET" and path == "/csrf" and response.status_code == 200:
            self.csrf_token = response.json()["csrfToken"]
        self.history.append(response)
        return response

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BrowserJar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
