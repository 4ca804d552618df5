"""Helpers for the simulator tests (no tests here): a fake clock, a running simulator, signers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import orjson
from tencentcloud.common.sign import Sign  # Tencent's own SDK: an independent TC3 oracle

from worker.model import Provider
from worker.simulator import SimAccount, SimConfig, Simulator

# A fixed instant well inside a UTC+8 day (2024-05-10 11:00 UTC = 19:00 in China).
T0 = datetime(2024, 5, 10, 11, 0, tzinfo=timezone.utc).timestamp()


class FakeClock:
    """The simulator's clock seam: time moves only when a test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, secs: float) -> None:
        self.now += secs


def accounts(**overrides: Any) -> tuple[SimAccount, ...]:
    """One account per provider with small streams; `overrides` apply to every account."""
    base: dict[str, Any] = {"history_days": 2, "history_per_day": 150, "live_per_sec": 0.0, "live_max": 0}
    base.update(overrides)
    return (
        SimAccount(provider=Provider.ENGAGELAB, name="el", api_user="el_user", api_key="el_key", app_key="el_app", **base),
        SimAccount(provider=Provider.SENDCLOUD, name="sc", api_user="sc_user", api_key="sc_key", app_key="sc_app", **base),
        SimAccount(provider=Provider.AURORA_SENDCLOUD, name="au", api_user="au_user", api_key="au_key", app_key="au_app", **base),
        SimAccount(provider=Provider.UNISENDER, name="uni", api_user="uni_login", api_key="uni_key", **base),
        SimAccount(provider=Provider.TENCENT_SES, name="tc", secret_id="AKIDtest", secret_key="tc_secret",
                   region="ap-singapore", path_token="tc-token-0123456789abcdef", **base),
    )


@contextlib.asynccontextmanager
async def running(accts: tuple[SimAccount, ...] | None = None, *, clock: Any = None, seed: int = 7,
                  time_scale: float = 100.0) -> AsyncIterator[tuple[Simulator, str, aiohttp.ClientSession]]:
    sim = Simulator(SimConfig(seed=seed, accounts=accts or accounts(), time_scale=time_scale,
                              clock=clock or FakeClock()))
    base = await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield sim, base, session
    finally:
        await sim.stop()


def basic(user: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def tencent_headers(base: str, body: bytes, *, secret_id: str = "AKIDtest", secret_key: str = "tc_secret",
                    timestamp: int | None = None, region: str = "ap-singapore", action: str = "GetSendEmailStatus",
                    content_type: str = "application/json; charset=utf-8") -> dict[str, str]:
    """Headers of a TC3-signed request, built step by step with the SDK's key derivation."""
    ts = int(time.time()) if timestamp is None else timestamp
    host = base.split("://", 1)[1]
    day = datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")
    canonical = "\n".join(("POST", "/", "", f"content-type:{content_type}\nhost:{host}\n", "content-type;host",
                           hashlib.sha256(body).hexdigest()))
    to_sign = "\n".join(("TC3-HMAC-SHA256", str(ts), f"{day}/ses/tc3_request",
                         hashlib.sha256(canonical.encode()).hexdigest()))
    signature = Sign.sign_tc3(secret_key, day, "ses", to_sign)
    return {
        "Authorization": f"TC3-HMAC-SHA256 Credential={secret_id}/{day}/ses/tc3_request, "
                         f"SignedHeaders=content-type;host, Signature={signature}",
        "Content-Type": content_type, "Host": host, "X-TC-Action": action, "X-TC-Version": "2020-10-02",
        "X-TC-Timestamp": str(ts), "X-TC-Region": region,
    }


async def tencent_post(session: aiohttp.ClientSession, base: str, params: dict[str, Any], clock: Any,
                       **kw: Any) -> dict[str, Any]:
    body = orjson.dumps(params)
    headers = tencent_headers(base, body, timestamp=int(clock()), **kw)
    async with session.post(base + "/", data=body, headers=headers) as resp:
        assert resp.status == 200
        return orjson.loads(await resp.read())
