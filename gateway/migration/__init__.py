"""Migration evidence: the route states between ``go`` and ``python``.

``shadow`` serves Go and replays to Python, ``diff`` compares the two answers,
``canary`` splits users stickily, ``rollback`` moves a failing canary back to
Go, ``override`` lets ops force a backend for one request.
"""
