"""`dedup`: the DedupTable and the dedup rules, no Kafka.

Each table size runs in its own interpreter so that the RSS delta is the table's alone. Measured:
resident memory per tracked email (RSS delta after a vectorised `load`, as a restore builds it, and
after building by `put` as live traffic does), the table's own `nbytes`, `get` (hits and misses)
and `put` of new keys (amortised, merges included), one merge of a full recent dict
(MERGE_AT = 65,536 entries), the expiry scan, the longest event-loop stall during a merge on the
loop and in a thread, and `decide()` / `email_key()` throughput.
"""

from __future__ import annotations

import gc
import random
import time

from bench.common import check, malloc_trim, peak_rss_bytes, reset_peak_rss, row, rss_bytes, run_child, say

NAME = "dedup"


def _settle() -> int:
    gc.collect()
    malloc_trim()
    return rss_bytes()


def measure_table(n: int, ops: int, seed: int = 1) -> dict:
    """One table of n entries; ops = how many single-key operations to time per kind."""
    import numpy as np

    from worker.dedup import DedupTable, hours_since_2020, pack

    rng = np.random.default_rng(seed)
    now = time.time()
    now_h = hours_since_2020(now)
    keys = rng.integers(1, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    occurred = (int(now) - rng.integers(0, 3 * 86400, size=n)).astype(np.uint64)
    expire = (now_h + 24 * 7 - rng.integers(0, 24, size=n)).astype(np.uint64)
    expire[: n // 100] = now_h - 2   # 1 % already past their expiry
    words = (occurred << np.uint64(32)) | (expire << np.uint64(8)) | np.uint64(1 | 1 << 3)  # delivered
    probe_hits = [int(k) for k in keys[rng.integers(0, n, size=ops)]]
    inputs = keys.nbytes + words.nbytes + occurred.nbytes + expire.nbytes
    before = _settle()

    table = DedupTable()
    reset_peak_rss()
    started = time.perf_counter()
    table.load(keys, words)
    load_secs = time.perf_counter() - started
    load_peak = peak_rss_bytes() - before
    del keys, words, occurred, expire
    after = _settle()
    live = after - (before - inputs)   # what the table added, the freed input arrays taken out
    nbytes = table.nbytes

    # lookups
    misses = [random.getrandbits(64) | 1 for _ in range(ops)]
    started = time.perf_counter()
    for k in probe_hits:
        table.get(k)
    get_hit = (time.perf_counter() - started) / ops
    started = time.perf_counter()
    for k in misses:
        table.get(k)
    get_miss = (time.perf_counter() - started) / ops

    # for comparison: the same hits looked up 100 at a time (one vectorised search per poll page)
    started = time.perf_counter()
    found_batch = 0
    for i in range(0, ops, 100):
        found_batch += int(np.count_nonzero(table.get_many(np.fromiter(probe_hits[i:i + 100], dtype=np.uint64))))
    get_batch = (time.perf_counter() - started) / ops
    # read-back: every loaded key is found, one way or the other; random keys are not
    found_single = sum(1 for k in probe_hits if table.get(k) is not None)
    false_hits = sum(1 for k in misses if table.get(k) is not None)

    # inserts of new keys through put(): amortised, the merges they trigger included
    word = pack(int(now), now_h + 24 * 7, 1 | 1 << 3)
    inserts = max(table.MERGE_AT * 4, ops)
    fresh = [random.getrandbits(64) | 1 for _ in range(inserts)]
    merges = 0
    merge_secs = 0.0
    original_merge = table.merge

    def timed_merge() -> None:
        nonlocal merges, merge_secs
        t = time.perf_counter()
        original_merge()
        merge_secs += time.perf_counter() - t
        merges += 1

    table.merge = timed_merge  # instance attribute: times the merges put() triggers
    started = time.perf_counter()
    for k in fresh:
        table.put(k, word)
    put_new = (time.perf_counter() - started) / inserts
    del table.merge
    table.merge()

    # one merge of a full set of recent writes: updates of existing keys (no insert, in place),
    # staged below the merge trigger, then merge() timed alone
    upd = pack(int(now), now_h + 24 * 8, 1 | 1 << 3)
    for k in probe_hits[: table.MERGE_AT - 1]:
        table.put(k, upd)
    started = time.perf_counter()
    table.merge()
    merge_update_secs = time.perf_counter() - started
    updated = sum(1 for k in probe_hits[:1000] if table.get(k) == upd)

    # expiry scan
    started = time.perf_counter()
    expired = table.expired(now)
    expiry_secs = time.perf_counter() - started

    return {
        "n": n, "entries": len(table), "nbytes": nbytes,
        "rss_per_email": live / n, "load_secs": load_secs,
        "load_peak_per_email": load_peak / n,
        "get_hit_us": get_hit * 1e6, "get_batch_us": get_batch * 1e6, "get_miss_us": get_miss * 1e6,
        "put_new_us": put_new * 1e6, "put_new": inserts, "merges": merges,
        "merge_insert_ms": merge_secs / merges * 1e3 if merges else None,
        "merge_update_ms": merge_update_secs * 1e3,
        "expiry_secs": expiry_secs, "expired": len(expired),
        "check": {"probes": ops, "found_single": found_single, "found_batch": found_batch,
                  "false_hits": false_hits, "updated_of_1000": updated},
    }


def measure_put_build(n: int) -> dict:
    """Build a table of n entries by put() alone (as live traffic does): rate and resident memory."""
    from worker.dedup import DedupTable, hours_since_2020, pack

    now = time.time()
    word = pack(int(now), hours_since_2020(now) + 24 * 7, 1 | 1 << 3)
    bits = random.Random(2).getrandbits
    base = _settle()
    table = DedupTable()
    started = time.perf_counter()
    for _ in range(n):
        table.put(bits(64) | 1, word)
    table.merge()
    secs = time.perf_counter() - started
    gc.collect()
    kept = rss_bytes()
    after = _settle()
    return {"n": n, "secs": secs, "rss_per_email": (after - base) / n,
            "rss_per_email_untrimmed": (kept - base) / n, "nbytes": table.nbytes}


MODES = ("inline", "background", "expiry inline", "expiry thread")


def measure_merge_stall(n: int, rounds: int = 3) -> dict:
    """The longest event-loop stall while a table of n entries merges MERGE_AT new keys: the merge
    on the loop (`merge()`, as before issue 15) and off it (`merge_job()`: the copying in a thread,
    the install on the loop, as a shard runs it); and while it is scanned for expired entries with
    MERGE_AT - 1 recent writes pending: `expired()` on the loop (a merge, then the mask: the expiry
    pass before this change) and `scan_job()` in a thread (as the shard's expiry pass runs now). A
    ticker task sleeps 1 ms in a loop and records how late it wakes; the worst lateness is the stall."""
    import asyncio

    import numpy as np

    from worker.dedup import DedupTable, expiry_test, hours_since_2020, pack

    rng = np.random.default_rng(5)
    now = time.time()
    word = pack(int(now), hours_since_2020(now) + 24 * 7, 1 | 1 << 3)
    table = DedupTable(background=True)     # put() leaves the merge to the owner, as in a shard
    keys = rng.integers(1, np.iinfo(np.uint64).max, size=n, dtype=np.uint64)
    table.load(keys, np.full(n, word, dtype=np.uint64))

    async def one(mode: str) -> tuple[float, float]:
        table.merge()                  # what a scan in a thread left pending: not part of this run
        staged = table.MERGE_AT - 1 if mode.startswith("expiry") else table.MERGE_AT
        for k in rng.integers(1, np.iinfo(np.uint64).max, size=staged, dtype=np.uint64).tolist():
            table.put(k, word)         # staged: the merge below is timed alone
        lateness: list[float] = []
        done = False

        async def tick() -> None:
            while not done:
                t = time.perf_counter()
                await asyncio.sleep(0.001)
                lateness.append(time.perf_counter() - t - 0.001)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        if mode == "background":
            install = await asyncio.get_running_loop().run_in_executor(None, table.merge_job())
            install()
        elif mode == "inline":
            table.merge()
        elif mode == "expiry inline":
            table.expired(now)
        else:
            await asyncio.get_running_loop().run_in_executor(None, table.scan_job(expiry_test(now)))
        took = time.perf_counter() - started
        await asyncio.sleep(0.05)
        done = True
        await ticker
        return took, max(lateness)

    out: dict[str, list] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            out[mode].append(asyncio.run(one(mode)))
    table.merge()
    return {"n": n, "entries": len(table), "columns": len(table._keys),
            "expected": n + rounds * (4 * table.MERGE_AT - 2), **out}


def measure_decide(calls: int) -> dict:
    """decide() on a mix of outcomes, email_key(), and the whole per-observation dedup step."""
    import numpy as np

    from worker.dedup import DedupTable, decide, email_key, hours_since_2020, pack
    from worker.model import EventType

    rng = random.Random(3)
    now = int(time.time())
    exp = hours_since_2020(now) + 24 * 7
    delivered = pack(now - 100, exp, 1 | 1 << 3)
    soft = pack(now - 100, exp, 3 | 1 << 7)
    cases = []
    for _ in range(calls):
        x = rng.random()
        if x < 0.4:      # a new email: emit
            cases.append((None, EventType.DELIVERED, now, exp))
        elif x < 0.8:    # the same final status again: duplicate
            cases.append((delivered, EventType.DELIVERED, now - 100, exp))
        elif x < 0.9:    # a replayed soft bounce: duplicate
            cases.append((soft, EventType.SOFT_BOUNCE, now - 90, exp))
        else:            # an older soft bounce after delivery: stale
            cases.append((delivered, EventType.SOFT_BOUNCE, now - 1000, exp))
    started = time.perf_counter()
    for word, type_, occurred, expire_h in cases:
        decide(word, type_, occurred, expire_h, 60.0)
    decide_secs = time.perf_counter() - started

    ids = [f"1700000000{i:06d}_123456_12345_1234.sc-10_1_2_3-inbound0$u{i}@example.com" for i in range(calls)]
    started = time.perf_counter()
    keys = [email_key("sendcloud", "bench", e) for e in ids]
    key_secs = time.perf_counter() - started

    # the per-observation step of Shard._observe_all without building the event: key, lookup
    # (in a 1M table), decide, and remember the new word
    table = DedupTable()
    pre = np.random.default_rng(4).integers(1, np.iinfo(np.uint64).max, size=1_000_000, dtype=np.uint64)
    table.load(pre, np.full(len(pre), delivered, dtype=np.uint64))
    started = time.perf_counter()
    for e in ids:
        k = email_key("sendcloud", "bench", e)
        outcome, word = decide(table.get(k), EventType.DELIVERED, now, exp, 60.0)
        if word is not None:
            table.put(k, word)
    step_secs = time.perf_counter() - started
    del keys
    return {"calls": calls, "decide_per_sec": calls / decide_secs, "email_key_per_sec": calls / key_secs,
            "step_per_sec": calls / step_secs}


def run(ctx) -> list[dict]:
    rows: list[dict] = []
    sizes = [1_000_000, 10_000_000]
    ops = 100_000 if ctx.quick else 300_000
    for n in sizes:
        say(f"dedup: table of {n:,}")
        r = run_child("dedup:measure_table", {"n": n, "ops": ops}, timeout=600, profile=ctx.profile)
        tag = f"{n // 1_000_000}M"
        rows += [
            row(NAME, f"resident memory per tracked email @{tag}", r["rss_per_email"], "B",
                f"RSS delta after load(); table nbytes {r['nbytes'] / n:.1f} B/email"),
            row(NAME, f"peak during load() @{tag}", r["load_peak_per_email"], "B/email",
                f"above the inputs; load() {r['load_secs']:.2f} s (argsort + copies)"),
            row(NAME, f"get() hit @{tag}", 1e6 / r["get_hit_us"], "ops/s", f"{r['get_hit_us']:.2f} µs"),
            row(NAME, f"(reference) vectorised lookup, 100 keys/call @{tag}", 1e6 / r["get_batch_us"], "keys/s",
                f"{r['get_batch_us']:.3f} µs/key; DedupTable.get_many"),
            row(NAME, f"get() miss @{tag}", 1e6 / r["get_miss_us"], "ops/s", f"{r['get_miss_us']:.2f} µs"),
            row(NAME, f"put() new key @{tag}", 1e6 / r["put_new_us"], "ops/s",
                f"{r['put_new_us']:.2f} µs amortised, {r['merges']} merges included"),
            row(NAME, f"merge of 65,536 new keys @{tag}", r["merge_insert_ms"], "ms", "np.insert into both columns"),
            row(NAME, f"merge of 65,535 updates @{tag}", r["merge_update_ms"], "ms", "in place"),
            row(NAME, f"expiry scan @{tag}", r["expiry_secs"] * 1e3, "ms", f"{r['expired']:,} expired (1 %)"),
        ]
        c = r["check"]
        rows.append(check(NAME, f"read-back @{tag}",
                          r["entries"] == n + r["put_new"] and c["found_single"] == c["found_batch"] == c["probes"]
                          and c["false_hits"] == 0 and c["updated_of_1000"] == 1000 and 0 < r["expired"] <= n // 100,
                          f"{r['entries']:,} entries; {c['found_single']:,}/{c['probes']:,} probes found by get(), "
                          f"{c['found_batch']:,} by get_many(); {c['false_hits']} false hits; "
                          f"{c['updated_of_1000']}/1000 updates read back; {r['expired']:,} expired"))
    if not ctx.quick:
        n = 1_000_000
        say(f"dedup: building {n:,} by put()")
        r = run_child("dedup:measure_put_build", {"n": n}, timeout=600)
        rows += [
            row(NAME, "build 1M by put()", n / r["secs"], "ops/s", f"{r['secs']:.1f} s, merges included"),
            row(NAME, "resident memory per email, built by put() @1M", r["rss_per_email"], "B",
                f"after malloc_trim; {r['rss_per_email_untrimmed']:.1f} B before it"),
        ]
    n = 1_000_000 if ctx.quick else 10_000_000
    say(f"dedup: merge stalls @{n:,}")
    r = run_child("dedup:measure_merge_stall", {"n": n}, timeout=600)
    tag = f"{n // 1_000_000}M"
    for mode, label in (("inline", "merge of 65,536 new keys on the loop (merge())"),
                        ("background", "merge of 65,536 new keys in a thread (merge_job())"),
                        ("expiry inline", "expiry scan, 65,535 writes pending, on the loop (expired())"),
                        ("expiry thread", "expiry scan, 65,535 writes pending, in a thread (scan_job())")):
        took = [t for t, _ in r[mode]]
        stall = [s for _, s in r[mode]]
        rows.append(row(NAME, f"longest loop stall, {label} @{tag}", max(stall) * 1e3, "ms",
                        f"over {len(stall)} runs (each {min(took) * 1e3:.0f}-{max(took) * 1e3:.0f} ms); "
                        f"stalls {', '.join(f'{x * 1e3:.1f}' for x in stall)} ms"))
    rows.append(check(NAME, f"merges keep every entry @{tag}", r["entries"] == r["columns"] == r["expected"],
                      f"{r['entries']:,} entries, {r['columns']:,} in the columns, {r['expected']:,} expected"))
    say("dedup: decide()")
    r = run_child("dedup:measure_decide", {"calls": 200_000 if ctx.quick else 1_000_000}, timeout=600,
                  profile=ctx.profile)
    rows += [
        row(NAME, "decide()", r["decide_per_sec"], "calls/s", "40 % emit, 60 % duplicate/stale"),
        row(NAME, "email_key() (blake2b)", r["email_key_per_sec"], "calls/s"),
        row(NAME, "key + get + decide + put @1M", r["step_per_sec"], "obs/s",
            "the table part of Shard._observe_all"),
    ]
    return rows
