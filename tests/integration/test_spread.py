"""One account on several shards (`accounts[].spread`, issue 16), with real worker processes.

Two replicas share six shards; four accounts are each spread over three shards (webhooks and date
polling), UniSender stays on one. One replica is killed (-9) and started again while webhooks and
polls flow. Afterwards every status change is in Kafka exactly once and true to the simulator, and
`_raw` shows the spread at work: each spread account's webhook records on all three of its shards,
copies of its polled pages, each on the shard it names, forwarded in the polling shard's
transactions, and webhook records with a replay key forwarded by the shard that checked the key."""

from __future__ import annotations

import asyncio
import collections

import orjson
import pytest

from tests.integration.harness import WorkerProcess, free_port, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS, create_topic
from tests.integration.test_resilience import World, accounts_for_test, ownership
from tests.integration.world import ENV, check_against_truth, diff, expected_all_changes, observed, worker_account
from worker.emit import shards_of
from worker.model import Provider
from worker.simulator import SimConfig, Simulator

pytestmark = pytest.mark.integration

SHARDS = 6
SPREAD = 3


def spread_account(acct, base: str) -> dict:
    if acct.provider is Provider.UNISENDER:     # polled by id: its tracked ids stay on one shard
        return worker_account(acct, base)
    return {**worker_account(acct, base, poll={"gap_driven": False}), "spread": SPREAD}


async def test_an_account_spread_over_three_shards_on_two_replicas_loses_and_doubles_nothing(
        kafka_bootstrap, topic_prefix, tmp_path):
    accounts = accounts_for_test(live_secs=50)
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=24, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    workers = []
    for i in range(2):
        data = worker_config(kafka_bootstrap, topic_prefix, [spread_account(a, base) for a in accounts],
                             shards=SHARDS, port=free_port(), kafka={"session_timeout_ms": 3000},
                             inputs={"sent_topic": sent_topic})
        workers.append(WorkerProcess(data, ENV, tmp_path, name=f"worker{i}"))
    world = World(sim, [w.url for w in workers], sent_topic, kafka_bootstrap)
    try:
        for w in workers:
            await w.start()
        for w in workers:
            await w.ready()
        world.start()
        before = await ownership(workers, SHARDS, names)
        assert all(owned for owned, _ in before.values()), before          # both replicas decide
        await asyncio.sleep(4)
        await workers[1].kill()                                              # mid-batch, mid-poll
        await asyncio.sleep(2)
        await workers[1].start()
        await workers[1].ready(timeout=90)
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff)
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=90, quiet_secs=6)
        raw_records = await read_all(kafka_bootstrap, [f"{topic_prefix}._raw"], timeout=30, quiet_secs=3)
    finally:
        for w in workers:
            await w.kill()
        await sim.stop()
    actual, events = observed(records)
    webhook_shards: dict[str, set[int]] = collections.defaultdict(set)
    copies: collections.Counter = collections.Counter()
    checked: collections.Counter = collections.Counter()    # webhook records forwarded after their replay check
    for r in raw_records:
        value = orjson.loads(r.value)
        if "shard" in value:
            assert value["shard"] == r.partition, f"a forwarded {value['kind']} on a shard it does not name"
        if value["kind"] == "webhook":
            webhook_shards[value["account"]].add(r.partition)
            checked[value["account"]] += "shard" in value
        elif value["kind"] == "poll_page" and "shard" in value:
            copies[value["account"]] += 1
    print(f"\nspread test: {sum(expected.values())} changes, {sum(actual.values())} events; webhook records "
          f"by shard {dict(webhook_shards)}; page copies {dict(copies)}; webhook records forwarded {dict(checked)}")
    assert world.failed == 0, "a webhook ran out of retries"
    assert actual == expected, diff(expected, actual, events=events)
    problems = check_against_truth(sim, names, cutoff, events)
    assert not problems, "\n".join(problems[:20])
    for acct in accounts:
        if acct.provider is Provider.UNISENDER:
            assert len(webhook_shards[acct.name]) == 1 and copies[acct.name] == 0
        else:
            assert webhook_shards[acct.name] == set(shards_of(acct.provider.value, acct.name, SPREAD, SHARDS))
            assert copies[acct.name] > 0, f"{acct.name}: no polled page was forwarded"
    # signed with a replay key (worker.intake `routed`): checked on the key's shard, then forwarded
    assert all(checked[n] > 0 for n in ("sendcloud-r", "aurora-sendcloud-r", "engagelab-r")), checked
    assert checked["tencent-ses-r"] == 0 and checked["unisender-r"] == 0, checked
