"""A broker that stops answering in the middle of commits (SIGSTOP, then SIGCONT): a commit whose
outcome is unknown must be found out, never treated as aborted and replayed. The worker runs as a
real process against its own broker (this test freezes it), with webhooks flowing; afterwards every
status change is in Kafka exactly once for read_committed readers."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import aiohttp
import pytest

from tests.conftest import _kafka_script
from tests.integration.harness import WorkerProcess, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS, create_topic
from tests.integration.test_resilience import World, accounts_for_test
from tests.integration.world import ENV, check_against_truth, diff, expected_all_changes, observed, worker_account
from worker.simulator import SimConfig, Simulator

pytestmark = pytest.mark.integration


async def metric(url: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Probes:
    """What a kubelet would see: /readyz and /healthz every 250 ms, as (monotonic time, status)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready: list[tuple[float, int]] = []
        self.health: list[tuple[float, int]] = []
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while True:
                for path, seen in (("/readyz", self.ready), ("/healthz", self.health)):
                    try:
                        async with session.get(self.url + path) as r:
                            seen.append((time.monotonic(), r.status))
                    except (aiohttp.ClientError, TimeoutError):
                        seen.append((time.monotonic(), 0))
                await asyncio.sleep(0.25)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def first_ready_after(self, t: float) -> float | None:
        return next((at - t for at, status in self.ready if at >= t and status == 200), None)


async def test_a_broker_frozen_mid_commit_loses_and_doubles_nothing(tmp_path, topic_prefix):
    script = _kafka_script()
    state = tmp_path / "kafka"
    bootstrap = script.up(state)
    broker = int((state / "broker.pid").read_text())
    accounts = accounts_for_test(live_secs=60)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=51, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(bootstrap, sent_topic)
    # short Kafka timeouts, so that a freeze of a few seconds times commits out
    data = worker_config(bootstrap, topic_prefix, [worker_account(a, base, poll=False) for a in accounts], shards=2,
                         kafka={"produce_timeout_secs": 1.5, "session_timeout_ms": 10000},
                         inputs={"sent_topic": sent_topic})
    worker = WorkerProcess(data, ENV, tmp_path)
    world = World(sim, [worker.url], sent_topic, bootstrap)
    rng = random.Random(5)
    freezes, unknown = 0, 0.0
    probes = Probes(worker.url)
    thawed: list[float] = []
    try:
        await worker.start()
        await worker.ready()
        probes.start()
        world.start()
        deadline = time.monotonic() + 120
        while (freezes < 3 or unknown < 1) and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            os.kill(broker, signal.SIGSTOP)               # in the middle of whatever it was doing
            await asyncio.sleep(rng.uniform(5.0, 7.0))    # longer than the worker's commit timeout (4.5 s)
            os.kill(broker, signal.SIGCONT)
            thawed.append(time.monotonic())
            freezes += 1
            await worker.ready(timeout=90)
            unknown = await metric(worker.url, "esw_errors_total", stage="transaction",
                                   error_type="commit_outcome_unknown")
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff, sources=frozenset({"webhook"}))  # webhook-only
        records = await read_all(bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=120, quiet_secs=6)
    finally:
        await probes.stop()
        with_kill = worker.running
        await worker.kill()
        await sim.stop()
        script.down(state)
    actual, events = observed(records)
    back = [probes.first_ready_after(t) for t in thawed]
    unready = sum(1 for _, status in probes.ready if status == 503)
    print(f"\nfrozen broker: {freezes} freezes, {unknown:.0f} commits of unknown outcome settled, "
          f"{sum(expected.values())} changes, {sum(actual.values())} events, "
          f"webhook retries {sum(s.totals.retries for s in world.senders)}; "
          f"/readyz 503 {unready} of {len(probes.ready)} probes, ready again after thaw: "
          f"{', '.join(f'{b:.1f}' if b is not None else '-' for b in back)} s")
    assert with_kill, "the worker died"
    # readiness follows Kafka (worker.reach): unready while frozen, ready within seconds of the
    # thaw; liveness never fails (restarting the pod would not help)
    assert unready > 0, "/readyz never answered 503 while the broker was frozen"
    assert all(b is not None and b < 8.0 for b in back), back
    assert all(status == 200 for _, status in probes.health), [h for h in probes.health if h[1] != 200][:5]
    assert unknown >= 1, "no freeze caught a commit in flight: the unknown-outcome path was not exercised"
    assert world.failed == 0, "a webhook ran out of retries"
    assert actual == expected, diff(expected, actual) + "\n" + worker.log_tail()
    assert not check_against_truth(sim, names, cutoff, events, sources=frozenset({"webhook"}))
