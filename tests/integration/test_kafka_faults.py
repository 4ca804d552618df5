"""A broker that stops answering in the middle of transactions (SIGSTOP, then SIGCONT): nothing is
lost or doubled. The worker runs as a real process against its own broker (this test freezes it),
with webhooks flowing; afterwards every status change is in Kafka exactly once for read_committed
readers. A random freeze catches a transaction while its records are being acknowledged (the
shard waits for every acknowledgement before it commits, worker.transaction: it fails and is
replayed) or while its group offsets are being added (aiokafka retries that until the broker
answers: it commits after the thaw); the narrow window of a commit whose outcome is unknown is
frozen on purpose by the second test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import secrets
import signal
import time
import urllib.parse

import aiohttp
import orjson
import pytest

from tests.conftest import _kafka_script
from tests.integration.harness import InProcessWorker, WorkerProcess, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS, create_topic
from tests.integration.test_resilience import World, accounts_for_test
from tests.integration.world import ENV, check_against_truth, diff, expected_all_changes, observed, worker_account
from worker import transaction
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


async def caught_in_flight(url: str) -> tuple[float, float]:
    """Transactions a freeze caught: (failed or in doubt, committed only after more than 2.5 s).
    A shard's transactions take milliseconds; one that a freeze stopped either fails (its records
    or its commit time out) or, when the freeze held it in a step aiokafka retries until the
    broker answers (adding the group offsets), commits after the thaw, seconds late."""
    failed = await metric(url, "esw_errors_total", stage="transaction")
    slow = (await metric(url, "esw_transaction_latency_seconds_bucket", le="+Inf")
            - await metric(url, "esw_transaction_latency_seconds_bucket", le="2.5"))
    return failed, slow


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
    freezes, failed, slow = 0, 0.0, 0.0
    probes = Probes(worker.url)
    thawed: list[float] = []
    try:
        await worker.start()
        await worker.ready()
        probes.start()
        world.start()
        deadline = time.monotonic() + 120
        while (freezes < 3 or failed + slow < 1) and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            os.kill(broker, signal.SIGSTOP)               # in the middle of whatever it was doing
            await asyncio.sleep(rng.uniform(5.0, 7.0))    # longer than the worker's commit timeout (4.5 s)
            os.kill(broker, signal.SIGCONT)
            thawed.append(time.monotonic())
            freezes += 1
            await worker.ready(timeout=90)
            failed, slow = await caught_in_flight(worker.url)
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
    print(f"\nfrozen broker: {freezes} freezes, {failed:.0f} transactions failed or in doubt, "
          f"{slow:.0f} held through a freeze and committed after it, "
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
    assert failed + slow >= 1, "no freeze caught a transaction in flight"
    assert world.failed == 0, "a webhook ran out of retries"
    assert actual == expected, diff(expected, actual, events=events) + "\n" + worker.log_tail()
    assert not check_against_truth(sim, names, cutoff, events, sources=frozenset({"webhook"}))


KEY = "frozen-commit-app-key"


def _deliver(email_id: str) -> bytes:
    ts, token = str(int(time.time() * 1000)), secrets.token_hex(25)
    sig = hmac.new(KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return urllib.parse.urlencode({"event": "deliver", "emailId": email_id, "recipient": email_id.partition("$")[2],
                                   "timestamp": ts, "token": token, "signature": sig}).encode()


async def test_a_broker_frozen_between_acknowledgement_and_commit_loses_and_doubles_nothing(
        tmp_path, topic_prefix, monkeypatch):
    """The window random freezes rarely hit: every record acknowledged, then the broker stops before
    it answers the commit. The commit request times out (its outcome unknown: it may have gone
    through), the shard settles it (a fresh producer, the group's committed offset) or restores, and
    every webhook's event is in Kafka exactly once. Frozen at that moment through the project's own
    seam (worker.transaction.acknowledged), with the worker in-process and the broker a real one."""
    script = _kafka_script()
    state = tmp_path / "kafka"
    bootstrap = script.up(state)
    broker = int((state / "broker.pid").read_text())
    real, frozen = transaction.acknowledged, []

    async def then_freeze(sent, bound_secs):
        await real(sent, bound_secs)
        if sent and not frozen:                       # the first transaction with records
            frozen.append(time.monotonic())
            os.kill(broker, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(6.0, os.kill, broker, signal.SIGCONT)

    monkeypatch.setattr(transaction, "acknowledged", then_freeze)
    account = {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"app_key_env": "K"}}
    data = worker_config(bootstrap, topic_prefix, [account], shards=1, kafka={"produce_timeout_secs": 1.5})
    ids = [f"m{i}$u{i}@x.test" for i in range(6)]
    try:
        async with InProcessWorker(data, {"K": KEY}) as w, aiohttp.ClientSession() as session:
            await wait_ready(w.url, 60)
            before = await metric(w.url, "esw_errors_total", stage="transaction", error_type="commit_outcome_unknown")
            for email_id in ids:                      # each until accepted: 503 while the broker is frozen
                deadline = time.monotonic() + 90
                while True:
                    async with session.post(f"{w.url}/webhooks/sendcloud/sc", data=_deliver(email_id),
                                            headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
                        if r.status == 200:
                            break
                    assert time.monotonic() < deadline, f"{email_id}: not accepted within 90 s"
                    await asyncio.sleep(0.5)
                await asyncio.sleep(0.3)
            records = await read_all(bootstrap, [f"{topic_prefix}.delivered"], expect=len(ids), timeout=90, quiet_secs=3)
            unknown = await metric(w.url, "esw_errors_total", stage="transaction",
                                   error_type="commit_outcome_unknown") - before
    finally:
        os.kill(broker, signal.SIGCONT)
        script.down(state)
    assert frozen, "no transaction reached its commit"
    assert unknown >= 1, "the frozen commit was not counted as one of unknown outcome"
    assert sorted(orjson.loads(r.value)["email_id"] for r in records) == sorted(ids)
