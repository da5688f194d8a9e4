"""Unit tests: one module at a time, in process, no sockets or child processes
(but for a few CLI calls); ``pytest tests/unit`` runs in seconds."""
