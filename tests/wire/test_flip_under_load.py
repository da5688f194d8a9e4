"""Flip a prefix between go and python many times under concurrent load:
zero failed requests, and each one answered by the backend the table held."""
from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from tests.support.gateway_proc import config_version, routes_yaml

pytestmark = pytest.mark.long(seconds=11)  # paced load while the table flips

FLIPS = 20
# Each load task rests this long between its requests. Unpaced, the tasks kept
# the test's own event loop saturated (an httpx client costs far more CPU per
# request than the gateway does): the flips queued behind them and the test
# burned ~6 CPU-s of the suite making load nobody measures. Paced, eight tasks
# still keep requests in flight across the swaps (counted below).
PAUSE = 0.002


def _config(standin_url: str, target: str) -> str:
    return routes_yaml(standin_url, f"  - prefix: /_standin/echo\n    to: {target}\n")


def _backend(resp: httpx.Response) -> str:
    body = resp.json()
    return "python" if body.get("backend") == "python" else "go" if "method" in body else "?"


def test_flipping_under_load_fails_no_request(gateway_factory, standin):
    gw = gateway_factory(_config(standin.url, "go"))
    failures: list[str] = []
    served = {"go": 0, "python": 0}
    stop = asyncio.Event()
    in_flight = 0
    busy_swaps = 0  # flips whose reload signal found load requests in flight

    async def background(client: httpx.AsyncClient, n: int) -> None:
        nonlocal in_flight
        i = 0
        while not stop.is_set():
            i += 1
            in_flight += 1
            try:
                # Alternate bodyless GETs and POSTs with a body: both must survive a swap.
                if i % 2:
                    r = await client.get(f"/_standin/echo/{n}/{i}")
                else:
                    r = await client.post(f"/_standin/echo/{n}/{i}", content=b"x" * 2048)
                if r.status_code != 200 or _backend(r) == "?":
                    failures.append(f"{r.status_code} {r.text[:100]}")
                else:
                    served[_backend(r)] += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            finally:
                in_flight -= 1
            await asyncio.sleep(PAUSE)

    async def wait_version(client: httpx.AsyncClient, text: str) -> None:
        # The async twin of GatewayProc.apply_config: the event loop is busy with the load.
        want = config_version(text)
        headers = {"X-Gateway-Admin-Token": gw.admin_token}
        for _ in range(500):
            if (await client.get("/_gateway/routes", headers=headers)).json()["version"] == want:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("reload did not happen")

    async def scenario() -> None:
        nonlocal busy_swaps
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=gw.url, limits=limits, timeout=10) as client:
            workers = [asyncio.create_task(background(client, n)) for n in range(8)]
            for flip in range(FLIPS):
                target = "python" if flip % 2 == 0 else "go"
                text = _config(standin.url, target)
                gw.write_config(text)
                # Reload now rather than at the next poll of the file (tested
                # on its own): the swap under load is what this test is about.
                gw.proc.send_signal(signal.SIGHUP)
                busy_swaps += in_flight > 0
                await wait_version(client, text)
                # The table now says `target`: every new request goes there.
                answers = await asyncio.gather(*(client.get("/_standin/echo/check") for _ in range(10)))
                assert {_backend(r) for r in answers} == {target}, f"flip {flip}"
            stop.set()
            await asyncio.gather(*workers)

    asyncio.run(scenario())
    assert failures == []
    assert served["go"] > 0 and served["python"] > 0
    # Under load: most swaps happened with requests of the load on the wire.
    assert busy_swaps >= FLIPS // 2, f"only {busy_swaps} of {FLIPS} swaps met requests in flight"
