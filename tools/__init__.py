"""Developer tools that are not tests: the benchmark and the demo."""
