"""Status-page data for the tests: a realistic page, and one with markup in
every string the page shows."""
from __future__ import annotations

import copy

USERS = {
    "prefix": "/users", "methods": None, "state": "canary", "canary_percent": 25,
    "share": {"go": 0.75, "python": 0.25},
    "parity": {"shadowed": 120, "matched": 118, "rate": 0.983},
    "backends": {"go": {"requests": 90, "error_rate": 0.0, "p50_ms": 3.1, "p99_ms": 9.8},
                 "python": {"requests": 30, "error_rate": 0.033, "p50_ms": 2.0, "p99_ms": 7.5}},
    "last_change_s": 180.0, "notes": ["auto-rollback armed: error rate +5%, p99 ×1.5, min 100 requests"],
    "top_differences": [{"field": "body:$.Name", "count": 2, "sample": '@ body:$.Name\n- go:     "a"\n+ python: "b"'}],
}

DATA = {
    "generated_at": "2026-11-27T17:00:00Z", "table_version": "abc123def456", "config_error": None,
    "routes": [
        USERS,
        {"prefix": "/api-keys", "methods": ["GET", "POST"], "state": "shadow",
         "share": {"go": 1.0, "python": 0.0},
         "parity": {"shadowed": 400, "matched": 352, "rate": 0.88, "dropped": 3, "python_errors": 0},
         "backends": {"go": {"requests": 400, "error_rate": 0.0025, "p50_ms": 4.2, "p99_ms": 21.0},
                      "python (shadow)": {"requests": 400, "error_rate": 0.01, "p50_ms": 6.0, "p99_ms": 180.0}},
         "last_change_s": 7200.0, "notes": [],
         "top_differences": [
             {"field": "body:$[*].CreatedAt", "count": 40,
              "sample": '@ body:$[*].CreatedAt\n- go:     "2026-11-27T16:59:01Z"\n+ python: "2026-11-27T16:59:01.000Z"'},
             {"field": "body:$[*].Key", "count": 8,
              "sample": '@ body:$[*].Key\n- go:     "<redacted len=32>"\n+ python: <missing>'},
         ]},
        {"prefix": "/auth", "methods": None, "state": "python", "share": {"go": 0.0, "python": 1.0},
         "parity": None,
         "backends": {"python": {"requests": 1200, "error_rate": 0.0, "p50_ms": 1.2, "p99_ms": 4.0}},
         "last_change_s": 3 * 86400.0,
         "notes": ["auto-rolled back at 2026-11-25T10:04Z because python p99 41 ms > go 12 ms ×2; re-enabled by ops"]},
        {"prefix": "/llm", "methods": ["POST"], "state": "go (rolled back)", "canary_percent": None,
         "share": {"go": 0.9, "python": 0.1}, "parity": None,
         "backends": {"go": {"requests": 900, "error_rate": 0.001, "p50_ms": 120.0, "p99_ms": 900.0},
                      "python": {"requests": 100, "error_rate": 0.09, "p50_ms": 130.0, "p99_ms": 2400.0}},
         "last_change_s": 95.0,
         "notes": ["automatically rolled back to go at 16:58:25 UTC: python 5xx rate 9.0% > go 0.1% + 5%"]},
        {"prefix": "/otel", "methods": None, "state": "go", "share": {"go": 0.0, "python": 0.0},
         "parity": None, "backends": {}, "last_change_s": None, "notes": []},
        {"prefix": "(default)", "methods": None, "state": "go", "share": {"go": 1.0, "python": 0.0},
         "parity": None, "backends": {"go": {"requests": 5000, "error_rate": 0.0004, "p50_ms": 2.4, "p99_ms": 15.3}},
         "last_change_s": None, "notes": []},
    ],
}
PREFIXES = [r["prefix"] for r in DATA["routes"]]


def data_with(**route_changes) -> dict:
    d = copy.deepcopy(DATA)
    d["routes"][0].update(route_changes)
    return d


# Scripts that would show, if they ran, by renaming the page (an alert()
# would instead hang headless Chromium until its timeout).
HOSTILE = '<script>document.title="pwned"</script>'


def hostile_data() -> dict:
    """Markup in every string the page shows."""
    d = data_with(
        prefix=f"/u{HOSTILE}<b>", methods=["GET<i>", HOSTILE], state=f"canary {HOSTILE}",
        notes=[HOSTILE, "a & b <img src=x onerror=document.title=1>"],
        backends={"go": {"requests": 1, "error_rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0},
                  f"python{HOSTILE}": {"requests": 1, "error_rate": 0.5, "p50_ms": 1.0, "p99_ms": 9.0}},
        top_differences=[{"field": f"body:$.{HOSTILE}", "count": 1,
                          "sample": f'- go:     "{HOSTILE}"\n+ python: "&amp; </pre><script>"'}])
    d["table_version"] = "<v>"
    d["generated_at"] = "&now"
    d["config_error"] = f"line 1: {HOSTILE}"
    return d
