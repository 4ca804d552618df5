"""`shard`: the single-shard ceiling (issue 16): how fast one shard decides one account's webhooks.

Every `_raw` record of an account goes to one shard (`_raw` is keyed by provider/account), so
however many replicas serve HTTP, one process decides all of a big sender's webhooks. This bench
measures that process alone, without HTTP: it writes N signed SendCloud `deliver` webhooks to the
account's `_raw` partition exactly as the edge would (each body signed as SendCloud signs it, split
by the provider module, admitted by `worker.intake.admit`, a plain acks=all producer), then starts
a real `python -m worker run` (one SendCloud account, webhooks only, production defaults, 4 shards)
and reads the events back read_committed while it drains the backlog.

Then the same with the account spread over 2 shards (`accounts[].spread: 2`, 2 shards) drained by
2 workers: each record written to the partition the edge's `worker.intake.routed` gives it (a signed
SendCloud record: its replay key's shard, which checks the key and forwards half of them to their
email's shard), so one account's deciding side runs in two processes.

Rows, per set-up: committed events/s from the first committed event to the last (the steady rate
through consume, decide, encode and transaction; start-up and restore left out), the workers' CPU
per record over the same span (from `/proc`, the records after the first committed fetch), and
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


async def measure(bootstrap: str, n: int, spread: int = 1) -> dict:
    from aiokafka import AIOKafkaProducer

    from worker import raw
    from worker.config import parse_config
    from worker.emit import Topics, account_key, ensure_topics, shard_of
    from worker.intake import admit, routed
    from worker.model import Provider
    from worker.providers import get_module
    from worker.providers.base import WebhookRequest

    account = {"name": ACCOUNT, "provider": "sendcloud", "poll": {"enabled": False},
               "webhook": {"app_key_env": "BENCH_APP_KEY"}, "spread": spread}
    prefix = f"bench-shard-{uuid.uuid4().hex[:8]}"
    shards = SHARDS if spread == 1 else spread     # spread: one shard per replica, `spread` replicas
    data = worker_config(bootstrap, prefix, [account], shards=shards)
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    topics = Topics.from_config(config.kafka)
    module = get_module(Provider.SENDCLOUD)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    acct = config.accounts[0]
    values = []   # (partition, value): where the edge's `routed` sends each record
    home = shard_of("sendcloud", ACCOUNT, shards)
    for i in range(n):
        body = sendcloud_form("deliver", f"e{i}$shard@bench.test", f"u{i}@bench.test", now_ms - i)
        req = WebhookRequest(body=body, content_type="application/x-www-form-urlencoded")
        for record in module.split_webhook(req):
            rec = raw.WebhookRecord(Provider.SENDCLOUD, ACCOUNT, now, record, module.replay_key(req, record))
            admitted = routed(admit(rec), acct, module.webhook_observations(acct.context, record), shards)
            values.append((home if admitted.shard is None else admitted.shard, admitted.value))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        key = account_key("sendcloud", ACCOUNT)
        for partition, value in values:
            await producer.send(topics.raw, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    tail = EventTail(bootstrap, topics.outputs)
    await tail.start()
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-shard-"))
    replicas = spread                          # one worker per shard of the account
    if replicas > 1:
        data["http"]["reuse_port"] = True     # the replicas share the (unused) webhook port
    workers = [WorkerProcess(data, ENV, workdir / f"w{i}") for i in range(replicas)]
    try:
        for w in workers:
            w.start()
        deadline = time.monotonic() + 120
        while tail.first is None and time.monotonic() < deadline:   # restored, joined, first commit
            await asyncio.sleep(0.005)
        cpu = CpuMeter({"bench": "self", **{f"worker{i}": w.pid for i, w in enumerate(workers)}})
        at_first = tail.count
        drained = await tail.wait_for(len(values), timeout=300)
        shares = cpu.stop()
        first, last = tail.first, tail.last
        await tail.wait_quiet(1.0, 10)
    finally:
        for w in workers:
            w.stop()
        await tail.stop()
        await delete_topics(bootstrap, prefix)
    shutil.rmtree(workdir, ignore_errors=True)   # kept when something failed: the worker's log is there
    span = (last - first) if first is not None and last is not None else 0.0
    steady = tail.count_between(first, last) if first is not None and last is not None else 0  # after the first fetch
    return {"n": len(values), "drained": drained, "events": tail.count, "duplicates": tail.duplicates,
            "span": span, "steady": steady, "cpu": shares, "replicas": replicas,
            "worker_cpu": sum(v for k, v in cpu.secs.items() if k.startswith("worker")),
            "cpu_elapsed": cpu.elapsed, "after_first": len(values) - at_first}


def run(ctx) -> list[dict]:
    n = 4_000 if ctx.quick else 40_000
    rows = []
    for spread in (1, 2):
        where = "one shard, one worker" if spread == 1 else f"spread over {spread} shards, {spread} workers"
        say(f"shard: {n:,} SendCloud deliver webhooks written to one account's _raw ({where}), then drained")
        started = time.monotonic()
        r = run_child("shard:measure", {"bootstrap": ctx.bootstrap, "n": n, "spread": spread}, timeout=600)
        say(f"shard: drained in {time.monotonic() - started:.0f} s")
        rate = r["steady"] / r["span"] if r["span"] > 0 else 0.0
        label = "" if spread == 1 else f", spread {spread} ({spread} workers)"
        rows += [
            row(NAME, ("single-shard ceiling: committed events/s, one account" if spread == 1 else
                       f"committed events/s, one account{label}"), rate, "events/s",
                f"{r['steady']:,} events from the first committed fetch to the last, {r['span']:.2f} s; "
                f"{r['n']:,} records in _raw before the workers started; {cpu_note(r['cpu'])}"),
            row(NAME, "worker CPU per record, draining " + ("one shard" if spread == 1 else f"{spread} shards"),
                r["worker_cpu"] / max(1, r["after_first"]) * 1e6, "µs",
                f"{r['worker_cpu']:.2f} s of CPU of {r['replicas']} worker(s) over the {r['after_first']:,} records "
                f"after the first committed fetch, {r['cpu_elapsed']:.1f} s"),
            check(NAME, "read-back" + label, r["drained"] and r["events"] == r["n"] and not r["duplicates"],
                  f"{r['events']:,} events read back of {r['n']:,} records; {r['duplicates']} duplicate event_id"),
        ]
    return rows
