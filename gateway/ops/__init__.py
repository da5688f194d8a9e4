"""Operating the gateway: the ``/_gateway/`` admin surface, ``explain``,
metrics, the migration status page, request ids and trace context."""
