"""``make bench``: gateway throughput/latency/memory benchmark (see README.md)."""
