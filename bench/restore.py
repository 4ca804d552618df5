"""`restore`: a shard's `_state` partition holding N dedup entries, rebuilt by `Shard.start()`.

One child process writes the entries (keys and values exactly as `worker.state.dedup_key(key)` and
`dedup_value(pack(...))`) with a plain non-transactional producer in record batches; a second,
fresh child times `Shard.start()` (producer init + fencing + reading `_state` back, worker.state) and reports its RSS,
so the numbers are those of a replica that has just taken the shard over.
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


def _config(bootstrap: str, prefix: str):
    from worker.config import parse_config

    return parse_config(worker_config(bootstrap, prefix, [], shards=SHARDS), {})


async def write_state(bootstrap: str, prefix: str, n: int) -> dict:
    from aiokafka import AIOKafkaProducer

    from worker.dedup import hours_since_2020, pack
    from worker.emit import Topics, ensure_topics
    from worker.state import dedup_key, dedup_value

    config = _config(bootstrap, prefix)
    await ensure_topics(config.kafka, with_outputs=False)
    topic = Topics.from_config(config.kafka).state
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    rng = random.Random(7)
    now = int(time.time())
    expire_h = hours_since_2020(now) + 24 * 7
    flags = (1, 1 | 1 << 3, 2 | 1 << 4, 3 | 1 << 7)
    started = time.perf_counter()
    try:
        pending = []
        batch = producer.create_batch()
        for _ in range(n):
            key = dedup_key(rng.getrandbits(64))
            value = dedup_value(pack(now - rng.randrange(3 * 86400), expire_h, flags[rng.randrange(4)]))
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
    return {"n": n, "secs": time.perf_counter() - started}


async def restore_shard(bootstrap: str, prefix: str) -> dict:
    from worker.shards import Shard

    config = _config(bootstrap, prefix)
    gc.collect()
    malloc_trim()
    base = rss_bytes()
    reset_peak_rss()
    shard = Shard(PARTITION, config, [])
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
           "rss_trimmed": trimmed - base, "rss_peak": peak - base}
    await shard.close(commit=False)
    return out


def run(ctx) -> list[dict]:
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
