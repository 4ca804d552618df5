"""`restore`: a shard's `_state` partition rebuilt by `Shard.start()`, twice: N dedup entries, and
a UniSender sender's shard (a month of tracked ids against a week of dedup entries: 78 % final ids,
2 % ids that can still change, 20 % dedup entries, one record per key as compaction leaves it).

One child process writes the records (keys and values exactly as `worker.state` writes them, with
the worker tree's own encoders, so an older tree writes its own format) with a plain
non-transactional producer in record batches; a second, fresh child times `Shard.start()` (producer
init + fencing + reading `_state` back, worker.state) and reports its RSS, so the numbers are those
of a replica that has just taken the shard over.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import uuid

from bench.common import (
    check,
    delete_topics,
    malloc_trim,
    peak_rss_bytes,
    reset_peak_rss,
    row,
    rss_bytes,
    run_child,
    say,
    worker_config,
)

NAME = "restore"
SHARDS = 4
PARTITION = 0
UNI = {"name": "uni", "provider": "unisender", "base_url": "http://127.0.0.1:9",
       "credentials": {"api_key_env": "BENCH_UNI_KEY"}}
UNI_FIRST_ID = 8_000_000_000                     # ten digits, like UniSender's email ids


def _config(bootstrap: str, prefix: str, ids: bool = False):
    from worker.config import parse_config

    return parse_config(worker_config(bootstrap, prefix, [UNI] if ids else [], shards=SHARDS), {"BENCH_UNI_KEY": "x"})


async def write_state(bootstrap: str, prefix: str, n: int, ids: bool = False) -> dict:
    from aiokafka import AIOKafkaProducer

    from worker.dedup import hours_since_2020, pack
    from worker.emit import Topics, ensure_topics
    from worker.poll.ids import Tracked
    from worker.state import dedup_key, dedup_value, encode_tracked, id_key

    config = _config(bootstrap, prefix, ids)
    await ensure_topics(config.kafka, with_outputs=False)
    topic = Topics.from_config(config.kafka).state
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    rng = random.Random(7)
    now = int(time.time())
    expire_h = hours_since_2020(now) + 24 * 7
    flags = (1, 1 | 1 << 3, 2 | 1 << 4, 3 | 1 << 7)

    def dedup_record() -> tuple[bytes, bytes]:
        return (dedup_key(rng.getrandbits(64)),
                dedup_value(pack(now - rng.randrange(3 * 86400), expire_h, flags[rng.randrange(4)])))

    def uni_record(i: int) -> tuple[bytes, bytes]:
        """The i-th record of a UniSender sender's shard: 20 % dedup entries, 2 % ids that can
        still change, the rest final ids (sent in the last 30 days)."""
        x = rng.random()
        if x < 0.2:
            return dedup_record()
        sent = now - rng.randrange(30 * 86400) + rng.random()
        tracked = Tracked(f"u{rng.randrange(100_000)}@example.test", sent, "ok_delivered" if x >= 0.22 else "ok_sent",
                          final=x >= 0.22)
        return id_key("uni", str(UNI_FIRST_ID + i)), encode_tracked(tracked)

    counts = {"final": 0, "open": 0}
    started = time.perf_counter()
    try:
        pending = []
        batch = producer.create_batch()
        for i in range(n):
            key, value = uni_record(i) if ids else dedup_record()
            if key[:1] == b"u":
                counts["final" if b'"f":true' in value else "open"] += 1
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=PARTITION))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            if len(pending) >= 64:
                await asyncio.gather(*pending)
                pending.clear()
        pending.append(await producer.send_batch(batch, topic, partition=PARTITION))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return {"n": n, "secs": time.perf_counter() - started, **counts}


async def restore_shard(bootstrap: str, prefix: str, ids: bool = False) -> dict:
    from worker.shards import Shard

    config = _config(bootstrap, prefix, ids)
    gc.collect()
    malloc_trim()
    base = rss_bytes()
    reset_peak_rss()
    shard = Shard(PARTITION, config, list(config.accounts))
    started = time.perf_counter()
    await shard.start()
    start_secs = time.perf_counter() - started
    peak = peak_rss_bytes()
    gc.collect()
    after = rss_bytes()
    malloc_trim()
    trimmed = rss_bytes()
    out = {"entries": len(shard.staging.table), "nbytes": shard.staging.table.nbytes, "start_secs": start_secs,
           "restore_secs": shard.restore_secs, "rss_base": base, "rss_after": after - base,
           "rss_trimmed": trimmed - base, "rss_peak": peak - base,
           "tracked_ids": sum(len(t) for t in shard.staging.trackers.values()),
           "open_ids": sum(len(t.ids) for t in shard.staging.trackers.values())}
    await shard.close(commit=False)
    return out


def run(ctx) -> list[dict]:
    return _dedup_shard(ctx) + _uni_shard(ctx)


def _uni_shard(ctx) -> list[dict]:
    n = 200_000 if ctx.quick else 1_000_000
    prefix = f"bench-restore-{uuid.uuid4().hex[:8]}"
    say(f"restore: writing a UniSender shard of {n:,} records to {prefix}._state[{PARTITION}]")
    args = {"bootstrap": ctx.bootstrap, "prefix": prefix, "ids": True}
    try:
        w = run_child("restore:write_state", {**args, "n": n}, timeout=600)
        say(f"restore: wrote in {w['secs']:.1f} s; restoring")
        r = run_child("restore:restore_shard", args, timeout=600, profile=ctx.profile)
    finally:
        asyncio.run(delete_topics(ctx.bootstrap, prefix))
    tag = f"{n / 1e6:g}M"
    ids = w["final"] + w["open"]
    return [
        row(NAME, f"restore of a UniSender shard @{tag} records (Shard.restore_secs)", r["restore_secs"], "s",
            f"{n / r['restore_secs']:,.0f} records/s; {w['final']:,} final ids, {w['open']:,} open, "
            f"{r['entries']:,} dedup entries"),
        row(NAME, f"resident memory per tracked id and entry after restore @{tag}", r["rss_after"] / n, "B",
            f"RSS delta; {r['rss_trimmed'] / n:.1f} B after malloc_trim; peak {r['rss_peak'] / n:.1f} B"),
        check(NAME, "UniSender shard read-back",
              r["tracked_ids"] == ids and r["open_ids"] == w["open"] and r["entries"] == n - ids,
              f"{r['tracked_ids']:,} ids ({r['open_ids']:,} open) and {r['entries']:,} entries restored of "
              f"{ids:,} ({w['open']:,}) and {n - ids:,} written"),
    ]


def _dedup_shard(ctx) -> list[dict]:
    n = 1_000_000
    prefix = f"bench-restore-{uuid.uuid4().hex[:8]}"
    say(f"restore: writing {n:,} dedup entries to {prefix}._state[{PARTITION}]")
    try:
        w = run_child("restore:write_state", {"bootstrap": ctx.bootstrap, "prefix": prefix, "n": n}, timeout=600)
        say(f"restore: wrote in {w['secs']:.1f} s; restoring")
        r = run_child("restore:restore_shard", {"bootstrap": ctx.bootstrap, "prefix": prefix}, timeout=600,
                      profile=ctx.profile)
    finally:
        asyncio.run(delete_topics(ctx.bootstrap, prefix))
    tag = f"{n / 1e6:g}M"
    return [
        row(NAME, f"write {tag} entries to _state", n / w["secs"], "records/s",
            f"{w['secs']:.1f} s; non-transactional, acks=1, record batches"),
        row(NAME, f"restore of {tag} entries (Shard.restore_secs)", r["restore_secs"], "s",
            f"{n / r['restore_secs']:,.0f} records/s; Shard.start() {r['start_secs']:.2f} s incl. producer init"),
        row(NAME, f"resident memory per email after restore @{tag}", r["rss_after"] / n, "B",
            f"RSS delta; table nbytes {r['nbytes'] / n:.1f} B/email; {r['rss_trimmed'] / n:.1f} B after malloc_trim"),
        row(NAME, f"peak RSS during restore @{tag}", r["rss_peak"] / n, "B/email",
            f"{r['rss_peak'] / 2**20:,.0f} MiB above the process before start()"),
        check(NAME, "read-back", r["entries"] == n, f"{r['entries']:,} entries restored of {n:,} written"),
    ]
