"""The measured side of `soak` (bench/soak.py): one shard's worker code on the soak's clock, no Kafka.

A child process (`serve`) holds what a worker holding every account on one shard holds: the
shard's staging (worker.staging: dedup table, replay table, id trackers), a poll runner per
account (worker.poll.runner, sequential `step`, the real Fetcher calling the simulator over
loopback HTTP) and the webhook edge's verify-and-split (the provider modules' `verify_webhook`,
`WebhookReceiver._split`). It answers the driver over HTTP:

    POST /tick    {"now": t, "sent": [...], "webhooks": [...]}: stage the sent records and the
                  webhook bodies (each at the time it was sent), poll what is due at `now`, run
                  the hourly expiry pass, commit; answers this process's figures
    POST /finish  the loop-lag samples and the last figures; the process then exits

What stands in for Kafka: a commit takes the staged batch and appends its `_state` writes to a
file (the driver compacts it into a real `_state` topic for the restore measurement) and a short
line per event (account, email id, type, event id) to another, so nothing of the output is held
in this process's memory. Clock: the driver's, one value set per webhook and per tick; the
poll runners and the staging read it through their clock seams. The limiter is set far above
any call rate (quota is not what this measures).
"""

from __future__ import annotations

import asyncio
import gc
import os
import struct
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from worker.shardsink import ShardSink

NONE_LEN = 0xFFFFFFFF
LAG_INTERVAL = 0.01          # the lag sampler sleeps this long and notes how late it woke
EXPIRY_SECS = 3600.0         # the expiry pass, once a simulated hour (the shard runs it hourly)
MAX_STEPS = 100_000          # poll calls per runner and tick, at most (a bound, never reached)


class _Record(NamedTuple):   # what Staging.stage_raw reads of an aiokafka ConsumerRecord
    value: bytes
    offset: int


class SoakClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class LagSampler:
    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(LAG_INTERVAL)
            self.samples.append(max(0.0, time.monotonic() - asked - LAG_INTERVAL))


class _ShardView:
    """What worker.shardsink.ShardSink asks of its shard, answered by the harness."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def open_staging(self):
        return self.harness.staging

    def clock(self) -> datetime:
        return self.harness.clock.now()

    def nudge(self, now: bool = False) -> None:
        self.harness.nudge()


class _Sink(ShardSink):
    """The shard's own poll sink, its staging of a page timed."""

    def observe(self, observations, observed_at, page=None):
        started = time.perf_counter()
        try:
            return super().observe(observations, observed_at, page)
        finally:
            self.shard.harness._span("stage a poll page", started)


