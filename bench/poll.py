"""`poll`: events per second through the poll path.

The simulator (in this process) holds one SendCloud account with a settled history of N messages on
two send dates 3 and 4 days back (every timeline finished, so the expected output is exact and does
not move during the run), quota far above what is used, and a 1 s result cache. The worker runs as
a real process with polling only (production defaults otherwise: 75 ms batch linger, 1000 records a
batch, INFO logs). A read_committed consumer counts the committed events as they arrive.

Phase 1 (first sweep): from /readyz to the last expected event, events/s and rows/s polled.
Phase 2 (steady state): the same windows re-polled every 1-2 s, all duplicates: rows/s polled,
dedup drops/s, and the share of polled rows dropped (events emitted should stay 0).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import (
    CpuMeter,
    EventTail,
    WorkerProcess,
    check,
    cpu_note,
    delete_topics,
    metric,
    row,
    run_child,
    say,
    scrape,
    worker_config,
)

NAME = "poll"
ACCOUNT = "bench-sc"
ENV = {"BENCH_API_KEY": "bench-api-key"}
CHINA = timezone(timedelta(hours=8))
QUOTA = 600_000   # per minute, simulator and worker alike: never the limit here


def history_anchor(now: float) -> float:
    """One second after China-local midnight starting the day 2 days back: the simulator's
    history then covers the two full days before it (3 and 4 days back), settled long ago."""
    today = datetime.fromtimestamp(now, CHINA).date()
    day = today - timedelta(days=2)
    return datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp() + 1


class ServedRows:
    """The status rows the simulator served afresh to one account, page by page (its public call
    log, `Simulator.calls`), on this process's monotonic clock."""

    def __init__(self, sim, account: str) -> None:
        self.sim, self.account = sim, account
        self.offset = time.monotonic() - sim.clock()

    @property
    def pages(self) -> list[tuple[float, int]]:
        return [(c.at + self.offset, c.rows) for c in self.sim.calls
                if c.account == self.account and c.outcome == "ok" and not c.cached]

    def rows_since(self, mark: int) -> int:
        return sum(n for _, n in self.pages[mark:])

    def between(self, t0: float, t1: float) -> tuple[int, int]:
        sel = [n for t, n in self.pages if t0 <= t < t1]
        return sum(sel), len(sel)


