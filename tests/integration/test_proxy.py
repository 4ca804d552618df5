"""Provider calls through a forward proxy (issue 18: corporate clusters polling providers in China
or Russia usually egress through one). The worker honours HTTP_PROXY / HTTPS_PROXY / NO_PROXY for
its status-API calls (read once per host: worker.poll.fetch `egress`): every call of a sweep goes
through a local forward proxy when the variables name it, and none when NO_PROXY exempts the
provider's host. The proxy is a small aiohttp app that forwards absolute-form requests, as squid or
an egress gateway does."""

from __future__ import annotations

import collections
import time

import aiohttp
import pytest
from aiohttp import web

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS
from tests.integration.test_quota_bound import expected_visible, settled_anchor
from tests.integration.world import ENV, diff, observed, sim_account, worker_account
from worker.model import Provider
from worker.simulator import SimConfig, Simulator

pytestmark = pytest.mark.integration

HOP_BY_HOP = {"host", "proxy-connection", "proxy-authorization", "connection", "keep-alive", "transfer-encoding"}


class ForwardProxy:
    """Forwards every request it gets (absolute-form target) and remembers the URLs."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None
        self.client: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self.client is not None
        self.seen.append(str(request.url))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self.client.request(request.method, str(request.url), headers=headers,
                                       data=await request.read()) as r:
            body = await r.read()
            return web.Response(status=r.status, body=body,
                                headers={"Content-Type": r.headers.get("Content-Type", "application/octet-stream")})

    async def start(self) -> str:
        self.client = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()


async def _sweep(kafka_bootstrap: str, topic_prefix: str) -> tuple[Simulator, str, collections.Counter, list]:
    acct = sim_account(Provider.SENDCLOUD, "egress", cache_ttl_secs=600, history_days=2, history_per_day=300,
                       live_per_sec=0, live_max=0)
    sim = Simulator(SimConfig(seed=61, accounts=(acct,), time_scale=1, anchor=settled_anchor(time.time())))
    base = await sim.start()
    account = worker_account(acct, base, webhook=False, poll={"lookback_days": 4, "interval_min_secs": 600,
                                                              "interval_max_secs": 3600})
    data = worker_config(kafka_bootstrap, topic_prefix, [account])
    expected = expected_visible(sim, "egress")
    try:
        async with InProcessWorker(data, ENV) as worker:
            await wait_ready(worker.url)
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=90, quiet_secs=3)
    finally:
        await sim.stop()
    return sim, base, expected, records


@pytest.mark.parametrize("exempt", [False, True], ids=["through the proxy", "NO_PROXY exempts the host"])
async def test_status_calls_go_through_the_proxy_the_environment_names(kafka_bootstrap, topic_prefix, monkeypatch,
                                                                       exempt):
    proxy = ForwardProxy()
    url = await proxy.start()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("HTTPS_PROXY", url)
    if exempt:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        sim, base, expected, records = await _sweep(kafka_bootstrap, topic_prefix)
    finally:
        await proxy.stop()
    calls = [c for c in sim.calls if c.account == "egress"]
    proxied = [u for u in proxy.seen if u.startswith(base.rstrip("/") + "/")]
    print(f"\nproxy: {len(calls)} status calls, {len(proxy.seen)} requests through the proxy")
    actual, _ = observed(records)
    assert actual == expected, diff(expected, actual)
    assert calls, "the sweep made no call"
    if exempt:
        assert proxy.seen == []
    else:
        assert len(proxy.seen) == len(calls) and len(proxied) == len(calls), proxy.seen[:3]
