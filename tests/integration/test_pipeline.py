"""End to end, all five providers: the simulator's status changes against what reaches Kafka."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.world import (
    ENV,
    check_against_truth,
    diff,
    ever_visible,
    expected_all_changes,
    expected_visible,
    observed,
    publish_sent,
    sim_account,
    worker_account,
)
from tests.support import validate_event
from worker.model import EventType, Provider
from worker.simulator import Faults, SimConfig, Simulator, WebhookSender

pytestmark = pytest.mark.integration
OUTPUTS = [t.value for t in EventType]


async def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def last_change_at(sim, names) -> float:
    return max(e.at_ms for n in names for m in sim.messages(n) for e in m.entries) / 1000


async def test_every_change_of_every_provider_arrives_exactly_once(kafka_bootstrap, topic_prefix):
    """Webhooks (with duplicates and reordering) and polls of all five providers, at once."""
    stream = {"history_days": 1, "history_per_day": 40, "live_per_sec": 2.0, "live_max": 40}
    accounts = [sim_account(p, f"{p.value.replace('_', '-')}-1", cache_ttl_secs=3.0, **stream) for p in Provider]
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=11, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base) for a in accounts],
                         inputs={"sent_topic": sent_topic})
    sender = WebhookSender(sim, "", duplicate_rate=0.2, reorder_window=6, seed=5, since=0, max_attempts=8)
    published: set = set()
    try:
        async with InProcessWorker(data, ENV) as worker:
            sender.target = worker.url
            await wait_ready(worker.url)
            live_end = sim.clock() + stream["live_max"] / stream["live_per_sec"] + 2
            while sim.clock() < live_end or sim.clock() < last_change_at(sim, names) + 1:
                await sender.send_due()
                await publish_sent(kafka_bootstrap, sent_topic, sim, ["unisender-1"], sim.clock(), published)
                await asyncio.sleep(0.5)
            await sender.send_due()
            until = sim.clock()
            expected = expected_all_changes(sim, names, until)
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=60, quiet_secs=5)
            async with aiohttp.ClientSession() as session, session.get(f"{worker.url}/status") as r:
                status = await r.json()
    finally:
        await sender.close()
        await sim.stop()

    actual, events = observed(records)
    assert sender.totals.failed == 0 and sender.totals.duplicates > 0
    assert actual == expected, diff(expected, actual)
    for event in events:
        validate_event(event)
    problems = check_against_truth(sim, names, until, events)
    assert not problems, "\n".join(problems[:20])
    by_source = {(e["provider"], e["source"]) for e in events}
    assert {(p.value, "webhook") for p in Provider} <= by_source
    # every account was polled, with nothing left failing
    pollers = {p["account"]: p for p in status["group"]["pollers"]}
    assert set(pollers) == set(names)
    # UniSender may have polled nothing here: its ids often turn final by webhook before they are
    # due (the poll-only test below covers its polling).
    problems = {n: (p["pages"], p["last_error"], p["state"]) for n, p in pollers.items()
                if (not p["pages"] and n != "unisender-1") or p["last_error"] is not None}
    assert not problems, problems


async def test_polling_alone_finds_every_final_status_despite_provider_faults(kafka_bootstrap, topic_prefix):
    """Poll-only, through 5xx, timeouts, slow and malformed answers; then clean. Nothing lost,
    nothing doubled, and no cursor moves while every call fails."""
    stream = {"history_days": 1, "history_per_day": 150, "live_per_sec": 0, "live_max": 0}
    accounts = [sim_account(p, f"{p.value.replace('_', '-')}-p", cache_ttl_secs=2.0, **stream) for p in Provider]
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=12, accounts=tuple(accounts), time_scale=1))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    await publish_sent(kafka_bootstrap, sent_topic, sim, ["unisender-p"], sim.clock())  # UniSender is polled by id
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base, webhook=False) for a in accounts],
                         inputs={"sent_topic": sent_topic})
    faulty = Faults(error_5xx_rate=0.25, timeout_rate=0.05, timeout_secs=6, slow_rate=0.1, slow_secs=1,
                    malformed_rate=0.15, seed=3)
    for name in names:
        sim.set_faults(name, Faults(error_5xx_rate=1.0))
    try:
        async with InProcessWorker(data, ENV) as worker, aiohttp.ClientSession() as session:
            await wait_ready(worker.url)
            await asyncio.sleep(4)
            async with session.get(f"{worker.url}/status") as r:
                down = await r.json()
            windows = [w for p in down["group"]["pollers"] for w in p.get("windows", [])]
            assert all(w["sweeps"] == 0 and w["offset"] == 0 for w in windows), windows
            assert all(p["pages"] == 0 for p in down["group"]["pollers"])
            failing = {p["account"] for p in down["group"]["pollers"] if p["last_error"] == "retriable"}
            assert failing >= set(names) - {"unisender-p"}, down["group"]["pollers"]
            for name in names:
                sim.set_faults(name, faulty)
            await asyncio.sleep(8)
            for name in names:
                sim.set_faults(name, Faults())
            expected = expected_visible(sim, names, sim.clock())
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=90, quiet_secs=5)
        seen = ever_visible(sim, names, sim.clock())
    finally:
        await sim.stop()
    actual, events = observed(records)
    # time_scale 1: a status may change while we read (a delivery followed by a complaint an hour on,
    # a message sent a minute before the run); the new status may or may not be polled in time, and
    # the one it replaced was rightly reported while it lasted. Everything visible when the faults
    # cleared, nothing that no query could ever have shown, each exactly once.
    assert all(n == 1 for n in actual.values()), diff(expected, actual)
    assert not expected - actual, diff(expected, actual)
    assert not set(actual) - seen, sorted(set(actual) - seen)[:8]
    problems = check_against_truth(sim, names, sim.clock(), events, sources=frozenset({"poll"}))
    assert not problems, "\n".join(problems[:20])
    faults = sum(sim.stats(n)["fault"] for n in names)
    assert faults > 20, "the faults should have been exercised"
    assert {e["source"] for e in events} == {"poll"}
