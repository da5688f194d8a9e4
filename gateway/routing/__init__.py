"""Routing: routes.yaml → validated config → immutable route table, hot-swapped.

``config`` parses and validates the file, ``paths`` turns a raw request path
into the string the table matches, ``table`` answers "which route serves this
method and path", ``compile`` turns a config into a table bound to its
backends, and ``reload`` watches the file and swaps tables.
"""
