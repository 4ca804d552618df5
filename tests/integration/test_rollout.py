"""A rolling update of three replicas under steady webhook load, as the chart does it.

Three workers run as real processes behind `Service`, a stand-in for a Kubernetes Service: it
sends each request to one of the endpoints whose `/readyz` last answered 200 (probed every second,
as the chart's readiness probe does every 5) and drops a pod from its endpoints as soon as the pod
is being deleted. The rollout follows the chart (`maxSurge: 1`, `maxUnavailable: 0`,
`preStopSleepSeconds: 5`): for each old pod, a new one starts and becomes ready, then the old one
leaves the endpoints, sleeps out its preStop, gets SIGTERM and exits. Meanwhile the simulator's
providers send webhooks (retrying on 5xx and timeouts, as providers do) and the workers poll.

Afterwards: no webhook ran out of retries, every status change is in Kafka exactly once for
read_committed readers and matches the simulator's truth, every old pod exited 0; the webhook
latency p99 (first attempt to 200, retries included) is printed.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import pytest
from aiohttp import web

from tests.integration.harness import WorkerProcess, free_port, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS, create_topic
from tests.integration.test_resilience import World, accounts_for_test
from tests.integration.world import ENV, check_against_truth, diff, expected_all_changes, observed, worker_account
from worker.simulator import SimConfig, Simulator

pytestmark = pytest.mark.integration

PRESTOP_SECS = 5.0


class Service:
    """Round-robin over ready endpoints; 503 when there is none (as a Service with no endpoints
    refuses the connection, which providers retry the same way)."""

    def __init__(self) -> None:
        self.pods: dict[str, bool] = {}       # url -> ready at the last probe
        self.deleting: set[str] = set()
        self._turn = itertools.count()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.no_endpoint = 0

    def endpoints(self) -> list[str]:
        return [url for url, ready in self.pods.items() if ready and url not in self.deleting]

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        ready = self.endpoints()
        if not ready:
            self.no_endpoint += 1
            return web.Response(status=503)
        target = ready[next(self._turn) % len(ready)]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            async with self.session.post(target + request.path_qs, data=body, headers=headers) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type=r.content_type if r.content_type != "application/octet-stream" else None)
        except (aiohttp.ClientError, TimeoutError):
            return web.Response(status=502)

    async def _probe(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as probe:
            while True:
                for url in list(self.pods):
                    try:
                        async with probe.get(f"{url}/readyz") as r:
                            self.pods[url] = r.status == 200
                    except (aiohttp.ClientError, TimeoutError):
                        self.pods[url] = False
                await asyncio.sleep(1.0)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.prober = asyncio.create_task(self._probe())

    async def stop(self) -> None:
        self.prober.cancel()
        await asyncio.gather(self.prober, return_exceptions=True)
        await self.runner.cleanup()
        await self.session.close()


async def shards_owned(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("esw_shards_owned ")))


async def test_a_rolling_update_of_three_replicas_loses_no_webhook(tmp_path, kafka_bootstrap, topic_prefix):
    accounts = accounts_for_test(live_secs=100)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=61, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    worker_accounts = [worker_account(a, base) for a in accounts]

    def pod(name: str) -> WorkerProcess:
        data = worker_config(kafka_bootstrap, topic_prefix, worker_accounts, shards=6, port=free_port(),
                             inputs={"sent_topic": sent_topic}, shutdown={"grace_secs": 20})
        return WorkerProcess(data, ENV, tmp_path, name=name)

    service = Service()
    await service.start()
    world = World(sim, [service.url], sent_topic, kafka_bootstrap)
    pods = [pod(f"old-{i}") for i in range(3)]
    new_pods: list[WorkerProcess] = []
    exits: dict[str, int] = {}
    owned: dict[str, int] = {}
    try:
        for p in pods:
            await p.start()
        for p in pods:
            await p.ready(timeout=90)
            service.pods[p.url] = True
        world.start()
        await asyncio.sleep(8)                       # steady load before the rollout
        rollout_started = time.monotonic()
        for i, old in enumerate(pods):
            new = pod(f"new-{i}")
            new_pods.append(new)
            await new.start()
            await new.ready(timeout=150)             # maxSurge 1: the new pod is ready first (a join waits out
            #   the slowest member's revoke, up to the 30 s rebalance timeout, more than once under CI load)
            service.pods[new.url] = True
            service.deleting.add(old.url)            # leaves the endpoints; preStop sleeps
            await asyncio.sleep(PRESTOP_SECS)
            exits[old.name] = await old.terminate(timeout=40)
            del service.pods[old.url]
        rollout_secs = time.monotonic() - rollout_started
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff)
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=120, quiet_secs=6)
        for p in new_pods:
            owned[p.name] = await shards_owned(p.url)
    finally:
        for p in pods + new_pods:
            await p.kill()
        await service.stop()
        await sim.stop()
    actual, events = observed(records)
    latencies = sorted(lat for s in world.senders for lat in s.totals.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    statuses = sum((s.totals.statuses for s in world.senders), start=type(world.senders[0].totals.statuses)())
    print(f"\nrolling update of 3 replicas in {rollout_secs:.0f} s: {len(latencies)} webhook bodies answered 200, "
          f"p99 {p99 * 1000:.0f} ms (first attempt to 200), statuses {dict(statuses)}, "
          f"requests with no ready endpoint {service.no_endpoint}; {sum(expected.values())} changes, "
          f"{sum(actual.values())} events; shards owned at the end {owned}")
    assert exits == {p.name: 0 for p in pods}, exits
    assert world.failed == 0, "a webhook ran out of retries"
    assert service.no_endpoint == 0, "the Service had no ready endpoint during the rollout"
    assert sum(owned.values()) == 6, f"shards owned by the new pods: {owned}"
    assert actual == expected, diff(expected, actual)
    assert not check_against_truth(sim, names, cutoff, events)
