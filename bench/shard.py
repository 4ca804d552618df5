"""`shard`: the single-shard ceiling (issue 16): how fast one shard decides one account's webhooks.

Every `_raw` record of an account goes to one shard (`_raw` is keyed by provider/account), so
however many replicas serve HTTP, one process decides all of a big sender's webhooks. This bench
measures that process alone, without HTTP: it writes N signed SendCloud `deliver` webhooks to the
account's `_raw` partition exactly as the edge would (each body signed as SendCloud signs it, split
by the provider module, admitted by `worker.intake.admit`, a plain acks=all producer), then starts
a real `python -m worker run` (one SendCloud account, webhooks only, production defaults, 4 shards)
and reads the events back read_committed while it drains the backlog.

Rows: committed events/s from the worker's first committed event to its last (the shard's steady
rate through consume, decide, encode and transaction; start-up and restore left out), the worker's
CPU per record over the same span (from `/proc`, the records after the first committed fetch), and
the check: every record one event, no duplicate `event_id`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    CpuMeter,
    EventTail,
    WorkerProcess,
    check,
    cpu_note,
    delete_topics,
    row,
    run_child,
    say,
    worker_config,
)
from bench.webhook import ENV, sendcloud_form

NAME = "shard"
ACCOUNT = "bench-shard"
SHARDS = 4


async def measure(bootstrap: str, n: int) -> dict:
    from aiokafka import AIOKafkaProducer

    from worker import raw
    from worker.config import parse_config
    from worker.emit import Topics, account_key, ensure_topics, shard_of
    from worker.intake import admit
    from worker.model import Provider
    from worker.providers import get_module
    from worker.providers.base import WebhookRequest

    account = {"name": ACCOUNT, "provider": "sendcloud", "poll": {"enabled": False},
               "webhook": {"app_key_env": "BENCH_APP_KEY"}}
    prefix = f"bench-shard-{uuid.uuid4().hex[:8]}"
    data = worker_config(bootstrap, prefix, [account], shards=SHARDS)
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    topics = Topics.from_config(config.kafka)
    module = get_module(Provider.SENDCLOUD)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    values = []
    for i in range(n):
        body = sendcloud_form("deliver", f"e{i}$shard@bench.test", f"u{i}@bench.test", now_ms - i)
        req = WebhookRequest(body=body, content_type="application/x-www-form-urlencoded")
        for record in module.split_webhook(req):
            rec = raw.WebhookRecord(Provider.SENDCLOUD, ACCOUNT, now, record, module.replay_key(req, record))
            values.append(admit(rec).value)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        key, partition = account_key("sendcloud", ACCOUNT), shard_of("sendcloud", ACCOUNT, SHARDS)
        for value in values:
            await producer.send(topics.raw, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    tail = EventTail(bootstrap, topics.outputs)
    await tail.start()
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-shard-"))
    worker = WorkerProcess(data, ENV, workdir)
    try:
        worker.start()
        deadline = time.monotonic() + 120
        while tail.first is None and time.monotonic() < deadline:   # restored, joined, first commit
            await asyncio.sleep(0.005)
        cpu = CpuMeter({"worker": worker.pid, "bench": "self"})
        at_first = tail.count
        drained = await tail.wait_for(len(values), timeout=300)
        shares = cpu.stop()
        first, last = tail.first, tail.last
        await tail.wait_quiet(1.0, 10)
    finally:
        worker.stop()
        await tail.stop()
        await delete_topics(bootstrap, prefix)
    shutil.rmtree(workdir, ignore_errors=True)   # kept when something failed: the worker's log is there
    span = (last - first) if first is not None and last is not None else 0.0
    steady = tail.count_between(first, last) if first is not None and last is not None else 0  # after the first fetch
    return {"n": len(values), "drained": drained, "events": tail.count, "duplicates": tail.duplicates,
            "span": span, "steady": steady, "worker_cpu": cpu.secs.get("worker", 0.0), "cpu": shares,
            "cpu_elapsed": cpu.elapsed, "after_first": len(values) - at_first}


def run(ctx) -> list[dict]:
    n = 4_000 if ctx.quick else 40_000
    say(f"shard: {n:,} SendCloud deliver webhooks written to one account's _raw partition, then drained by one worker")
    started = time.monotonic()
    r = run_child("shard:measure", {"bootstrap": ctx.bootstrap, "n": n}, timeout=600)
    say(f"shard: drained in {time.monotonic() - started:.0f} s")
    rate = r["steady"] / r["span"] if r["span"] > 0 else 0.0
    return [
        row(NAME, "single-shard ceiling: committed events/s, one account", rate, "events/s",
            f"{r['steady']:,} events from the first committed fetch to the last, {r['span']:.2f} s; "
            f"{r['n']:,} records in _raw before the worker started; {cpu_note(r['cpu'])}"),
        row(NAME, "worker CPU per record, draining one shard", r["worker_cpu"] / max(1, r["after_first"]) * 1e6,
            "µs", f"{r['worker_cpu']:.2f} s of CPU over the {r['after_first']:,} records after the first "
            f"committed fetch, {r['cpu_elapsed']:.1f} s"),
        check(NAME, "read-back", r["drained"] and r["events"] == r["n"] and not r["duplicates"],
              f"{r['events']:,} events read back of {r['n']:,} records; {r['duplicates']} duplicate event_id"),
    ]