async def measure(bootstrap: str, messages: int, linger_ms: int | None = None,
                  profile: bool = False, timeout: float = 300.0) -> dict:
    from worker.config import parse_config
    from worker.emit import Topics, ensure_topics
    from worker.model import Provider
    from worker.simulator import SimAccount, SimConfig, Simulator

    now = time.time()
    acct = SimAccount(provider=Provider.SENDCLOUD, name=ACCOUNT, api_user="bench_user", api_key=ENV["BENCH_API_KEY"],
                      app_key="unused", quota_per_minute=QUOTA, cache_ttl_secs=1.0, history_days=2,
                      history_per_day=messages // 2, live_per_sec=0, live_max=0)
    started = time.monotonic()
    sim = Simulator(SimConfig(seed=21, accounts=(acct,), time_scale=1.0, anchor=history_anchor(now)))
    gen_secs = time.monotonic() - started
    counter = ServedRows(sim, ACCOUNT)
    base = await sim.start()
    now_ms = int(time.time() * 1000)
    msgs = sim.messages(ACCOUNT)
    expected = sum(1 for m in msgs if (e := m.visible(now_ms)) is not None and e.type is not None)
    say(f"poll: {len(msgs):,} messages on {sorted({str(m.local_date) for m in msgs})}, "
        f"{expected:,} events expected (simulator built in {gen_secs:.1f} s)")

    account = {"name": ACCOUNT, "provider": "sendcloud", "base_url": base,
               "credentials": {"api_user": acct.api_user, "api_key_env": "BENCH_API_KEY"},
               "webhook": {"enabled": False},
               # no window is due twice during a sweep (the default interval_min is the 600 s
               # cache TTL); the simulator's cache is 1 s, so the re-sweep is answered afresh
               "poll": {"quota_per_minute": QUOTA, "cache_ttl_secs": 1, "interval_min_secs": 600,
                        "lookback_days": 5}}  # 4 would do; 5 survives a China midnight mid-run
    prefix = f"bench-poll-{uuid.uuid4().hex[:8]}"
    kafka = {"batch_linger_ms": linger_ms} if linger_ms is not None else {}
    data = worker_config(bootstrap, prefix, [account], kafka=kafka)
    config = parse_config(data, ENV)
    await ensure_topics(config.kafka)
    tail = EventTail(bootstrap, Topics.from_config(config.kafka).outputs)
    await tail.start()
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-poll-"))
    out: dict = {"messages": len(msgs), "expected": expected, "linger_ms": config.kafka.batch_linger_ms}
    profiles = []
    worker = None
    try:
        # phase 1: the first sweep, every row a new event
        worker = WorkerProcess(data, ENV, workdir / "first", profile=profile)
        spawned = time.monotonic()
        worker.start()
        await worker.ready()
        t_ready = time.monotonic()
        out["ready_secs"] = t_ready - spawned
        cpu = CpuMeter({"worker": worker.pid, "broker": _broker_pid(), "bench": "self"})
        if not await tail.wait_for(expected, timeout):
            raise TimeoutError(f"only {tail.count:,} of {expected:,} events after {timeout:.0f} s\n{worker.log_tail()}")
        t_done = tail.time_of(expected)
        out["cpu_sweep"] = cpu.stop()
        out["worker_cpu_sweep"] = cpu.secs.get("worker")
        m = await scrape(worker.url)
        pages = counter.pages
        t_first = pages[0][0]   # the first poll request (pollers start just before /readyz says so)
        rows, pages = counter.between(t_first, t_done)
        out.update(sweep_secs=t_done - t_first, sweep_rows=rows, sweep_pages=pages,
                   first_event_secs=tail.time_of(1) - t_first,
                   txn_mean_ms=_mean(m, "esw_transaction_latency_seconds") * 1e3,
                   txns=m.get("esw_transaction_latency_seconds_count", 0.0))
        worker.stop()
        profiles.append(("first sweep", worker.profile_top(30)))

        # phase 2: forget the cursors (tombstones in _state), restart: the same windows are
        # swept again from offset 0 against a restored dedup table; every row is a duplicate
        await _drop_cursors(bootstrap, config, data["kafka"]["topic_prefix"])
        worker = WorkerProcess(data, ENV, workdir / "again", profile=profile)
        committed_before = tail.count
        mark = len(counter.pages)
        worker.start()
        await worker.ready()
        cpu = CpuMeter({"worker": worker.pid, "broker": _broker_pid(), "bench": "self"})
        deadline = time.monotonic() + timeout
        while counter.rows_since(mark) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        out["cpu_steady"] = cpu.stop()
        out["worker_cpu_steady"] = cpu.secs.get("worker")
        await asyncio.sleep(1.0)  # let the last page's (empty) transaction commit
        m = await scrape(worker.url)
        pages_again = counter.pages[mark:]
        span = pages_again[-1][0] - pages_again[0][0] if len(pages_again) > 1 else float("nan")
        status = await _status(worker.url)
        out.update(steady_secs=span, steady_rows=sum(n for _, n in pages_again), steady_pages=len(pages_again),
                   steady_drops=metric(m, "esw_dedup_drops_total"),
                   steady_emitted=metric(m, "esw_events_emitted_total"),
                   steady_committed=tail.count - committed_before,
                   restore_secs=max((s["restore_secs"] for s in status["group"]["shards"]), default=None),
                   restored_entries=sum(s["entries"] for s in status["group"]["shards"]))
        worker.stop()
        profiles.append(("re-sweep", worker.profile_top(30)))
    finally:
        if worker is not None:
            worker.stop()
        await asyncio.sleep(0.5)
        out["final_events"] = tail.count
        out["duplicates"] = tail.duplicates
        await tail.stop()
        await sim.stop()
        await delete_topics(bootstrap, prefix)
    import sys

    for phase, top in profiles:
        if top:
            print(f"--- cProfile of the worker process (poll {phase}, linger {out['linger_ms']} ms) ---\n{top}",
                  file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)  # kept when something failed: the worker logs are there
    return out


async def _drop_cursors(bootstrap: str, config, prefix: str) -> None:
    """Tombstone every poll cursor of the account, as if the windows had never been swept."""
    from aiokafka import AIOKafkaProducer

    from worker.emit import Topics, shard_of
    from worker.poll.scheduler import window_id
    from worker.providers import get_module
    from worker.state import cursor_key

    account = config.accounts[0]
    d = get_module(account.provider).DEFAULTS
    today = datetime.now(d.tz).date()
    wids = [window_id(today - timedelta(days=age), s) for age in range(account.poll.lookback_days + 2)
            for s in d.status_filters]
    shard = shard_of(account.provider.value, account.name, config.kafka.shards)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for wid in wids:
            await producer.send(Topics.from_config(config.kafka).state, None, key=cursor_key(account.name, wid),
                                partition=shard)
        await producer.flush()
    finally:
        await producer.stop()


async def _status(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/status") as r:
        return await r.json()


def _broker_pid() -> int | None:
    import os

    pid = os.environ.get("BENCH_BROKER_PID")
    return int(pid) if pid else None


def _mean(m: dict, hist: str) -> float:
    count = m.get(f"{hist}_count", 0.0)
    return m.get(f"{hist}_sum", 0.0) / count if count else 0.0


def _rows(r: dict, label: str) -> list[dict]:
    sweep = r["sweep_secs"]
    n = r["expected"]
    rows = [
        row(NAME, f"first sweep: committed events/s{label}", n / sweep, "events/s",
            f"{n:,} events of {r['messages']:,} messages in {sweep:.1f} s from the first request; "
            f"{r['txns']:.0f} transactions, mean {r['txn_mean_ms']:.0f} ms"),
        row(NAME, f"first sweep: rows polled/s{label}", r["sweep_rows"] / sweep, "rows/s",
            f"{r['sweep_pages']:,} pages of ≤100 rows, {r['sweep_pages'] / sweep:.1f} pages/s; "
            + cpu_note(r["cpu_sweep"])),
        row(NAME, f"re-poll (all duplicates): rows polled/s{label}", r["steady_rows"] / r["steady_secs"], "rows/s",
            f"{r['steady_rows']:,} rows, {r['steady_pages'] / r['steady_secs']:.1f} pages/s after a restart "
            f"(restore of {r['restored_entries']:,} entries {r['restore_secs']:.2f} s); " + cpu_note(r["cpu_steady"])),
        row(NAME, f"re-poll (all duplicates): drops/s{label}", r["steady_drops"] / r["steady_secs"], "drops/s",
            f"{r['steady_drops'] / max(1, r['steady_rows']) * 100:.1f} % of polled rows dropped as duplicates, "
            f"{r['steady_emitted']:.0f} events emitted"),
    ]
    rows.append(row(NAME, f"worker CPU per polled row{label}", r["worker_cpu_sweep"] / max(1, r["sweep_rows"]) * 1e6,
                    "µs", f"first sweep (new events); {r['worker_cpu_steady'] / max(1, r['steady_rows']) * 1e6:.0f} µs "
                          "per row when all are duplicates"))
    rows.append(check(NAME, f"read-back{label}",
                      r["final_events"] == r["expected"] and not r["duplicates"] and r["steady_emitted"] == 0
                      and r["steady_committed"] == 0 and r["steady_rows"] >= r["expected"],
                      f"{r['final_events']:,} events read back read_committed of {r['expected']:,} expected, "
                      f"{r['duplicates']} duplicate event_id; re-poll of {r['steady_rows']:,} rows emitted "
                      f"{r['steady_emitted']:.0f} (metric) and {r['steady_committed']} (read back)"))
    return rows


def run(ctx) -> list[dict]:
    messages = 10_000 if ctx.quick else 100_000
    variants = [None] if ctx.quick else [None, 5]
    rows: list[dict] = []
    for linger in variants:
        label = "" if linger is None else f" (linger {linger} ms)"
        say(f"poll: {messages:,} messages{label}")
        r = run_child("poll:measure", {"bootstrap": ctx.bootstrap, "messages": messages,
                                       "linger_ms": linger, "profile": ctx.profile}, timeout=900)
        rows += _rows(r, label)
    return rows
