"""`soak`: a month of a sender, one account per provider kind on one shard, on the soak's clock.

The driver (this process) runs the project's simulator (worker.simulator) on a clock it sets
itself (`SimConfig.clock`): five accounts, one per provider kind (`demo_config`'s), each sending
`per_day` emails a simulated day for `days` days, then `drain_days` more of nothing new. Every
10 simulated minutes it hands the measured process (bench/soak_shard.py, the shard's own code
without Kafka) what happened meanwhile:

- the webhooks the simulator's `WebhookSender` builds for every status change (signed bodies,
  all of them; each stamped with the simulated minute it went out), verified and split by the
  provider modules, staged by `worker.staging` as the shard stages `_raw` records;
- a sent-message record for each UniSender email (its ids are polled by id, as with a sent feed);
- the time: the poll runners (worker.poll.runner, sequential `step`) then call the simulator's
  status APIs over loopback HTTP for whatever is due by the account's schedule, the hourly
  expiry pass tombstones what left every window, and the batch commits.

Poll settings: the production ones except `lookback_days` 1, `interval_min_secs` 3600 and
`interval_max_secs` 21600 for the date-window accounts (sweeps as a safety net: every webhook
arrives here), and quotas set out of the way (the soak measures memory and the loop, not quota).

Measured in the shard process: RSS each simulated day and its peak (VmHWM), the event loop's lag
(a task that sleeps 10 ms and notes how late it woke), CPU; the worker's own counts (dedup
entries, replay entries, tracked and open ids), from which the runbook's sizing formula predicts
the memory. Then the `_state` the month left (its writes compacted, last value per key) is written
to a real `_state` topic and a fresh process restores it with `Shard.start()`: the restore time of
the shard. The check: every event the simulator's ground truth has for the month is on the output
exactly once (no event_id twice, no (email, type) twice, none missing), and the restore reads back
the entries the month left.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import uuid

import attrs
import orjson

from bench.common import WORKER_TREE, check, delete_topics, free_port, percentile, row, run_child, say, worker_config

NAME = "soak"
DAY = 86400.0
TICK = 600.0            # simulated seconds per hand-over
STEP = 60.0             # webhooks go out each simulated minute (their signatures stay fresh)
NONE_LEN = 0xFFFFFFFF
# the runbook's sizing formula (docs/runbook.md "Memory"): bytes per counted thing
FORMULA = {"entries": 20, "replays": 16, "tracked_ids": 30, "open_ids": 750}


def _sender_class():
    from worker.simulator import WebhookSender

    class Collecting(WebhookSender):
        """The simulator's webhook sender with the bodies kept instead of posted."""

        at = 0.0

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.out: list = []

        async def _deliver(self, d, stats) -> None:
            self.out.append((self.at, d))
            stats.requests += 1
            stats.delivered += 1

    return Collecting


def _accounts(sim_url: str) -> list[dict]:
    from worker.simulator.demo import demo_worker_accounts

    accounts = demo_worker_accounts(sim_url)
    for a in accounts:
        a["poll"] = {"quota_per_minute": 1_000_000}
        if a["provider"] != "unisender":
            a["poll"].update(lookback_days=1, interval_min_secs=3600, interval_max_secs=21600)
    return accounts


def _post(session, url: str, body: dict):
    return session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})


