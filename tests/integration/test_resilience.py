"""Real worker processes: kill -9 at random moments, several replicas sharing shards, hand-over.
Afterwards every status change is in Kafka exactly once."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import pytest
from aiokafka.errors import KafkaError

from tests.integration.harness import WorkerProcess, free_port, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS, create_topic, last_change_at
from tests.integration.world import (
    ENV,
    check_against_truth,
    diff,
    expected_all_changes,
    observed,
    publish_sent,
    sim_account,
    worker_account,
)
from worker.model import Provider
from worker.simulator import SimConfig, Simulator, WebhookSender

pytestmark = pytest.mark.integration


class World:
    """Simulator, its webhook senders and the sent-message feed, running until stopped."""

    def __init__(self, sim: Simulator, targets: list[str], sent_topic: str, bootstrap: str) -> None:
        self.sim, self.sent_topic, self.bootstrap = sim, sent_topic, bootstrap
        names = list(sim.accounts)
        # one sender per target replica: webhooks land on any replica, as behind a Service
        self.senders = [WebhookSender(sim, url, accounts=names[i::len(targets)], duplicate_rate=0.1,
                                      reorder_window=4, seed=i, since=0, max_attempts=14, retry_base_secs=0.25)
                        for i, url in enumerate(targets)]
        self.stop = asyncio.Event()
        self.published: set = set()
        self.tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(s.run(0.5, self.stop)) for s in self.senders]
        self.tasks.append(asyncio.create_task(self._feed()))

    async def _feed(self) -> None:
        uni = [n for n, a in self.sim.accounts.items() if a.account.provider is Provider.UNISENDER]
        while not self.stop.is_set():
            try:
                await publish_sent(self.bootstrap, self.sent_topic, self.sim, uni, self.sim.clock(), self.published)
            except (KafkaError, OSError):
                pass  # Kafka down (a fault test): what was not acknowledged is sent again next round
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def finish(self, names: list[str]) -> float:
        """Wait for the last status change, send what is left, stop; return the cut-off time."""
        while self.sim.clock() < last_change_at(self.sim, names) + 1:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.5)
        self.stop.set()
        await asyncio.gather(*self.tasks)
        for sender in self.senders:
            await sender.send_due()
            await sender.close()
        return self.sim.clock()

    @property
    def failed(self) -> int:
        return sum(s.totals.failed for s in self.senders)


def accounts_for_test(live_secs: float) -> list:
    stream = {"history_days": 1, "history_per_day": 30, "live_per_sec": 1.0, "live_max": int(live_secs)}
    return [sim_account(p, f"{p.value.replace('_', '-')}-r", cache_ttl_secs=3.0, **stream) for p in Provider]


async def test_kill_dash_nine_at_random_moments_loses_and_doubles_nothing(kafka_bootstrap, topic_prefix, tmp_path):
    kills_wanted = 6     # (10 until CI time ran short: each kill lands at a random moment all the same)
    accounts = accounts_for_test(live_secs=50)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=21, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base) for a in accounts], shards=4,
                         kafka={"session_timeout_ms": 3000}, inputs={"sent_topic": sent_topic})
    worker = WorkerProcess(data, ENV, tmp_path)
    world = World(sim, [worker.url], sent_topic, kafka_bootstrap)
    rng = random.Random(7)
    ready_after: list[float] = []
    try:
        await worker.start()
        await worker.ready()
        world.start()
        for _ in range(kills_wanted):
            await asyncio.sleep(rng.uniform(0.5, 4.0))  # a random moment: mid-batch, mid-poll, mid-webhook
            await worker.kill()
            died = time.monotonic()
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            await worker.start()
            await worker.ready(timeout=90)
            ready_after.append(time.monotonic() - died)
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff)
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=90, quiet_secs=6)
    finally:
        await worker.kill()
        await sim.stop()
    actual, events = observed(records)
    print(f"\ncrash test: {worker.starts - 1} kills, ready again after {min(ready_after):.1f}-{max(ready_after):.1f} s, "
          f"{sum(expected.values())} changes, {sum(actual.values())} events, webhook retries "
          f"{sum(s.totals.retries for s in world.senders)}, polls {sum(sim.stats(n)['calls'] for n in names)}")
    assert worker.starts - 1 >= kills_wanted
    assert world.failed == 0, "a webhook ran out of retries"
    assert actual == expected, diff(expected, actual, events=events) + "\n" + worker.log_tail()
    problems = check_against_truth(sim, names, cutoff, events)
    assert not problems, "\n".join(problems[:20])


async def _status(worker: WorkerProcess, session: aiohttp.ClientSession) -> dict:
    return (await worker.status(session))["group"]


async def ownership(workers: list[WorkerProcess], shards: int, names: list[str], timeout: float = 60) -> dict:
    """Wait until the live workers own every shard exactly once and poll every account exactly
    once; return {worker name: (shards, polled accounts)}."""
    deadline = time.monotonic() + timeout
    last = None
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                groups = {w.name: await _status(w, session) for w in workers if w.running}
            except aiohttp.ClientError:
                await asyncio.sleep(0.5)
                continue
            owned = {n: sorted(s["shard"] for s in g["shards"] if s["restored"]) for n, g in groups.items()}
            polled = {n: sorted(p["account"] for p in g["pollers"]) for n, g in groups.items()}
            all_shards = [s for v in owned.values() for s in v]
            all_polled = [a for v in polled.values() for a in v]
            last = (owned, polled)
            if sorted(all_shards) == list(range(shards)) and sorted(all_polled) == sorted(names):
                return {n: (owned[n], polled[n]) for n in groups}
            await asyncio.sleep(0.5)
    raise AssertionError(f"ownership did not settle: {last}")


async def test_replicas_split_shards_and_take_over_without_loss(kafka_bootstrap, topic_prefix, tmp_path):
    shards = 6
    accounts = accounts_for_test(live_secs=70)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=22, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    workers = []
    for i in range(3):
        data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base) for a in accounts],
                             shards=shards, port=free_port(), kafka={"session_timeout_ms": 3000},
                             inputs={"sent_topic": sent_topic})
        workers.append(WorkerProcess(data, ENV, tmp_path, name=f"worker{i}"))
    world = World(sim, [w.url for w in workers[:2]], sent_topic, kafka_bootstrap)
    layouts = []
    try:
        for w in workers[:2]:
            await w.start()
        for w in workers[:2]:
            await w.ready()
        world.start()
        layouts.append(await ownership(workers, shards, names))               # two replicas
        assert all(owned for owned, _ in layouts[-1].values()), layouts[-1]
        await workers[2].start()                                              # scale up to three
        await workers[2].ready()
        layouts.append(await ownership(workers, shards, names))
        assert len(layouts[-1]) == 3 and all(owned for owned, _ in layouts[-1].values()), layouts[-1]
        await asyncio.sleep(3)
        await workers[1].kill()                                               # a replica dies
        layouts.append(await ownership(workers, shards, names, timeout=60))
        assert set(layouts[-1]) == {"worker0", "worker2"}
        await asyncio.sleep(3)
        code = await workers[2].terminate(timeout=30)                         # a graceful scale-down
        assert code == 0, workers[2].log_tail()                               # (terminate raises past 30 s)
        layouts.append(await ownership(workers, shards, names, timeout=30))
        assert set(layouts[-1]) == {"worker0"}
        await workers[1].start()                                              # the dead one comes back
        await workers[1].ready()
        world.senders[1].target = workers[1].url
        layouts.append(await ownership(workers, shards, names))
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff)
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=90, quiet_secs=6)
    finally:
        for w in workers:
            await w.kill()
        await sim.stop()
    actual, events = observed(records)
    print("\nlayouts (shards, polled accounts) per replica:\n  " + "\n  ".join(map(str, layouts)))
    assert world.failed == 0
    assert actual == expected, diff(expected, actual, events=events)
    problems = check_against_truth(sim, names, cutoff, events)
    assert not problems, "\n".join(problems[:20])


async def raw_offsets(admin, consumer, raw_topic: str, group: str, shards: int) -> tuple[dict[int, int], dict[int, int]]:
    """(end offsets, the group's committed offsets) of every `_raw` partition."""
    from aiokafka import TopicPartition

    parts = [TopicPartition(raw_topic, p) for p in range(shards)]
    ends = await consumer.end_offsets(parts)
    committed = await admin.list_consumer_group_offsets(group, partitions=parts)
    return ({tp.partition: ends[tp] for tp in parts},
            {tp.partition: (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
             for tp in parts})


async def test_webhook_only_kill_dash_nine_while_records_are_in_flight_loses_nothing(kafka_bootstrap, topic_prefix,
                                                                                    tmp_path):
    """No polling to paper over a loss: every change reaches Kafka by webhook alone, exactly once,
    though the worker is killed (-9) again and again at moments when `_raw` holds records its shard
    has not committed yet; after each restart the new owner commits past them."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    in_flight_kills_wanted = 6
    shards = 4
    accounts = accounts_for_test(live_secs=60)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=23, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    # a long linger keeps records uncommitted in `_raw` for a while: kills land in flight
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base, poll=False) for a in accounts],
                         shards=shards, kafka={"session_timeout_ms": 3000, "batch_linger_ms": 400},
                         inputs={"sent_topic": sent_topic})
    worker = WorkerProcess(data, ENV, tmp_path)
    world = World(sim, [worker.url], sent_topic, kafka_bootstrap)
    group, raw_topic = f"{topic_prefix}-g", f"{topic_prefix}._raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_uncommitted")
    await admin.start()
    await probe.start()
    rng = random.Random(9)
    landed: list[dict[int, int]] = []     # per kill in flight: records of `_raw` not committed at the kill
    kills = 0
    try:
        await worker.start()
        await worker.ready()
        world.start()
        while len(landed) < in_flight_kills_wanted and kills < 3 * in_flight_kills_wanted:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            # a moment when `_raw` holds records its shard has not committed yet (bounded wait)
            watch_until = time.monotonic() + 10
            while time.monotonic() < watch_until:
                ends, committed = await raw_offsets(admin, probe, raw_topic, group, shards)
                if any(ends[p] > committed[p] for p in ends):
                    break
                await asyncio.sleep(0.02)
            await worker.kill()
            kills += 1
            ends, committed = await raw_offsets(admin, probe, raw_topic, group, shards)  # final: nobody runs
            lag = {p: ends[p] - committed[p] for p in ends if ends[p] > committed[p]}
            await worker.start()
            await worker.ready(timeout=90)
            if not lag:
                continue
            landed.append(lag)
            # the new owner processes what was in flight at the kill: the group's offset moves past it
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                _, now_committed = await raw_offsets(admin, probe, raw_topic, group, shards)
                if all(now_committed[p] >= ends[p] for p in lag):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"records in flight at kill {kills} were never committed: {lag}")
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff, sources=frozenset({"webhook"}))  # webhook-only
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=90, quiet_secs=6)
    finally:
        await worker.kill()
        await probe.stop()
        await admin.close()
        await sim.stop()
    actual, events = observed(records)
    print(f"\nwebhook-only crash test: {kills} kills, {len(landed)} with records in flight "
          f"({[sum(lag.values()) for lag in landed]} records), {sum(expected.values())} changes, "
          f"{sum(actual.values())} events, webhook retries {sum(s.totals.retries for s in world.senders)}")
    assert len(landed) >= in_flight_kills_wanted, f"only {len(landed)} of {kills} kills landed in flight"
    assert world.failed == 0, "a webhook ran out of retries"
    assert actual == expected, diff(expected, actual, events=events) + "\n" + worker.log_tail()
    problems = check_against_truth(sim, names, cutoff, events, sources=frozenset({"webhook"}))
    assert not problems, "\n".join(problems[:20])