class Harness:
    def __init__(self, config: Any, clock: SoakClock, state_path: str, event_path: str) -> None:
        from worker.staging import Staging
        from worker.state import Restored
        from worker.webhooks import WebhookReceiver

        self.config, self.clock = config, clock
        self.staging = Staging(config, config.accounts, Restored.empty(), clock.t)
        self.receiver = WebhookReceiver(config, writer=None, clock=clock.now)
        self.accounts = {a.name: a for a in config.accounts}
        self.state_out = open(state_path, "wb")   # noqa: SIM115 - closed in finish()
        self.event_out = open(event_path, "wb")   # noqa: SIM115
        self.offset = 0
        self.counts = {"webhooks": 0, "unsigned": 0, "records": 0, "sent": 0, "events": 0, "state_writes": 0,
                       "dead": 0, "commits": 0, "expired": 0, "poll_calls": 0}
        self.next_expiry = clock.t + EXPIRY_SECS
        self.spans: dict[str, float] = {}     # the longest synchronous run of each kind, seconds
        self._committing: asyncio.Task | None = None
        self.runners: list[Any] = []

    def start_polling(self, session: Any) -> None:
        from worker.poll.fetch import Fetcher
        from worker.poll.limiter import AdaptiveLimiter
        from worker.poll.runner import PollRunner
        from worker.poll.scheduler import DateWindowScheduler
        from worker.providers import get_module

        async def no_sleep(_secs: float) -> None:
            await asyncio.sleep(0)

        for a in self.config.accounts:
            tracker = self.staging.trackers.get(a.name)
            schedule = DateWindowScheduler.for_account(a, {}) if get_module(a.provider).DEFAULTS.polling == "date" \
                else tracker
            fetcher = Fetcher(a, session, AdaptiveLimiter(1e6, a.poll.quota_window_secs), self.clock.now)
            self.runners.append(PollRunner(a, fetcher, schedule, _Sink(_ShardView(self), a), clock=self.clock.now,
                                           sleep=no_sleep, gaps=tracker if a.poll.gap_driven else None))

    # -- input ----------------------------------------------------------------------------------

    def _span(self, kind: str, started: float) -> None:
        took = time.perf_counter() - started
        if took > self.spans.get(kind, 0.0):
            self.spans[kind] = took

    def _stage(self, values: list[bytes]) -> None:
        records = [_Record(v, self.offset + i) for i, v in enumerate(values)]
        self.offset += len(values)
        self.staging.stage_raw(records, self.clock.now())

    async def hand_over(self, values: list[bytes]) -> None:
        """As worker.group's hand-over: HAND_OVER_STEP records at a time, the loop running again
        once HAND_OVER_BUDGET_SECS have passed; a span is the run between two turns of the loop."""
        from worker.group import HAND_OVER_BUDGET_SECS, HAND_OVER_STEP

        ran = time.perf_counter()
        for start in range(0, len(values), HAND_OVER_STEP):
            if start and time.perf_counter() - ran >= HAND_OVER_BUDGET_SECS:
                self._span("stage a slice of _raw records", ran)
                await asyncio.sleep(0)
                ran = time.perf_counter()
            self._stage(values[start:start + HAND_OVER_STEP])
        if values:
            self._span("stage a slice of _raw records", ran)

    def sent(self, items: list[list]) -> list[bytes]:
        from worker import raw
        from worker.model import Provider

        values = []
        for account, email_id, recipient, sent_at in items:
            a = self.accounts[account]
            when = datetime.fromtimestamp(sent_at, UTC)
            values.append(raw.encode(raw.SentMessage(Provider(a.provider), account, when, email_id, recipient, when)))
        self.counts["sent"] += len(values)
        return values

    def webhook(self, at: float, account: str, content_type: str, body: bytes, headers: dict[str, str]) -> list[bytes]:
        """One webhook request at time `at`, as the webhook edge handles it: verified, split and
        admitted; the `_raw` values it would write."""
        from worker.errors import BadSignature
        from worker.providers import get_module
        from worker.providers.base import WebhookRequest

        self.clock.t = at
        a = self.accounts[account]
        module = get_module(a.provider)
        req = WebhookRequest(body=body, content_type=content_type, headers=headers, query={})
        self.counts["webhooks"] += 1
        try:
            module.verify_webhook(a.context, req, self.clock.now(), a.webhook.replay_window_secs)
        except BadSignature:
            self.counts["unsigned"] += 1
            return []
        admitted, dead = self.receiver._split(a, req, self.clock.now())
        self.counts["dead"] += len(dead)
        self.counts["records"] += len(admitted)
        return [x.value for x in admitted]

    # -- commits --------------------------------------------------------------------------------

    def nudge(self) -> None:
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self.commit())

    async def commit(self) -> None:
        """Commit what is staged (again while something was staged during the merges)."""
        while not self.staging.batch.empty:
            batch = self.staging.take()
            out = self.state_out
            for key, value in batch.state:
                out.write(struct.pack(">II", len(key), NONE_LEN if value is None else len(value)))
                out.write(key)
                if value is not None:
                    out.write(value)
            lines = []
            for _topic, _key, value, _headers in batch.events:
                d = orjson.loads(value)
                lines.append(orjson.dumps([d["account"], d["email_id"], d["type"], d["event_id"]]))
            if lines:
                self.event_out.write(b"\n".join(lines) + b"\n")
            self.counts["events"] += len(batch.events)
            self.counts["state_writes"] += len(batch.state)
            self.counts["dead"] += len(batch.dead)
            self.counts["commits"] += 1
            started = time.perf_counter()
            self.staging.committed(batch, self.clock.t)
            self._span("apply a commit", started)
            for fut in self.staging.merge_off_loop():
                await fut
            await asyncio.sleep(0)

    async def flush(self) -> None:
        if self._committing is not None:
            await self._committing
        await self.commit()

    # -- a tick ---------------------------------------------------------------------------------

    async def poll(self) -> None:
        for runner in self.runners:
            for _ in range(MAX_STEPS):
                runner.state = "working"
                pages = runner.pages
                await runner.step()
                self.counts["poll_calls"] += runner.pages - pages
                if runner.state == "idle":
                    break

    async def expire(self) -> None:
        """The shard's expiry pass (worker.expiry `expire`) step by step: every table's recent
        writes merged in a thread, the scan's snapshots on the loop, the scan in a thread, hashed ids dropped and tombstones staged a slice at a
        time, EXPIRY_CHUNK per commit."""
        from worker.expiry import EXPIRY_CHUNK, EXPIRY_SLICE

        while self.clock.t >= self.next_expiry:
            now = self.next_expiry
            for fut in self.staging.merge_off_loop(every=True):
                await fut
            started = time.perf_counter()
            scan = self.staging.expiry_job(now)
            self._span("expiry scan (its part on the loop)", started)
            found = await asyncio.get_running_loop().run_in_executor(None, scan)
            for account, hashed in found.hashed.items():
                for start in range(0, len(hashed), EXPIRY_SLICE):
                    started = time.perf_counter()
                    self.staging.drop_hashed(account, hashed[start:start + EXPIRY_SLICE])
                    self._span("drop expired hashed ids", started)
                    await asyncio.sleep(0)
            kinds = (found.keys, found.ids, found.replays)
            for start in range(0, max(map(len, kinds)), EXPIRY_CHUNK):
                chunk = [kind[start:start + EXPIRY_CHUNK] for kind in kinds]
                for part in range(0, max(map(len, chunk)), EXPIRY_SLICE):
                    keys, ids, replays = (c[part:part + EXPIRY_SLICE] for c in chunk)
                    started = time.perf_counter()
                    self.staging.stage_deletions(keys, ids, replays, now=now)
                    self._span("stage expiry tombstones", started)
                    await asyncio.sleep(0)
                await self.flush()
            self.counts["expired"] += len(found.keys) + len(found.ids) + len(found.replays)
            self.next_expiry += EXPIRY_SECS

    def figures(self) -> dict:
        from bench.common import rss_bytes

        staging = self.staging
        trackers = staging.trackers.values()
        return {"t": self.clock.t, "rss": rss_bytes(), "entries": len(staging.table), "replays": len(staging.replays),
                "tracked_ids": sum(len(t) for t in trackers), "open_ids": sum(len(t.ids) for t in trackers),
                "table_nbytes": staging.table.nbytes,
                # writes not yet merged into the tables' columns (~100 B each, at most 65,536 a table)
                "recent": sum(len(t._recent) + len(t._merging) for t in staging.tables), **self.counts,
                "spans": self.spans}