async def drive(bootstrap: str, days: int, per_day: int, drain_days: int, workdir: str, freeze: bool = False) -> dict:
    import aiohttp

    from worker.simulator import SimConfig, Simulator
    from worker.simulator.demo import demo_config, demo_worker_env

    now = time.time()
    start = (now // DAY - days - drain_days - 2) * DAY          # a UTC midnight, the month ending in the past
    box = [start]
    base = demo_config(seed=31, time_scale=1.0)
    accts = tuple(attrs.evolve(a, history_days=0, history_per_day=0, live_per_sec=per_day / DAY,
                               live_max=per_day * days, quota_per_minute=10**9) for a in base.accounts)
    sim = Simulator(SimConfig(seed=31, accounts=accts, time_scale=1.0, clock=lambda: box[0], anchor=start))
    sim_url = await sim.start()
    prefix = f"bench-soak-{uuid.uuid4().hex[:8]}"
    port = free_port()
    config = worker_config(bootstrap, prefix, _accounts(sim_url), shards=1, port=port)
    env = demo_worker_env()
    state_path, event_path = os.path.join(workdir, "state.log"), os.path.join(workdir, "events.log")
    args = {"config": config, "env": env, "port": port, "start": start, "state_path": state_path,
            "event_path": event_path, "freeze": freeze}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._child", "soak_shard:serve", json.dumps(args), cwd=WORKER_TREE,
        stdout=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    sender = _sender_class()(sim, url, since=start, seed=31)
    uni = [a.name for a in accts if a.provider.value == "unisender"]
    sent_at = dict.fromkeys(uni, 0)
    daily: list[dict] = []
    wall0 = time.monotonic()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            for _ in range(300):                     # the child listening
                try:
                    async with session.get(url + "/"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            t, end = start, start + (days + drain_days) * DAY
            while t < end:
                nxt = t + TICK
                for k in range(int(TICK / STEP)):
                    box[0] = sender.at = t + (k + 1) * STEP
                    await sender.send_due(box[0])
                sent = []
                for name in uni:
                    msgs = sim.accounts[name].stream.messages
                    i = sent_at[name]
                    while i < len(msgs) and msgs[i].sent_ms <= nxt * 1000:
                        m = msgs[i]
                        sent.append([name, m.email_id, m.recipient, m.sent_ms / 1000])
                        i += 1
                    sent_at[name] = i
                hooks = [[at, d.account, d.content_type, d.body.decode("latin-1"), {k.lower(): v for k, v in d.headers}]
                         for at, d in sender.out]
                sender.out = []
                box[0] = nxt
                async with _post(session, url + "/tick", {"now": nxt, "sent": sent, "webhooks": hooks}) as r:
                    if r.status != 200:
                        raise RuntimeError(f"tick at {nxt - start:.0f} s: {r.status} {(await r.text())[:500]}")
                    figures = await r.json()
                t = nxt
                if (t - start) % DAY == 0:
                    daily.append(figures)
                    say(f"soak: day {len(daily)}: {figures['entries']:,} entries, {figures['tracked_ids']:,} ids "
                        f"({figures['open_ids']:,} open), RSS {figures['rss'] / 2**20:.0f} MiB, "
                        f"{time.monotonic() - wall0:.0f} s")
            async with _post(session, url + "/finish", {}) as r:
                await r.read()
        out, _ = await asyncio.wait_for(child.communicate(), 120)
        result = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await sender.close()
    result["wall_secs"] = time.monotonic() - wall0
    result["daily"] = daily
    result["expected"] = _expected(sim, end)
    await sim.stop()
    return {**result, "prefix": prefix, "config": config, "env": env, "start": start, "end": end}


def _expected(sim, end: float) -> dict[str, list[list[str]]]:
    """(account, email id, type) of every event the simulator's ground truth holds by `end`
    ("must": the status API's truth), and those a webhook may carry besides ("may": the
    simulator's `Entry.hook`, where a provider's webhook says more than its status API)."""
    must, may = [], []
    for name in sim.accounts:
        for m, e in sim.iter_changes(name, None, end):
            if e.truth is not None:
                must.append([name, m.email_id, e.truth.type.value])
            if e.hook is not None:
                may.append([name, m.email_id, e.hook.type.value])
    return {"must": must, "may": may}


def read_events(path: str) -> tuple[int, int, set]:
    """(events, event_ids seen more than once, distinct (account, email id, type))."""
    ids: set = set()
    keys: set = set()
    n = dup = 0
    with open(path, "rb") as f:
        for line in f:
            account, email_id, type_, event_id = orjson.loads(line)
            n += 1
            if event_id in ids:
                dup += 1
            ids.add(event_id)
            keys.add((account, email_id, type_))
    return n, dup, keys


def compact_state(path: str) -> dict[bytes, bytes]:
    """The `_state` writes reduced as compaction does: the last value per key, deletions gone."""
    state: dict[bytes, bytes | None] = {}
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        klen, vlen = struct.unpack_from(">II", data, i)
        i += 8
        key = data[i:i + klen]
        i += klen
        if vlen == NONE_LEN:
            state[key] = None
        else:
            state[key] = data[i:i + vlen]
            i += vlen
    return {k: v for k, v in state.items() if v is not None}


async def write_state(bootstrap: str, config: dict, env: dict, state_path: str) -> dict:
    from aiokafka import AIOKafkaProducer

    from worker.config import parse_config
    from worker.emit import Topics, ensure_topics

    parsed = parse_config(config, {**os.environ, **env})
    await ensure_topics(parsed.kafka, with_outputs=False)
    state = compact_state(state_path)
    kinds: dict[str, int] = {}
    for key in state:
        kinds[chr(key[0])] = kinds.get(chr(key[0]), 0) + 1
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    topic = Topics.from_config(parsed.kafka).state
    try:
        pending = []
        batch = producer.create_batch()
        for key, value in state.items():
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        pending.append(await producer.send_batch(batch, topic, partition=0))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return {"records": len(state), "kinds": kinds}


async def restore_shard(config: dict, env: dict, now: float) -> dict:
    from datetime import UTC, datetime

    from bench.common import malloc_trim, peak_rss_bytes, reset_peak_rss, rss_bytes
    from worker.config import parse_config
    from worker.shards import Shard

    parsed = parse_config(config, {**os.environ, **env})
    malloc_trim()
    base = rss_bytes()
    reset_peak_rss()
    shard = Shard(0, parsed, list(parsed.accounts), clock=lambda: datetime.fromtimestamp(now, UTC))
    await shard.start()
    staging = shard.staging
    out = {"restore_secs": shard.restore_secs, "entries": len(staging.table), "replays": len(staging.replays),
           "tracked_ids": sum(len(t) for t in staging.trackers.values()),
           "open_ids": sum(len(t.ids) for t in staging.trackers.values()), "skipped": shard.state_skipped,
           "rss": rss_bytes() - base, "peak": peak_rss_bytes() - base}
    await shard.close(commit=False)
    return out


def run(ctx) -> list[dict]:
    days, per_day, drain = (3, 400, 1) if ctx.quick else (30, 2000, 2)
    workdir = tempfile.mkdtemp(prefix="esw-bench-soak-")
    say(f"soak: {days} simulated days at {per_day:,} emails a day per account (5 accounts), {drain} more to drain")
    try:
        r = asyncio.run(drive(ctx.bootstrap, days, per_day, drain, workdir))
        say(f"soak: driven in {r['wall_secs']:.0f} s; writing the month's _state for the restore")
        w = run_child("soak:write_state", {"bootstrap": ctx.bootstrap, "config": r["config"], "env": r["env"],
                                           "state_path": os.path.join(workdir, "state.log")}, timeout=900)
        s = run_child("soak:restore_shard", {"config": r["config"], "env": r["env"], "now": r["end"]}, timeout=900,
                      profile=ctx.profile)
        events, dup_ids, seen = read_events(os.path.join(workdir, "events.log"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "r" in locals():
            asyncio.run(delete_topics(ctx.bootstrap, r["prefix"]))
    return _rows(r, w, s, events, dup_ids, seen, days, per_day)


def _rows(r: dict, w: dict, s: dict, events: int, dup_ids: int, seen: set, days: int, per_day: int) -> list[dict]:
    expected = {tuple(x) for x in r["expected"]["must"]}
    missing, extra = expected - seen, seen - expected - {tuple(x) for x in r["expected"]["may"]}
    lag = sorted(r["lag"])
    peak_day = max(r["daily"], key=lambda d: d["rss"]) if r["daily"] else r
    held = r["rss_trimmed"] - r["base_rss"]
    predicted = sum(FORMULA[k] * r[k] for k in FORMULA)
    month = f"{days} days x {per_day:,}/day x 5 accounts"
    rows = [
        row(NAME, "peak RSS of the shard process", (r["peak_rss"] - r["base_rss"]) / 2**20, "MiB",
            f"{month}; above the process before the staging was built; {r['wall_secs']:.0f} s wall, "
            f"{r['cpu_secs']:.0f} s CPU"),
        row(NAME, "held at the end (RSS, after malloc_trim)", held / 2**20, "MiB",
            f"{r['entries']:,} dedup entries, {r['replays']:,} replay entries, {r['tracked_ids']:,} tracked ids "
            f"({r['open_ids']:,} open); highest day: {peak_day['entries']:,} entries"),
        row(NAME, "sizing formula (runbook) for that state", predicted / 2**20, "MiB",
            "20 B x entries + 16 B x replay entries + 30 B x tracked ids + 750 B x open ids (writes not "
            f"merged yet: {r['recent']:,}); measured / predicted {held / predicted:.2f}" if predicted else "nothing held"),
        row(NAME, "resident bytes per dedup entry + tracked id", held / max(1, r["entries"] + r["tracked_ids"]), "B",
            f"table {r['table_nbytes'] / max(1, r['entries']):.1f} B/entry in numpy"),
        row(NAME, "event-loop lag p99", (percentile(lag, 0.99) or 0) * 1000, "ms",
            f"{len(lag):,} samples of a 10 ms sleep; p50 {(percentile(lag, 0.5) or 0) * 1000:.1f} ms"),
        row(NAME, "event-loop lag max", (lag[-1] if lag else 0) * 1000, "ms",
            f"{r['commits']:,} commits; longest synchronous runs (wall time, a garbage collection inside one counts in it): "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(r["spans"].items(), key=lambda kv: -kv[1]))),
        row(NAME, "restore of the shard (Shard.restore_secs)", s["restore_secs"], "s",
            f"{w['records']:,} _state records ({', '.join(f'{k}: {v:,}' for k, v in sorted(w['kinds'].items()))}), "
            f"{w['records'] / s['restore_secs']:,.0f} records/s; peak {s['peak'] / 2**20:.0f} MiB"),
        row(NAME, "shard CPU per status record (polls included)", r["cpu_secs"] * 1e6 / max(1, r["records"] + r["sent"]),
            "us", f"{r['webhooks']:,} webhooks ({r['records']:,} records), {r['sent']:,} sent records, "
                  f"{r['poll_calls']:,} poll pages, {r['expired']:,} expired"),
    ]
    rows.append(check(NAME, "exactly once over the month",
                      events == len(seen) and dup_ids == 0 and not missing and not extra and r["unsigned"] == 0,
                      f"{events:,} events, {len(expected):,} expected; {dup_ids} event_ids twice, "
                      f"{events - len(seen) - dup_ids} (email, type) twice, {len(missing)} missing, "
                      f"{len(extra)} not in the truth, {r['unsigned']} webhooks refused"))
    rows.append(check(NAME, "restore reads back the month's state",
                      s["entries"] == r["entries"] and s["tracked_ids"] == r["tracked_ids"] and s["skipped"] == 0,
                      f"{s['entries']:,} of {r['entries']:,} entries, {s['tracked_ids']:,} of {r['tracked_ids']:,} "
                      f"ids, {s['skipped']} skipped"))
    return rows
