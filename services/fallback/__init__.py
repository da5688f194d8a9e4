"""Paths no feature serves, answered the way the legacy answers unknown paths.

Echo runs its middleware on every request, routed or not (contract, "Middleware
order"), so an unknown path gets, in this order:

* CSRF: ``POST``/``PUT``/``PATCH``/``DELETE`` without a ``csrf`` cookie → 400
  ``{"message":"missing value in cookies"}``; every other answer sets the
  ``csrf`` cookie (and ``Vary: Cookie``);
* Auth: no valid ``session`` → 401 ``{"message":"Unauthorized: No valid session"}``
  (no unknown path is public);
* then Echo's router: 404 ``{"message":"Not Found"}`` (no body for HEAD).

That is exactly the shared legacy middleware around a router with no routes.
The gateway reaches this service only through ``default: python`` (or a ``/``
route), via ``Registry.catch_all``: paths another service owns go to it.
"""
from services.common.echo_router import EchoRouter
from services.common.protect import protect
from services.registry import Service

SERVICE = Service(name="fallback", prefixes=(), app=protect(EchoRouter([])), fallback=True)

__all__ = ["SERVICE"]
