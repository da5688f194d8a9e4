"""The upstream: relaying a request to the legacy backend and its answer back.

``forwarder`` is the ASGI side (headers, bodies, errors), ``headers`` the
hop-by-hop and X-Forwarded-* rules, ``transport`` the httpx transport on top of
``pool`` (idle connections per origin), ``connection`` (one socket) and
``http11`` (the wire format). ``forwarders`` keeps one forwarder per legacy
setting across reloads.
"""
