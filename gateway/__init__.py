"""Strangler-fig gateway: one API host in front of a legacy Go backend and the
Python feature modules replacing it, route by route (see routes.yaml)."""
