"""`make demo`: the Go stand-in on :1323 (seeded user) and the gateway on :1324.

A newcomer can then curl a signed-in session through both backends:

    curl -si -X POST localhost:1324/sign-in -d '{"email":"ada@example.com","password":"demo-password"}' \
         -H 'content-type: application/json'
    # copy the session cookie, then
    curl -s localhost:1324/auth-test -H 'Cookie: session=...'

Flip /auth-test to python in routes.yaml and the same cookie keeps working.

The gateway gets an admin token (GATEWAY_ADMIN_TOKEN, or a fresh random one),
printed with the lines that use it: /_gateway/routes, explain, metrics and the
status page need it (README, "Admin surface").
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.standin import standin_binary

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SECRET = os.environ.get("JUNJO_SESSION_SECRET", "demo-secret-change-me")
USER, PASSWORD = "ada@example.com", "demo-password"
# The demo's own admin token unless one is given; printed below, never stored.
ADMIN_TOKEN = os.environ.get("GATEWAY_ADMIN_TOKEN") or secrets.token_urlsafe(24)


def _wait(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def main() -> int:
    DATA.mkdir(exist_ok=True)
    env = {**os.environ, "JUNJO_SESSION_SECRET": SECRET, "JUNJO_SQLITE_PATH": str(DATA / "app_data.db")}
    standin = subprocess.Popen([str(standin_binary()), "-addr", "127.0.0.1:1323", "-sqlite", str(DATA / "app_data.db"),
                                "-seed-user", f"{USER}:{PASSWORD}"], env=env)
    gateway = None
    try:
        _wait("http://127.0.0.1:1323/ping")
        gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(REPO / "routes.yaml"),
                                    "--port", "1324"], env={**env, "LEGACY_URL": "http://127.0.0.1:1323",
                                                              "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN})
        _wait("http://127.0.0.1:1324/_gateway/health")
        print(f"""
demo running: Go stand-in http://127.0.0.1:1323, gateway http://127.0.0.1:1324 (Ctrl-C stops both)
  sign in:   curl -si -X POST localhost:1324/sign-in -H 'content-type: application/json' \\
               -d '{{"email":"{USER}","password":"{PASSWORD}"}}'
  who am I:  curl -s localhost:1324/auth-test -H 'Cookie: session=<value from Set-Cookie>'
  routing:   .venv/bin/gateway routes
  admin:     token {ADMIN_TOKEN}
             curl -s localhost:1324/_gateway/routes -H 'X-Gateway-Admin-Token: {ADMIN_TOKEN}'
             status page: http://127.0.0.1:1324/_gateway/status (the browser asks: any user name, the token as password)
  migrate:   edit routes.yaml (e.g. /auth-test → python); the same cookie keeps working
""", flush=True)
        while standin.poll() is None and gateway.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (gateway, standin):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # SIGTERM ends the demo like Ctrl-C (and the children with it). Handlers,
    # not a blocked signal mask: children inherit a mask and would ignore TERM.
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
