"""The canary rollback verdict under realistic latency noise (no sockets)."""
from __future__ import annotations

import random

from gateway.migration.rollback import Window, tail_quantile, verdict
from gateway.routing.config import RollbackSpec


def window(latencies: list[float], errors: int = 0) -> Window:
    w = Window()
    for i, seconds in enumerate(latencies):
        w.add(500 if i < errors else 200, seconds)
    return w


def noisy(rng: random.Random, n: int, median: float = 0.004) -> list[float]:
    """Latencies as a healthy service shows them: log-normal around the median,
    and 1 request in 50 hitting a hiccup (GC pause, cold cache) 5-30 times slower."""
    out = []
    for _ in range(n):
        t = rng.lognormvariate(0, 0.35) * median
        if rng.random() < 0.02:
            t *= rng.uniform(5, 30)
        out.append(t)
    return out


def test_one_hiccup_among_the_minimum_requests_is_no_regression():
    # 20 requests each: with a p99 over 20 samples (their maximum), this one
    # slow Python request rolled a healthy route back.
    rule = RollbackSpec(min_requests=20)
    go = window([0.004] * 20)
    py = window([0.004] * 19 + [0.250])
    assert verdict(rule, go, py) is None


def test_equal_backends_with_realistic_noise_are_never_rolled_back():
    for min_requests in (20, 50, 100, 200, 500, 1000):
        rule = RollbackSpec(min_requests=min_requests)
        for seed in range(200):
            go = window(noisy(random.Random(seed), min_requests))
            py = window(noisy(random.Random(seed + 10**6), min_requests))
            assert verdict(rule, go, py) is None, (min_requests, seed)


def test_python_four_times_slower_is_rolled_back():
    for min_requests in (50, 100):
        rule = RollbackSpec(min_requests=min_requests)
        caught = 0
        for seed in range(200):
            go = window(noisy(random.Random(seed), min_requests))
            py = window(noisy(random.Random(seed + 10**6), min_requests, median=0.016))
            why = verdict(rule, go, py)
            caught += why is not None and "python p" in why
        assert caught >= 160, (min_requests, caught)  # 80 %: a tail quantile of 100 samples is noisy


def test_the_tail_is_the_p99_once_the_window_supports_it():
    assert tail_quantile(20) == 0.5
    assert tail_quantile(100) == 0.9
    assert tail_quantile(1000) == 0.99
    assert tail_quantile(5000) == 0.99
    rule = RollbackSpec(min_requests=1000)
    go = window([0.004] * 1000)
    py = window([0.004] * 970 + [0.1] * 30)  # 3 % very slow: the p99 sees it
    assert "p99" in (verdict(rule, go, py) or "")


def test_an_error_rate_regression_is_judged_as_before():
    rule = RollbackSpec(min_requests=20, max_error_rate_increase=0.05)
    assert verdict(rule, window([0.004] * 40), window([0.004] * 40, errors=4)) is not None
    assert verdict(rule, window([0.004] * 40, errors=2), window([0.004] * 40, errors=3)) is None
    assert verdict(rule, window([0.004] * 19), window([0.004] * 40, errors=40)) is None  # too few on go
