"""Debian's headless Chromium, for tests that must see a page the way a browser does.

``screenshot`` (the PNG and the DOM) and ``dump_dom`` run one short-lived
``chromium --headless`` per call with a fresh profile directory, so nothing
leaks between tests (no cache, no cookies, no first-run state). A fresh CI
machine has no Chromium: `make test` installs Debian's package before pytest
runs (``make browser``); without it the tests that must look at a page fail
with a message that says what to install, rather than silently skipping.

The background-service flags keep Chromium from phoning home (component
updates, sync, QUIC probes) so a test needs only the loopback server it reads.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 60.0

_QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace sandbox to drop into
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # a CI proxy from the environment must not sit between us and loopback
    "--hide-scrollbars",  # a scrollbar changes with font metrics, not with the page
)


class BrowserUnavailable(RuntimeError):
    """No Chromium here and we may not install one; the message says how to get it."""


def find_chromium() -> str | None:
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def ensure_chromium() -> str:
    """The Chromium binary; `make test` (and so `.ci/run`) installs Debian's
    package first where it is missing. Tests never install anything."""
    if path := find_chromium():
        return path
    raise BrowserUnavailable(
        "headless Chromium not found (looked for " + ", ".join(CANDIDATES) + "); "
        "`make test` installs it (make browser), or run `sudo apt-get install -y chromium`"
    )


def _run(extra: list[str], url: str, width: int, height: int) -> subprocess.CompletedProcess[bytes]:
    binary = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [binary, *_QUIET_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", *extra, url]
        done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
    return done


def screenshot(url: str, out_png: Path, width: int = 1280, height: int = 900) -> str:
    """Render ``url`` once: write a ``width``×``height`` PNG to ``out_png`` and
    return the serialised DOM after load, as Chromium built it (one launch for
    both: a launch is ~1 CPU-s)."""
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    out_png.unlink(missing_ok=True)  # so a stale file can't pass for a fresh shot
    done = _run([f"--screenshot={out_png}", "--dump-dom"], url, width, height)
    if not out_png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode("utf-8", errors="replace")


def dump_dom(url: str, width: int = 1280, height: int = 900) -> str:
    """The serialised DOM of ``url`` after load, as Chromium built it."""
    return _run(["--dump-dom"], url, width, height).stdout.decode("utf-8", errors="replace")
