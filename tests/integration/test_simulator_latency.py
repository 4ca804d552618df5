"""The simulator's round-trip delay (`latency_ms`, `set_latency`, `simulate --latency-ms`), over real
HTTP on 127.0.0.1: every status-API answer waits at least that long; the call is logged and
charged to the quota when it arrives; the delay is per account or global. Lower bounds only."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from tests.integration.test_simulator_cli import parse
from worker.model import Provider
from worker.simulator import SimAccount, SimConfig, Simulator, cli

pytestmark = pytest.mark.integration

DELAY_MS = 200.0


def sendcloud(name: str, user: str, quota: int = 3000) -> SimAccount:
    return SimAccount(provider=Provider.SENDCLOUD, name=name, api_user=user, api_key="k", app_key="a",
                      quota_per_minute=quota, history_days=1, history_per_day=20, live_per_sec=0.0, live_max=0)


async def timed_post(session: aiohttp.ClientSession, url: str, user: str) -> tuple[float, float, dict]:
    """(seconds until the whole answer was read, wall clock when it was, the answer)."""
    started = time.monotonic()
    async with session.post(url, data={"apiUser": user, "apiKey": "k", "days": "1"}) as resp:
        body = orjson.loads(await resp.read())
    return time.monotonic() - started, time.time(), body


async def test_answers_wait_the_latency_and_the_quota_is_charged_on_arrival():
    sim = Simulator(SimConfig(seed=3, accounts=(sendcloud("far", "far_user", quota=1), sendcloud("near", "near_user")),
                              latency_ms=DELAY_MS))
    base = await sim.start()
    url = base + "/apiv2/data/emailStatus"
    try:
        async with aiohttp.ClientSession() as session:
            took, answered_at, body = await timed_post(session, url, "far_user")
            assert body["result"] is True and took >= DELAY_MS / 1000
            assert answered_at - sim.calls[-1].at >= DELAY_MS / 1000  # logged (and charged) on arrival
            assert sim.stats("far")["ok"] == 1
            # the quota of one call a minute is spent: the throttle answer waits the round trip too
            took, _, body = await timed_post(session, url, "far_user")
            assert body.get("statuscode") == 50000 and took >= DELAY_MS / 1000
            # an unknown account's auth error waits the global latency
            took, _, body = await timed_post(session, url, "nobody")
            assert body["statusCode"] == 40005 and took >= DELAY_MS / 1000

            # per account: `near` gets its own, longer delay; `far` keeps the global one
            sim.set_latency(2 * DELAY_MS, "near")
            assert (sim.latency("near"), sim.latency("far")) == (2 * DELAY_MS, DELAY_MS)
            took, _, body = await timed_post(session, url, "near_user")
            assert body["result"] is True and took >= 2 * DELAY_MS / 1000
            # answers waiting out their round trip at once are counted (what a benchmark reads)
            sim.peak_in_flight.clear()
            answers = await asyncio.gather(*(timed_post(session, url, "near_user") for _ in range(3)))
            assert all(took >= 2 * DELAY_MS / 1000 for took, _, _ in answers)
            assert sim.peak_in_flight["near"] == 3 and sim.in_flight["near"] == 0
            # the global setter leaves the per-account setting alone
            sim.set_latency(0)
            assert (sim.latency("near"), sim.latency("far")) == (2 * DELAY_MS, 0.0)
            async with session.get(base + "/_sim/stats") as resp:
                stats = await resp.json()
            assert stats["accounts"]["near"]["latency_ms"] == 2 * DELAY_MS
    finally:
        await sim.stop()
    with pytest.raises(KeyError):
        sim.set_latency(1, "missing")
    with pytest.raises(ValueError):
        sim.set_latency(-1)


def test_cli_flag_and_accounts_file(tmp_path, capsys):
    args = parse(["--port", "0", "--duration", "0.2", "--latency-ms", "150"])
    assert args.latency_ms == 150.0
    assert cli.run(args) == 0
    assert orjson.loads(capsys.readouterr().out.splitlines()[0])["latency_ms"] == 150.0
    path = tmp_path / "sim.yaml"
    path.write_text("latency_ms: 75\naccounts:\n"
                    "  - {provider: sendcloud, name: cn, api_user: u, api_key: k, app_key: a, history_per_day: 5}\n")
    assert cli.load_sim_config(path).latency_ms == 75.0
    with pytest.raises(SystemExit) as refused:   # argparse's one line and exit 2, before anything runs
        parse(["--config", str(path), "--port", "0", "--latency-ms", "-5"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("argument --latency-ms: -5 is not at least 0")
    path.write_text("latency_ms: -5\naccounts: []\n")     # the same bound in the accounts file
    assert cli.run(parse(["--config", str(path), "--port", "0"])) == 2