async def serve(config: dict, env: dict, port: int, start: float, state_path: str, event_path: str,
                freeze: bool = False) -> dict:
    """Run until /finish; return the figures (bench/_child.py prints them). `freeze`: an experiment,
    not what the worker does: after each hourly expiry pass collect once and `gc.freeze()` what
    survives, so that the collector's full passes scan only what is newer."""
    import aiohttp
    from aiohttp import web

    from bench.common import malloc_trim, peak_rss_bytes, reset_peak_rss, rss_bytes
    from worker.config import parse_config

    os.environ.update(env)
    parsed = parse_config(config, os.environ)
    clock = SoakClock(start)
    harness = Harness(parsed, clock, state_path, event_path)
    lag = LagSampler()
    gc_started: list[float] = []

    def gc_watch(phase: str, info: dict) -> None:   # the collector's pauses hold the loop too
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started:
            harness._span(f"garbage collection, generation {info['generation']}", gc_started[0])

    done = asyncio.Event()
    result: dict = {}
    session = aiohttp.ClientSession()
    harness.start_polling(session)
    # as the worker does before it serves (worker.app `run_worker`): what exists now is frozen
    from worker.loopwatch import freeze_startup
    freeze_startup()
    # the base: everything imported and built, nothing held yet (the tables' fixed buffers included)
    gc.collect()
    # watched from here: the two full collections above run once, before the worker serves
    # (watched from the start, the freeze's own collection of ~60,000 objects showed as a 40 ms
    # "garbage collection, generation 2" no request ever waited on)
    gc.callbacks.append(gc_watch)
    malloc_trim()
    base = rss_bytes()
    reset_peak_rss()
    cpu0 = time.process_time()

    async def tick(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = orjson.loads(await request.read())
        harness._span("decode a tick (the soak's own)", started)
        await harness.hand_over(harness.sent(body["sent"]))
        # Each webhook is its own request (the loop runs others between them); their `_raw` records
        # come as fetches of `batch_max_records`, handed to the staging in slices of
        # HAND_OVER_STEP, the loop running each HAND_OVER_BUDGET_SECS (worker.group), then committed.
        limit = parsed.kafka.batch_max_records
        raw: list[bytes] = []
        for at, account, content_type, text, headers in body["webhooks"]:
            raw += harness.webhook(at, account, content_type, text.encode("latin-1"), headers)
            await asyncio.sleep(0)
            if len(raw) >= limit:
                await harness.hand_over(raw[:limit])
                del raw[:limit]
                await harness.flush()
        if raw:
            await harness.hand_over(raw)
        clock.t = body["now"]
        await harness.flush()
        await harness.poll()
        await harness.flush()
        hour = harness.next_expiry
        await harness.expire()
        if freeze and harness.next_expiry != hour:
            started = time.perf_counter()
            gc.collect()
            gc.freeze()
            harness._span("hourly collect + freeze", started)
        return web.json_response(harness.figures(), dumps=lambda d: orjson.dumps(d).decode())

    async def finish(_request: web.Request) -> web.Response:
        await harness.flush()
        figures = harness.figures()
        result.update(figures, base_rss=base, peak_rss=peak_rss_bytes(), cpu_secs=time.process_time() - cpu0,
                      lag=lag.samples)
        gc.collect()
        malloc_trim()
        result["rss_trimmed"] = rss_bytes()
        done.set()
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=256 << 20)
    app.router.add_post("/tick", tick)
    app.router.add_post("/finish", finish)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sampler = asyncio.ensure_future(lag.run())
    try:
        await done.wait()
        await asyncio.sleep(0.1)    # the answer to /finish goes out
    finally:
        sampler.cancel()
        await session.close()
        await runner.cleanup()
        harness.state_out.close()
        harness.event_out.close()
    return result
