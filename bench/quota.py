"""`quota`: polling at the quota, not at the round trip (issue 14).

The simulator (in the measuring process) answers every status-API call `LATENCY_MS` (150 ms) after
it arrived, as a provider on another continent does; the quota is charged when the call arrives.
The worker runs as a real process against a real broker, with the poll settings issue 14 adds set
explicitly (`max_in_flight` 8, `id_min_recheck_secs` 30, `gap_driven`, `gap_after_secs`,
`safety_sweep_secs`). A worker whose `check-config` does not know a key runs without it and the
table says so; a part that needs a missing key is reported as "not measured: <reason>".

- sweep: the first sweep of one SendCloud account (quota 3000/min, share 0.8: 40 calls/s allowed)
  holding a settled history of N emails (20,000; 2,000 quick). Calls/s the simulator accepted from
  the first request to the N-th committed event, as a share of the allowed rate, and the sustained
  rate: from the first call after the first second to the last call (the limiter starts with a
  bucket of one second's calls, which inflates a sweep of a few seconds); the drain time against
  its quota-bound minimum (calls made / 40 per s); throttle answers. Then the worker is restarted
  with its poll cursors tombstoned and sweeps the same rows again, all duplicates.
- ids: UniSender with N tracked ids (100,000; 5,000 quick) learned from the sent feed
  (`inputs.sent_topic`): mail sent at a steady rate over the last hour (10 minutes quick) and still
  being sent. After the first pass, for every status change in a measured period (60 s; 10 s
  quick): the time from the change in the simulator to the worker's event for it arriving at a
  read_committed consumer. p50/p95/max; a change whose event has not arrived by the end of the
  drain (120 s; 35 s quick) counts as longer than that. The period's calls/s as a share of quota.
- gaps: steady state, time compressed K times (120; 240 quick): status timelines run K times
  faster and every poll interval is the production one divided by K (`cache_ttl_secs` and
  `interval_min_secs` 600/K s, `interval_max_secs` 3600/K, `gap_after_secs` 900/K,
  `safety_sweep_secs` 3600/K or 21600/K; `lookback_days` 1). One worker polls three SendCloud
  accounts side by side, each with its own simulated stream and quota: date sweeps only
  (`gap_driven: false`), gap-driven with a 1 h safety sweep and gap-driven with the default (6 h).
  Each stream: yesterday's and the earlier part of today's mail settled (a compressed day's volume
  a day), then mail sent at `rate`/s from an hour before the worker starts, on the sent feed
  (from then on) and on webhooks for 95 % of the emails (a fixed 5 %, by a hash of the id, never
  get one). Warm-up: 0.9 compressed h from the first status-API call (every window's first sweep
  and the ids of the mail sent before the worker started); then a measured period of 6 compressed
  hours (1 quick). Per account, from the simulator's call log: calls by email id per compressed
  hour (counted), and date-window calls per compressed hour as each window's pages per sweep
  times its sweeps per hour (its observed start-to-start cycle; the configured interval when it
  had one sweep only): a count over the period would be off by a whole safety sweep. Also at the
  production cadence: the compression shortens the intervals, not the time a sweep takes at 40
  calls/s, so the date sweeps of today's window come less often than they would in production.
  Completeness: every final status (the last status the status API shows, when it happened by the
  period's end) of the mail sent in the period on the output topics by the end of a drain (at most
  2 compressed hours); the delay from each of them to its event, in compressed minutes (p95 of
  those without a webhook: what polling is for).
- CPU: the worker process's CPU time per new event (first sweep) and per duplicate row (re-sweep),
  from /proc/<pid>/stat.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    ROOT,
    CpuMeter,
    EventTail,
    WorkerProcess,
    check,
    check_config,
    cpu_note,
    delete_topics,
    die_with_parent,
    percentile,
    row,
    run_child,
    say,
    scrape,
    worker_config,
)

NAME = "quota"
LATENCY_MS = 150.0
ENV = {"BENCH_API_KEY": "bench-api-key", "BENCH_APP_KEY": "bench-app-key-0123456789",
       "BENCH_UNI_KEY": "bench-unisender-api-key"}
SC, UNI = "bench-sc", "bench-uni"
SC_QUOTA, UNI_QUOTA, SHARE = 3000, 1200, 0.8
# What issue 14 adds to `accounts[].poll`; a worker that does not know one runs without it.
NEW_POLL_KEYS = ("max_in_flight", "id_min_recheck_secs", "gap_driven", "gap_after_secs", "safety_sweep_secs")
STALENESS_GAUGE = "esw_poll_staleness_seconds"
WEBHOOK_SHARE = 0.95

FULL = {"sweep": {"messages": 20_000},
        "ids": {"ids": 100_000, "span_secs": 3600.0, "settle_secs": 75.0, "period_secs": 60.0, "drain_secs": 100.0},
        "gaps": {"compress": 120.0, "rate": 10.0, "pre_hours": 1.0, "warmup_hours": 0.9, "period_hours": 6.0,
                 "drain_hours": 2.0}}
QUICK = {"sweep": {"messages": 2_000},
         "ids": {"ids": 5_000, "span_secs": 600.0, "settle_secs": 5.0, "period_secs": 10.0, "drain_secs": 35.0},
         "gaps": {"compress": 240.0, "rate": 5.0, "pre_hours": 0.5, "warmup_hours": 0.6, "period_hours": 1.0,
                  "drain_hours": 1.0}}


# -- shared pieces --------------------------------------------------------------------------------


def allowed_per_sec(quota_per_minute: int) -> float:
    return quota_per_minute * SHARE / 60.0


def settle_config(data: dict, workdir: Path) -> tuple[dict, dict[str, str]]:
    """`data` as the worker tree's `check-config` accepts it: issue-14 poll keys it rejects are
    removed from every account (returned with the problem that named them); any other problem
    raises."""
    dropped: dict[str, str] = {}
    for _ in range(3):
        problems = check_config(data, ENV, workdir)
        if not problems:
            return data, dropped
        named = {key: line for line in problems for key in NEW_POLL_KEYS if key in line}
        strangers = [line for line in problems if not any(key in line for key in NEW_POLL_KEYS)]
        if strangers or not named:
            raise RuntimeError("the worker rejects the benchmark's config: " + "; ".join(problems))
        dropped.update(named)
        for account in data["accounts"]:
            for key in named:
                account.get("poll", {}).pop(key, None)
    raise RuntimeError("the worker keeps rejecting the benchmark's config: " + "; ".join(problems))


def bench_side_config(data: dict) -> Any:
    """The config as this process reads it (topics and shards only), without the issue-14 keys."""
    from worker.config import parse_config

    bare = {**data, "accounts": [{**a, "poll": {k: v for k, v in a.get("poll", {}).items() if k not in NEW_POLL_KEYS}}
                                 for a in data["accounts"]]}
    return parse_config(bare, ENV)


def calls_between(sim: Any, account: str, t0: float, t1: float) -> dict[str, Any]:
    """The simulator's call log of `account` with t0 <= arrival < t1 (its clock: wall time)."""
    out: dict[str, Any] = {"charged": 0, "pages": 0, "cached": 0, "throttled": 0, "failed": 0, "rows": 0,
                           "by_id": 0, "ids_asked": 0, "first": None, "last": None}
    for c in sim.calls:
        if c.account != account or not t0 <= c.at < t1:
            continue
        out["first"] = c.at if out["first"] is None else out["first"]
        out["last"] = c.at
        if c.outcome == "throttled":
            out["throttled"] += 1
            continue
        if c.outcome == "auth_error":
            out["failed"] += 1
            continue
        out["charged"] += 1   # everything past the credentials and the quota counts against it
        if c.outcome != "ok":
            out["failed"] += 1
        elif c.cached:
            out["cached"] += 1
        else:
            out["pages"] += 1
            out["rows"] += c.rows
        asked = [v for k, v in c.query_key if k in ("emailIds", "email_id")]
        if asked:
            out["by_id"] += 1   # SendCloud separates ids with `;`, UniSender with `,`
            out["ids_asked"] += sum(1 for part in asked[0].replace(";", ",").split(",") if part.strip())
    return out


class Arrivals:
    """Every event the tail read, by (email_id, type): the wall times it arrived."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, str], list[float]] = {}

    def __call__(self, record: Any, wall: float) -> None:
        import orjson

        event = orjson.loads(record.value)
        self.at.setdefault((event["email_id"], event["type"]), []).append(wall)

    def first_after(self, key: tuple[str, str], t: float) -> float | None:
        return next((a for a in self.at.get(key, ()) if a >= t), None)


async def make_tail(bootstrap: str, config: Any, arrivals: Arrivals | None = None) -> EventTail:
    from worker.emit import Topics, ensure_topics

    await ensure_topics(config.kafka)
    tail = EventTail(bootstrap, Topics.from_config(config.kafka).outputs, on_record=arrivals)
    await tail.start()
    return tail


async def create_topic(bootstrap: str, name: str, partitions: int = 4) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


class SentFeed:
    """What a mail-sending service writes to `inputs.sent_topic` (schemas/sent-message.v1.json):
    every message of the simulated accounts once it is sent (those sent before `since`, the
    simulator's settled history, are left out), published every `interval`."""

    def __init__(self, bootstrap: str, topic: str, sim: Any, accounts: list[str], since: float | None = None) -> None:
        self.bootstrap, self.topic, self.sim = bootstrap, topic, sim
        self.streams = {name: sim.accounts[name].stream for name in accounts}
        self.providers = {name: sim.accounts[name].account.provider.value for name in accounts}
        since_ms = None if since is None else since * 1000
        # the history is generated first and in order; live mail is sent from the anchor on
        self.next = {name: 0 if since_ms is None else sum(1 for m in stream.messages if m.sent_ms < since_ms)
                     for name, stream in self.streams.items()}
        self.published = 0
        self.producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                         linger_ms=5)
        await self.producer.start()

    async def publish_due(self) -> int:
        import orjson

        now_ms = int(self.sim.clock() * 1000)
        sends = []
        count = 0
        for name, stream in self.streams.items():
            stream.advance(now_ms)
            msgs = [m for m in stream.messages[self.next[name]:] if m.sent_ms <= now_ms]
            for m in msgs:
                sent_at = datetime.fromtimestamp(m.sent_ms / 1000, UTC).isoformat().replace("+00:00", "Z")
                record = {"provider": self.providers[name], "account": name, "email_id": m.email_id,
                          "recipient": m.recipient, "sent_at": sent_at}
                sends.append(await self.producer.send(self.topic, orjson.dumps(record), key=m.email_id.encode()))
            self.next[name] += len(msgs)
            count += len(msgs)
        await asyncio.gather(*sends)
        self.published += count
        return count

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()


class WebhookShare:
    """The simulator as `WebhookSender` sees it: every change of a fixed share of the emails, none
    of the others (their webhooks are lost)."""

    def __init__(self, sim: Any, share: float) -> None:
        self.sim, self.share = sim, share
        self.accounts = sim.accounts
        self.clock = sim.clock

    def kept(self, email_id: str) -> bool:
        digest = hashlib.blake2b(email_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") % 10_000 < self.share * 10_000

    def iter_changes(self, name: str, since: float | None, until: float | None) -> Any:
        return ((m, e) for m, e in self.sim.iter_changes(name, since, until) if self.kept(m.email_id))


async def loop_every(interval: float, stop: asyncio.Event, step: Any) -> None:
    while not stop.is_set():
        await step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def gauge(m: dict[str, float], name: str) -> float | None:
    """The largest series of a gauge, None when the worker does not export it."""
    values = [v for s, v in m.items() if s.startswith(name + "{")]
    return max(values) if values else None


def broker_pid() -> int | None:
    import os

    pid = os.environ.get("BENCH_BROKER_PID")
    return int(pid) if pid else None


# -- a: the first sweep at 150 ms, then a re-sweep of duplicates ---------------------------------


async def measure_sweep(bootstrap: str, messages: int, latency_ms: float = LATENCY_MS, profile: bool = False,
                        timeout: float = 300.0) -> dict:
    from bench.poll import _drop_cursors, _status, history_anchor
    from worker.model import Provider
    from worker.simulator import SimAccount, SimConfig, Simulator

    acct = SimAccount(provider=Provider.SENDCLOUD, name=SC, api_user="bench_user", api_key=ENV["BENCH_API_KEY"],
                      app_key="unused", quota_per_minute=SC_QUOTA, cache_ttl_secs=1.0, history_days=2,
                      history_per_day=messages // 2, live_per_sec=0, live_max=0)
    sim = Simulator(SimConfig(seed=22, accounts=(acct,), anchor=history_anchor(time.time()), latency_ms=latency_ms))
    base = await sim.start()
    now_ms = int(time.time() * 1000)
    msgs = sim.messages(SC)
    expected = sum(1 for m in msgs if (e := m.visible(now_ms)) is not None and e.type is not None)
    account = {"name": SC, "provider": "sendcloud", "base_url": base,
               "credentials": {"api_user": acct.api_user, "api_key_env": "BENCH_API_KEY"},
               "webhook": {"enabled": False},
               # as in the poll benchmark: no window is due twice within a sweep, and the re-sweep
               # after the restart is answered afresh (1 s result cache)
               "poll": {"quota_per_minute": SC_QUOTA, "quota_share": SHARE, "cache_ttl_secs": 1,
                        "interval_min_secs": 600, "lookback_days": 5, "max_in_flight": 8}}
    prefix = f"bench-quota-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-quota-"))
    data, dropped = settle_config(worker_config(bootstrap, prefix, [account]), workdir)
    config = bench_side_config(data)
    tail = await make_tail(bootstrap, config)
    allowed = allowed_per_sec(SC_QUOTA)
    out: dict = {"messages": len(msgs), "expected": expected, "dropped": dropped, "latency_ms": latency_ms,
                 "allowed": allowed}
    offset = time.time() - time.monotonic()
    profiles = []
    worker = None
    try:
        worker = WorkerProcess(data, ENV, workdir / "first", profile=profile)
        worker.start()
        await worker.ready()
        sim.peak_in_flight.clear()
        cpu = CpuMeter({"worker": worker.pid, "broker": broker_pid(), "bench": "self"})
        if not await tail.wait_for(expected, timeout):
            raise TimeoutError(f"only {tail.count:,} of {expected:,} events after {timeout:.0f} s\n{worker.log_tail()}")
        t_done = tail.time_of(expected) + offset
        out["cpu_sweep"] = cpu.stop()
        out["worker_cpu_sweep"] = cpu.secs.get("worker")
        first = next(c.at for c in sim.calls if c.account == SC)
        calls = calls_between(sim, SC, first, t_done)
        half = calls_between(sim, SC, first + (t_done - first) / 2, t_done)["charged"]
        out.update(sweep_secs=t_done - first, sweep=calls, peak_sweep=sim.peak_in_flight[SC],
                   second_half_rate=half / ((t_done - first) / 2),
                   request_secs=(calls["last"] - first) if calls["last"] else None,
                   call_times=[round(c.at - first, 4) for c in sim.calls if c.account == SC
                               and first <= c.at < t_done and c.outcome not in ("throttled", "auth_error")])
        m = await scrape(worker.url)
        out["staleness_gauge"] = gauge(m, STALENESS_GAUGE)
        worker.stop()
        profiles.append(("first sweep", worker.profile_top(30)))

        # the same windows again from offset 0 against the restored dedup table: all duplicates
        await _drop_cursors(bootstrap, config, prefix)
        worker = WorkerProcess(data, ENV, workdir / "again", profile=profile)
        committed_before = tail.count
        mark = time.time()   # every call from now on is the re-sweep's
        worker.start()
        await worker.ready()
        sim.peak_in_flight.clear()
        cpu = CpuMeter({"worker": worker.pid, "broker": broker_pid(), "bench": "self"})
        deadline = time.monotonic() + timeout
        while calls_between(sim, SC, mark, time.time() + 1)["rows"] < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the re-sweep did not finish in {timeout:.0f} s\n{worker.log_tail()}")
            await asyncio.sleep(0.05)
        out["cpu_resweep"] = cpu.stop()
        out["worker_cpu_resweep"] = cpu.secs.get("worker")
        again = calls_between(sim, SC, mark, time.time() + 1)
        await asyncio.sleep(1.0)  # the last page's (empty) transaction
        status = await _status(worker.url)
        # from the first call's arrival to the last call's answer
        span = again["last"] + latency_ms / 1000 - again["first"] if again["first"] else None
        out.update(resweep=again, resweep_secs=span,
                   peak_resweep=sim.peak_in_flight[SC], resweep_committed=tail.count - committed_before,
                   restored_entries=sum(s["entries"] for s in status["group"]["shards"]))
        worker.stop()
        profiles.append(("re-sweep", worker.profile_top(30)))
        try:   # the worker's figures stand whatever becomes of the floor's run (its check fails)
            out["floor"] = await _poll_floor(bootstrap, base, acct, prefix, allowed,
                                             account["poll"]["max_in_flight"], sim, mark)
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            out["floor"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        if worker is not None:
            worker.stop()
        await asyncio.sleep(0.5)
        out["final_events"] = tail.count
        out["duplicates"] = tail.duplicates
        await tail.stop()
        await sim.stop()
        await delete_topics(bootstrap, prefix)
    _print_profiles("quota sweep", profiles)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


async def _poll_floor(bootstrap: str, base: str, acct: Any, prefix: str, rate: float, in_flight: int, sim: Any,
                      since: float) -> dict:
    """bench/poll_floor.py over the dates the worker's re-sweep asked, at the worker's rate and
    in-flight bound, against the same simulator: the floor's two passes (first sweep, re-sweep)."""
    days = sorted({dict(c.query_key).get("startDate") for c in sim.calls
                   if c.account == SC and c.at >= since and c.outcome == "ok"} - {None})
    args = {"base_url": base, "bootstrap": bootstrap, "prefix": f"{prefix}.floor", "api_user": acct.api_user,
            "rate": rate, "in_flight": in_flight, "dates": days}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.poll_floor", orjson.dumps(args).decode(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                cwd=ROOT, preexec_fn=die_with_parent,
                                                env={**os.environ, "POLL_FLOOR_API_KEY": acct.api_key})
    out, err = await asyncio.wait_for(proc.communicate(), 600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.poll_floor exited with {proc.returncode}: {err.decode()[-2000:]}")
    return {**orjson.loads(out.strip().splitlines()[-1]), "dates": len(days)}


def _print_profiles(what: str, profiles: list[tuple[str, str | None]]) -> None:
    import sys

    for phase, top in profiles:
        if top:
            print(f"--- cProfile of the worker process ({what}, {phase}) ---\n{top}", file=sys.stderr)


# -- b: UniSender ids, staleness with spare quota ------------------------------------------------


async def measure_ids(bootstrap: str, ids: int, span_secs: float, period_secs: float, drain_secs: float,
                      settle_secs: float = 0.0, latency_ms: float = LATENCY_MS, profile: bool = False,
                      timeout: float = 300.0) -> dict:
    from worker.model import Provider
    from worker.simulator import SimAccount, SimConfig, Simulator

    now = time.time()
    acct = SimAccount(provider=Provider.UNISENDER, name=UNI, api_user="bench_login", api_key=ENV["BENCH_UNI_KEY"],
                      quota_per_minute=UNI_QUOTA, history_days=0, history_per_day=0,
                      live_per_sec=ids / span_secs, live_max=None)
    sim = Simulator(SimConfig(seed=23, accounts=(acct,), anchor=now - span_secs, latency_ms=latency_ms))
    built = time.monotonic()
    sim.messages(UNI)
    build_secs = time.monotonic() - built
    base = await sim.start()
    prefix = f"bench-quota-{uuid.uuid4().hex[:8]}"
    sent_topic = f"{prefix}.sent"
    account = {"name": UNI, "provider": "unisender", "base_url": base,
               "credentials": {"api_key_env": "BENCH_UNI_KEY"}, "webhook": {"enabled": False},
               "poll": {"quota_per_minute": UNI_QUOTA, "quota_share": SHARE, "max_in_flight": 8,
                        "id_min_recheck_secs": 30}}
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-quota-"))
    data, dropped = settle_config(worker_config(bootstrap, prefix, [account], inputs={"sent_topic": sent_topic}),
                                  workdir)
    config = bench_side_config(data)
    await create_topic(bootstrap, sent_topic)
    arrivals = Arrivals()
    tail = await make_tail(bootstrap, config, arrivals)
    feed = SentFeed(bootstrap, sent_topic, sim, [UNI])
    await feed.start()
    allowed = allowed_per_sec(UNI_QUOTA)
    out: dict = {"ids": ids, "dropped": dropped, "latency_ms": latency_ms, "allowed": allowed,
                 "period_secs": period_secs, "drain_secs": drain_secs, "build_secs": build_secs}
    stop = asyncio.Event()
    feeding = None
    worker = None
    try:
        t_pub = time.monotonic()
        out["tracked"] = await feed.publish_due()
        out["publish_secs"] = time.monotonic() - t_pub
        worker = WorkerProcess(data, ENV, workdir / "ids", profile=profile)
        mark = time.time()
        worker.start()
        await worker.ready()
        feeding = asyncio.create_task(feed.run(0.5, stop))
        # warm-up: every tracked id checked once, and the events of that first pass committed
        t_ready = time.time()
        deadline = time.monotonic() + timeout
        while calls_between(sim, UNI, mark, time.time() + 1)["rows"] < out["tracked"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the first pass over {out['tracked']:,} ids did not end in {timeout:.0f} s"
                                   f"\n{worker.log_tail()}")
            await asyncio.sleep(0.2)
        out["first_pass_secs"] = time.time() - t_ready
        live_per_2s = 2 * ids / span_secs
        while time.monotonic() < deadline:
            before = tail.count
            await asyncio.sleep(2.0)
            if tail.count - before <= 3 * live_per_2s + 20:
                break
        # the first pass checks every id at once, and the re-checks then come in waves; give them
        # time to spread out (the steady state) before measuring
        await asyncio.sleep(settle_secs)
        out["warmup_secs"] = time.time() - t_ready

        # the measured period
        t0 = time.time()
        cpu = CpuMeter({"worker": worker.pid, "broker": broker_pid(), "bench": "self"})
        events_before = tail.count
        await asyncio.sleep(period_secs)
        t1 = time.time()
        out["cpu"] = cpu.stop()
        out["worker_cpu"] = cpu.secs.get("worker")
        out["events_in_period"] = tail.count - events_before
        out["period"] = calls_between(sim, UNI, t0, t1)
        out["staleness_gauge"] = gauge(await scrape(worker.url), STALENESS_GAUGE)
        changes = [c for c in sim.changes(UNI, until=t1, since=t0) if c.type is not None]
        keys = [((c.email_id, c.type.value), c.occurred_at.timestamp()) for c in changes]
        deadline = time.monotonic() + drain_secs
        while time.monotonic() < deadline:
            if all(arrivals.first_after(k, at) is not None for k, at in keys):
                break
            await asyncio.sleep(0.25)
        staleness = []
        missing = 0
        late = []   # the changes not seen, or seen after 60 s: what the email did and what arrived
        by_id = sim.accounts[UNI].stream.by_id
        for k, at in keys:
            seen = arrivals.first_after(k, at)
            if seen is None:
                missing += 1
            else:
                staleness.append(seen - at)
            if (seen is None or seen - at > 60) and len(late) < 20:
                m = by_id[k[0]]
                asked = [round(c.at - t0, 1) for c in sim.calls if c.account == UNI and c.at >= t0 - 90
                         and any(k[0] in v.split(",") for key, v in c.query_key if key == "email_id")]
                late.append({"email_id": k[0], "type": k[1], "at": round(at - t0, 1), "asked": asked,
                             "seen_after": None if seen is None else round(seen - at, 1),
                             "timeline": [(round(e.at_ms / 1000 - t0, 1), e.provider_status,
                                           e.type.value if e.type else None) for e in m.entries],
                             "arrived": {t: [round(a - t0, 1) for a in arrivals.at.get((k[0], t), ())]
                                         for t in {e.type.value for e in m.entries if e.type}}})
        scraped = await scrape(worker.url)
        log = worker.log_path.read_text(errors="replace").splitlines() if worker.log_path.exists() else []
        out.update(changes=len(keys), missing=missing, staleness=sorted(staleness),
                   waited_secs=time.time() - t1, late=late,
                   worker_counts={name: v for name, v in scraped.items() if name.split("{")[0] in (
                       "esw_poll_requests_total", "esw_errors_total", "esw_dedup_drops_total") and "{" in name},
                   worker_problems=[line[:300] for line in log if '"WARNING"' in line or '"ERROR"' in line][:20],
                   ids_per_10s=_ids_asked_per_10s(sim, t0 - 60, time.time()))
        stop.set()
        await feeding
        worker.stop()
        _print_profiles("quota ids", [("period", worker.profile_top(30))])
    finally:
        stop.set()
        if feeding is not None and not feeding.done():
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeding
        if worker is not None:
            worker.stop()
        await asyncio.sleep(0.5)
        out["duplicates"] = tail.duplicates
        out["phantoms"] = _phantoms(sim, [UNI], arrivals)
        out["final_events"] = tail.count
        await tail.stop()
        await feed.stop()
        await sim.stop()
        await delete_topics(bootstrap, prefix)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def _ids_asked_per_10s(sim: Any, since: float, until: float) -> list[tuple[int, int, int]]:
    """(calls, ids asked, ids asked that were sent more than 20 minutes before) in each 10 s."""
    by_id = sim.accounts[UNI].stream.by_id
    bins = [[0, 0, 0] for _ in range(int((until - since) // 10) + 1)]
    for c in sim.calls:
        if c.account != UNI or not since <= c.at < until:
            continue
        b = bins[int((c.at - since) // 10)]
        b[0] += 1
        for key, v in c.query_key:
            if key == "email_id":
                ids = v.split(",")
                b[1] += len(ids)
                b[2] += sum(1 for i in ids if (m := by_id.get(i)) is not None and c.at - m.sent_ms / 1000 > 1200)
    return [tuple(b) for b in bins]


def _phantoms(sim: Any, accounts: list[str], arrivals: Arrivals) -> list[str]:
    """Events for a status the email never had, or for no email of `accounts` (at most 5 shown)."""
    streams = [sim.accounts[name].stream for name in accounts]
    bad = []
    for (email_id, type_), _ in arrivals.at.items():
        m = next((found for st in streams if (found := st.by_id.get(email_id)) is not None), None)
        if m is None or type_ not in {e.type.value for e in m.entries if e.type is not None}:
            bad.append(f"{email_id}/{type_}")
    return bad[:5] + ([f"... {len(bad)} in all"] if len(bad) > 5 else [])


# -- c: gap-driven polling against date sweeps, in steady state -----------------------------------

# (label, account, gap_driven, safety_sweep_secs in production seconds): three accounts polled side
# by side by one worker, each against its own simulated mail stream and quota
GAP_MODES = (("date sweeps", "bench-sc-date", False, 3600.0),
             ("gap-driven, safety 1 h", "bench-sc-gap1h", True, 3600.0),
             ("gap-driven, safety 6 h", "bench-sc-gap6h", True, 21600.0))   # the default


def _finals(sim: Any, account: str, sent_from: float, sent_until: float, happened_by: float) -> dict:
    """(email_id, type) -> time of the final status of every email sent in [sent_from, sent_until):
    the last status the status API shows with an event type, when it happened by `happened_by`."""
    out = {}
    for m in sim.messages(account, sent_until):
        if m.sent_ms < sent_from * 1000:
            continue
        last = [e for e in m.entries if e.api_visible][-1]
        if last.type is not None and last.at_ms <= happened_by * 1000:
            out[(m.email_id, last.type.value)] = last.at_ms / 1000
    return out


async def _all_arrived(arrivals: Arrivals, expected: dict, secs: float) -> bool:
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if all(arrivals.first_after(k, at) is not None for k, at in expected.items()):
            return True
        await asyncio.sleep(0.25)
    return all(arrivals.first_after(k, at) is not None for k, at in expected.items())


async def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        await asyncio.sleep(min(left, 1.0))


def _window_sweeps(calls: list[tuple[float, int]], t0: float, t1: float, rtt: float) -> dict:
    """One date window's calls (arrival, offset) in time order: its sweeps (a sweep starts with the
    call for offset 0 and runs to the next such call). Pages per sweep and a sweep's own duration
    (first call to last answer) over the sweeps that started in [t0, t1) (the last one started
    before t0 when none did), and the mean start-to-start cycle from the last sweep started before
    t0 to the last started before t1 (None with one start)."""
    starts = [at for at, offset in calls if offset == 0]
    if not starts:
        return {"sweeps": 0, "pages": 0.0, "duration": 0.0, "cycle": None, "in_period": 0, "starts": []}
    inside = [i for i, s in enumerate(starts) if t0 <= s < t1]
    earlier = [i for i, s in enumerate(starts) if s < t0]
    used = inside or earlier[-1:]
    pages, durations = [], []
    for i in used:
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        sweep = [at for at, _ in calls if starts[i] <= at < end]
        pages.append(len(sweep))
        durations.append(sweep[-1] - starts[i] + rtt)
    chain = [starts[i] for i in earlier[-1:] + inside]
    cycle = (chain[-1] - chain[0]) / (len(chain) - 1) if len(chain) > 1 else None
    return {"sweeps": len(used), "pages": sum(pages) / len(pages) if pages else 0.0,
            "duration": sum(durations) / len(durations) if durations else 0.0, "cycle": cycle,
            "in_period": len(inside), "starts": starts}


def _gap_account(sim: Any, name: str, k: float, t0: float, t1: float, configured: float, rtt: float,
                 intervals: dict[str, float] | None = None) -> dict:
    """What one account's polling cost over the measured period [t0, t1), from the simulator's call
    log: calls by email id (counted), date-window calls (counted, and per window as pages per sweep
    times sweeps per hour: as measured, and at the production cadence, where a sweep's own time is
    negligible against its interval: the compression shortens the intervals, not the sweeps), the
    ids asked and what the status API showed for them at the time. A window swept once in the
    period counts at its interval as the worker's /status gives it per send date (`intervals`,
    wall seconds), else at `configured`."""
    from worker.model import EventType

    hour = 3600.0 / k
    stream = sim.accounts[name].stream
    windows: dict[tuple[str, str], list[tuple[float, int]]] = {}
    by_id = ids_asked = date_calls = throttled = failed = 0
    shown = {"final": 0, "soft_bounce_last": 0, "soft_bounce_then": 0, "nothing": 0}
    distinct: set[str] = set()
    for c in sim.calls:
        if c.account != name:
            continue
        if c.outcome == "throttled":
            throttled += t0 <= c.at < t1
            continue
        if c.outcome != "ok":
            failed += t0 <= c.at < t1
        q = dict(c.query_key)
        if "emailIds" in q:
            if t0 <= c.at < t1:
                by_id += 1
                at_ms = int(c.at * 1000)
                for email_id in (i for i in q["emailIds"].split(";") if i):
                    ids_asked += 1
                    distinct.add(email_id)
                    m = stream.by_id.get(email_id)
                    seen = m.visible(at_ms) if m is not None else None
                    if seen is None or seen.type is None:
                        kind = "nothing"
                    elif seen.type is EventType.SOFT_BOUNCE:   # the last status it will ever show, or not
                        kind = "soft_bounce_then" if m.next_change_ms(seen.at_ms) is not None else "soft_bounce_last"
                    else:
                        kind = "final"
                    shown[kind] += 1
            continue
        windows.setdefault((q.get("startDate", "?"), q.get("status", "*")), []).append((c.at, int(q.get("start", 0))))
        date_calls += t0 <= c.at < t1
    today = stream.local_date(int(t1 * 1000)).isoformat()
    per_window = {}
    amortised = {"today": 0.0, "older": 0.0, "production": 0.0}
    early = 0   # sweeps that came sooner than `configured` after the window's previous one
    for (day, status), calls in sorted(windows.items()):
        w = _window_sweeps(calls, t0, t1, rtt)
        cycle = w["cycle"] if w["cycle"] is not None else (intervals or {}).get(day, configured) + w["duration"]
        w["per_hour"] = w["pages"] * hour / cycle if cycle else 0.0
        w["per_hour_production"] = w["pages"] * hour / max(cycle - w["duration"], 1e-3) if cycle else 0.0
        w["cycle_hours"] = cycle / hour if cycle else None
        w["configured"] = w["cycle"] is None
        per_window[f"{day}|{status}"] = w
        amortised["today" if day == today else "older"] += w["per_hour"]
        amortised["production"] += w["per_hour_production"]
        starts = w["starts"]
        early += sum(1 for a, b in zip(starts, starts[1:], strict=False) if b - a < 0.9 * configured)
    hours = (t1 - t0) / hour
    days = {d.isoformat(): len(msgs) for d, msgs in stream.days.items()}
    return {"by_id": by_id, "by_id_per_hour": by_id / hours, "ids_asked": ids_asked, "distinct_ids": len(distinct),
            "shown": shown, "date_calls": date_calls, "date_per_hour_counted": date_calls / hours,
            "date_per_hour": amortised["today"] + amortised["older"], "today_per_hour": amortised["today"],
            "date_per_hour_production": amortised["production"], "early_sweeps": early,
            "older_per_hour": amortised["older"], "windows": per_window, "throttled": throttled, "failed": failed,
            "today": today, "rows_today": days.get(today, 0),
            # today's history (sent before the live mail began): a share of the day that depends on
            # the hour in China when the bench ran (see `_midday`)
            "rows_today_history": sum(1 for msg in stream.days.get(date.fromisoformat(today), ())
                                      if msg.sent_ms < stream.anchor_ms),
            "rows_older": sum(n for d, n in days.items() if d != today)}


def _date_intervals(status: dict) -> dict[str, dict[str, float]]:
    """account -> send date -> the longest interval of its windows, from a worker's /status."""
    out: dict[str, dict[str, float]] = {}
    for poller in status.get("group", {}).get("pollers", []):
        for w in poller.get("windows") or ():
            day = w["window"].split("|")[0]
            dates = out.setdefault(poller.get("account", ""), {})
            dates[day] = max(dates.get(day, 0.0), float(w["interval_secs"]))
    return out


def _delays(expected: dict, arrivals: Arrivals, lost: set, k: float) -> dict:
    """Compressed minutes from each final status to its event's arrival (all, and without a webhook)."""
    every, silent, missing = [], [], 0
    for key, at in expected.items():
        seen = arrivals.first_after(key, at)
        if seen is None:
            missing += 1
            continue
        minutes = (seen - at) * k / 60.0
        every.append(minutes)
        if key in lost:
            silent.append(minutes)
    every.sort()
    silent.sort()
    return {"p50": percentile(every, 0.5), "p95": percentile(every, 0.95), "max": every[-1] if every else None,
            "silent_p50": percentile(silent, 0.5), "silent_p95": percentile(silent, 0.95),
            "silent_max": silent[-1] if silent else None, "missing": missing}


async def measure_gaps(bootstrap: str, compress: float, rate: float, pre_hours: float, warmup_hours: float,
                       period_hours: float, drain_hours: float, latency_ms: float = LATENCY_MS,
                       profile: bool = False, timeout: float = 300.0) -> dict:
    from bench.poll import _status
    from worker.model import Provider
    from worker.simulator import SimAccount, SimConfig, Simulator, WebhookSender

    k = compress
    hour = 3600.0 / k                      # wall seconds of a compressed hour
    per_day = round(rate * 86400 / k)      # the live rate's emails per compressed day
    anchor = time.time() - pre_hours * hour
    names = [name for _, name, _, _ in GAP_MODES]
    accts = tuple(SimAccount(provider=Provider.SENDCLOUD, name=name, api_user=f"bench_{name[9:]}",
                             api_key=ENV["BENCH_API_KEY"], app_key=ENV["BENCH_APP_KEY"], quota_per_minute=SC_QUOTA,
                             cache_ttl_secs=600 / k, history_days=1, history_per_day=per_day, live_per_sec=rate,
                             live_max=None) for name in names)
    sim = Simulator(SimConfig(seed=24, accounts=accts, anchor=anchor, time_scale=k, latency_ms=latency_ms))
    base = await sim.start()
    prefix = f"bench-quota-{uuid.uuid4().hex[:8]}"
    sent_topic = f"{prefix}.sent"
    accounts = []
    for (_, name, gap_driven, safety), acct in zip(GAP_MODES, accts, strict=True):
        poll = {"quota_per_minute": SC_QUOTA, "quota_share": SHARE, "cache_ttl_secs": 600 / k,
                "interval_min_secs": 600 / k, "interval_max_secs": 3600 / k, "lookback_days": 1, "max_in_flight": 8,
                "gap_driven": gap_driven, "gap_after_secs": 900 / k, "safety_sweep_secs": safety / k}
        accounts.append({"name": name, "provider": "sendcloud", "base_url": base,
                         "credentials": {"api_user": acct.api_user, "api_key_env": "BENCH_API_KEY"},
                         "webhook": {"app_key_env": "BENCH_APP_KEY"}, "poll": poll})
    workdir = Path(tempfile.mkdtemp(prefix="esw-bench-quota-"))
    out: dict = {"compress": k, "rate": rate, "per_day": per_day, "pre_hours": pre_hours, "warmup_hours": warmup_hours,
                 "period_hours": period_hours, "drain_hours": drain_hours, "latency_ms": latency_ms, "modes": {}}
    try:
        data, dropped = settle_config(worker_config(bootstrap, prefix, accounts, inputs={"sent_topic": sent_topic}),
                                      workdir)
    except RuntimeError as exc:
        await sim.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        return {**out, "not_measured": str(exc)}
    out["dropped"] = dropped
    config = bench_side_config(data)
    await create_topic(bootstrap, sent_topic)
    arrivals = Arrivals()
    tail = await make_tail(bootstrap, config, arrivals)
    feed = SentFeed(bootstrap, sent_topic, sim, names, since=anchor)
    await feed.start()
    share = WebhookShare(sim, WEBHOOK_SHARE)
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    worker = None
    sender = None
    try:
        await feed.publish_due()
        worker = WorkerProcess(data, ENV, workdir / "gaps", profile=profile)
        worker.start()
        await worker.ready()
        sender = WebhookSender(share, worker.url, accounts=names, since=anchor - 1, concurrency=16, seed=24)
        tasks = [asyncio.create_task(feed.run(0.25, stop)),
                 asyncio.create_task(loop_every(0.25, stop, sender.send_due))]
        # warm-up: from the first status-API call, every window's first sweep and the ids of the
        # mail sent before the worker started
        deadline = time.monotonic() + timeout
        while not any(c.account in names for c in sim.calls):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no status-API call in {timeout:.0f} s\n{worker.log_tail()}")
            await asyncio.sleep(0.1)
        t_first = next(c.at for c in sim.calls if c.account in names)
        t0 = t_first + warmup_hours * hour
        t1 = t0 + period_hours * hour
        await _sleep_until(t0)
        cpu = CpuMeter({"worker": worker.pid, "broker": broker_pid(), "bench": "self"})
        await _sleep_until(t1)
        out["cpu"] = cpu.stop()
        out["worker_cpu"] = cpu.secs.get("worker")
        expected = {name: _finals(sim, name, t0, t1, t1) for name in names}
        union = {key: at for e in expected.values() for key, at in e.items()}
        done = await _all_arrived(arrivals, union, drain_hours * hour)
        t_end = time.time()
        out.update(t_first=t_first, t0=t0, t1=t1, all_arrived=done, drain_secs=t_end - t1,
                   webhooks=sender.totals.delivered)
        intervals = _date_intervals(await _status(worker.url))
        for (label, name, gap_driven, safety) in GAP_MODES:
            if gap_driven and "gap_driven" in dropped:
                out["modes"][label] = {"not_measured": f"this worker rejects poll.gap_driven: {dropped['gap_driven']}"}
                continue
            lost = {key for key in expected[name] if not share.kept(key[0])}
            configured = (safety if gap_driven else 600.0) / k
            out["modes"][label] = {
                "account": name, "gap_driven": gap_driven, "safety_secs": safety,
                "expected": len(expected[name]), "without_webhook": len(lost),
                **_delays(expected[name], arrivals, lost, k),
                **_gap_account(sim, name, k, t0, t1, configured, latency_ms / 1000, intervals.get(name))}
        worker.stop()
        _print_profiles("quota gaps", [("period", worker.profile_top(30))])
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 30)
        if sender is not None:
            await sender.close()
        if worker is not None:
            worker.stop()
        await asyncio.sleep(0.5)
        out["duplicates"] = tail.duplicates
        out["phantoms"] = _phantoms(sim, names, arrivals)
        await tail.stop()
        await feed.stop()
        await sim.stop()
        await delete_topics(bootstrap, prefix)
    shutil.rmtree(workdir, ignore_errors=True)
    return out


# -- the table -------------------------------------------------------------------------------------


def _dropped_note(dropped: dict[str, str]) -> str:
    return f"; this worker runs without {', '.join(sorted(dropped))} (not config keys)" if dropped else ""


def _sweep_rows(r: dict) -> list[dict]:
    allowed, c = r["allowed"], r["sweep"]
    secs = r["sweep_secs"]
    achieved = c["charged"] / secs
    minimum = c["charged"] / allowed
    # the worker's limiter holds a bucket of one second's calls (worker.poll.limiter), full when the
    # process has been up a second: a sweep of a few seconds may run partly on it
    burst = round(allowed)
    times, span = r["call_times"], r["request_secs"]
    later = [t for t in times if t >= 1.0]
    sustained = (len(later) - 1) / (later[-1] - later[0]) if len(later) > 1 and later[-1] > later[0] else None
    per_second = [sum(1 for t in times if i <= t < i + 1) for i in range(int(times[-1]) + 1)] if times else []
    after = times[burst:]
    after_burst = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 and after[-1] > after[0] else None
    rows = [
        row(NAME, "first sweep: calls/s as a share of quota x share", achieved / allowed * 100, "%",
            f"{achieved:.1f} of {allowed:.0f} calls/s allowed ({SC_QUOTA}/min x {SHARE}), from the first request to "
            f"the last event committed; {c['charged']:,} calls ({c['pages']:,} pages, {c['rows']:,} rows) for "
            f"{r['messages']:,} emails at {r['latency_ms']:.0f} ms; at most {r['peak_sweep']} answers in flight"
            + _dropped_note(r["dropped"])),
        row(NAME, "first sweep: sustained calls/s (after the first second) / quota x share",
            sustained / allowed * 100 if sustained else "n/a", "%" if sustained else "",
            (f"{sustained:.1f} calls/s from the first call after 1 s to the last ({len(later):,} calls); "
             if sustained else "the requests span less than 2 s; ")
            + (f"after the first {burst} calls (the limiter's bucket) {after_burst:.1f} calls/s "
               f"({after_burst / allowed * 100:.0f} %); " if after_burst else "")
            + "calls in each second from the first: " + ", ".join(str(n) for n in per_second)
            + f" (at most {burst} once the bucket is spent)"),
        row(NAME, "first sweep: drain time / quota-bound minimum", secs / minimum, "x",
            f"{secs:.2f} s from the first request to the last event committed; minimum {minimum:.2f} s "
            f"({c['charged']:,} calls / {allowed:.0f} per s; a full bucket of {burst} would allow "
            f"{max(0, c['charged'] - burst) / allowed:.2f} s); requests span {span:.2f} s"),
        row(NAME, "first sweep: throttle answers", c["throttled"], "calls",
            f"{c['failed']} other failed calls; " + cpu_note(r["cpu_sweep"])),
    ]
    again, rs = r["resweep"], r["resweep_secs"]
    if rs:
        rate = again["charged"] / rs
        rows.append(row(NAME, "re-sweep (all duplicates): calls/s as a share of quota x share", rate / allowed * 100,
                        "%", f"{rate:.1f} calls/s, {again['rows']:,} rows in {rs:.1f} s; {again['throttled']} "
                             "throttled;"
                             f" at most {r['peak_resweep']} in flight; " + cpu_note(r["cpu_resweep"])))
    rows.append(row(NAME, "worker CPU per new event (first sweep)", r["worker_cpu_sweep"] / r["expected"] * 1e6, "µs",
                    f"{r['worker_cpu_sweep']:.2f} s over {r['expected']:,} events ({c['rows']:,} rows)"))
    rows.append(row(NAME, "worker CPU per duplicate row (re-sweep)",
                    r["worker_cpu_resweep"] / max(1, again["rows"]) * 1e6, "µs",
                    f"{r['worker_cpu_resweep']:.2f} s over {again['rows']:,} rows, from /readyz after a restart "
                    f"(restored {r['restored_entries']:,} entries)"))
    f = r["floor"]
    if "error" in f:
        return [*rows, check(NAME, "floor read-back", False, f"bench.poll_floor failed: {f['error']}"),
                *_sweep_check(r)]
    fs, fr = f["sweep"], f["resweep"]
    new_us = fs["cpu_secs"] / max(1, fs["new"]) * 1e6
    dup_us = fr["cpu_secs"] / max(1, fr["rows"]) * 1e6
    method = ("bench/poll_floor.py, the same simulator, dates, rate and in-flight bound: aiohttp, orjson, a set "
              "look-up per row, an event and a dedup record per new row and a cursor per page in 250 ms "
              "transactions; its own CPU (time.process_time)")
    rows.append(row(NAME, "floor: CPU per new event (first sweep)", new_us, "µs",
                    f"{fs['cpu_secs']:.2f} s over {fs['new']:,} new rows ({fs['pages']:,} pages, {fs['transactions']} "
                    f"transactions); the worker {r['worker_cpu_sweep'] / r['expected'] * 1e6 / new_us:.2f} x; "
                    + method))
    rows.append(row(NAME, "floor: CPU per duplicate row (re-sweep)", dup_us, "µs",
                    f"{fr['cpu_secs']:.2f} s over {fr['rows']:,} rows ({fr['transactions']} transactions); the worker "
                    f"{r['worker_cpu_resweep'] / max(1, again['rows']) * 1e6 / dup_us:.2f} x"))
    rows.append(check(NAME, "floor read-back", fs["new"] == fs["rows"] == fr["rows"] == c["rows"] and fr["new"] == 0,
                      f"the floor's first pass {fs['new']:,} new of {fs['rows']:,} rows, its second {fr['new']} new "
                      f"of {fr['rows']:,}; the worker's first sweep {c['rows']:,} rows ({f['dates']} dates)"))
    return rows + _sweep_check(r)


def _sweep_check(r: dict) -> list[dict]:
    return [check(NAME, "sweep read-back",
                  r["final_events"] == r["expected"] and not r["duplicates"] and r["resweep_committed"] == 0,
                  f"{r['final_events']:,} events read back read_committed of {r['expected']:,} expected, "
                  f"{r['duplicates']} duplicate event_id; the re-sweep committed {r['resweep_committed']}")]


def _ids_rows(r: dict) -> list[dict]:
    st, n, missing = r["staleness"], r["changes"], r["missing"]
    censored = n * 0.95 > len(st)
    p95 = None if censored or not st else percentile(st + [float("inf")] * missing, 0.95)
    waited = r["waited_secs"]
    c = r["period"]
    rate = c["charged"] / r["period_secs"]
    gauge_note = ("gauge esw_poll_staleness_seconds not exported" if r["staleness_gauge"] is None
                  else f"gauge {STALENESS_GAUGE} {r['staleness_gauge']:.1f} s at the period's end")
    rows = [
        row(NAME, "ids: p95 staleness (change -> committed event)",
            p95 if p95 is not None else f"> {waited:.0f}", "s",
            f"{n:,} changes in {r['period_secs']:.0f} s over {r['tracked']:,} tracked UniSender ids (sent feed); "
            f"p50 {_fmt(percentile(st + [float('inf')] * missing, 0.5), waited)} s, "
            f"max seen {_fmt(st[-1] if st else None, waited)} s; {sum(1 for x in st if x > 60):,} seen after more "
            f"than 60 s, {missing:,} not seen {waited:.0f} s after the period; the period began "
            f"{r['warmup_secs']:.0f} s after the worker was ready, {r['first_pass_secs']:.0f} s of it the first "
            "pass over the ids" + _dropped_note(r["dropped"])),
        row(NAME, "ids: calls/s in the period as a share of quota x share", rate / r["allowed"] * 100, "%",
            f"{rate:.1f} of {r['allowed']:.0f} calls/s; {c['rows'] / r['period_secs']:,.0f} ids checked/s, "
            f"{c['ids_asked'] / max(1, c['by_id']):.0f} ids a call (at most 500); "
            f"{c['throttled']} throttled; {gauge_note}; "
            + cpu_note(r["cpu"])),
        row(NAME, "ids: worker CPU per id checked (period)", r["worker_cpu"] / max(1, c["rows"]) * 1e6, "µs",
            f"{r['worker_cpu']:.2f} s over {c['rows']:,} ids checked and {r['events_in_period']:,} events "
            "(the idle worker's own CPU included: high when few ids are checked)"),
        check(NAME, "ids read-back", not r["duplicates"] and not r["phantoms"],
              f"{r['final_events']:,} events read back, {r['duplicates']} duplicate event_id, "
              f"events for statuses the email never had: {r['phantoms'] or 0}"),
    ]
    return rows


def _fmt(v: float | None, waited: float) -> str:
    if v is None:
        return "n/a"
    return f"> {waited:.0f}" if v == float("inf") else f"{v:.1f}"


def _gap_rows(r: dict) -> list[dict]:
    if "not_measured" in r:
        return [row(NAME, "gaps: calls per compressed hour", "not measured", "", r["not_measured"][:200])]
    k, rows = r["compress"], []
    modes = r["modes"]

    def total(m: dict, production: bool = False) -> float:
        return m["by_id_per_hour"] + (m["date_per_hour_production"] if production else m["date_per_hour"])

    def midday(m: dict) -> float:
        """Calls per hour had today's window held half a day's history, as at noon in China: the
        windows are real China dates, so today's holds whatever share of the day had passed when
        the bench ran (a sweep's pages grow with its rows; the other windows do not move)."""
        if not m["rows_today"]:
            return total(m)
        rows = m["rows_today"] - m["rows_today_history"] + r["per_day"] / 2
        return m["by_id_per_hour"] + m["older_per_hour"] + m["today_per_hour"] * rows / m["rows_today"]

    for label, m in modes.items():
        if "not_measured" in m:
            rows.append(row(NAME, f"gaps: calls per compressed hour ({label})", "not measured", "",
                            m["not_measured"][:200]))
            continue
        per_call = m["ids_asked"] / m["by_id"] if m["by_id"] else 0.0
        today = [w for wid, w in m["windows"].items() if wid.startswith(m["today"]) and w["cycle_hours"]]
        big = max(today, key=lambda w: w["pages"], default=None)
        cadence = (f"; today's delivered window {big['pages']:.0f} pages a sweep, one every "
                   f"{big['cycle_hours'] * 60:.0f} compressed min" + (" (configured)" if big["configured"] else "")
                   + f" of which the sweep itself {big['duration'] * k / 60:.1f}" if big else "")
        rows.append(row(NAME, f"gaps: calls per compressed hour ({label})", total(m), "calls/h",
                        f"{m['by_id_per_hour']:.0f} by email id ({per_call:.1f} ids a call) + {m['date_per_hour']:.0f} "
                        f"date-window pages (today's date {m['today_per_hour']:.0f}, yesterday's "
                        f"{m['older_per_hour']:.0f}){cadence}; {total(m, True):.0f} at the production cadence; "
                        f"counted over the period: {m['by_id']:,} + {m['date_calls']:,} calls in "
                        f"{r['period_hours']:g} h;"
                        f" {m['throttled']} throttled, {m['failed']} failed; today's date held {m['rows_today']:,} "
                        f"emails at the period's end, yesterday's {m['rows_older']:,}"
                        + (f"; {m['early_sweeps']} sweeps came sooner than the safety interval after the window's "
                           "previous one" if m["gap_driven"] and m["early_sweeps"] else "")
                        + _dropped_note(r.get("dropped", {}))))
        rows.append(row(NAME, f"gaps: p95 delay of a final status without a webhook ({label})",
                        m["silent_p95"] if m["silent_p95"] is not None else "n/a", "min",
                        f"compressed minutes from the status to its event, over the {m['without_webhook']} final "
                        f"statuses (of {m['expected']:,}) of the mail sent in the period whose webhook is lost: p50 "
                        f"{_fmt(m['silent_p50'], 0)}, max {_fmt(m['silent_max'], 0)}; all {m['expected']:,}: p50 "
                        f"{_fmt(m['p50'], 0)}, p95 {_fmt(m['p95'], 0)}, max {_fmt(m['max'], 0)}"))
        if m["gap_driven"]:
            asked = max(1, m["ids_asked"])
            sh = m["shown"]
            rows.append(row(NAME, f"gaps: ids checked by id per compressed hour ({label})",
                            m["ids_asked"] / r["period_hours"], "ids/h",
                            f"{m['distinct_ids']:,} distinct ids asked {m['ids_asked']:,} times; when asked the status "
                            f"API showed: delivered or invalid {sh['final'] / asked * 100:.0f} %, a soft bounce that "
                            f"is its last status {sh['soft_bounce_last'] / asked * 100:.0f} %, a soft bounce that "
                            f"changes later {sh['soft_bounce_then'] / asked * 100:.0f} %, nothing yet "
                            f"{sh['nothing'] / asked * 100:.0f} %"))
    plain = modes.get("date sweeps")
    for label, m in modes.items():
        if label == "date sweeps" or "not_measured" in m or not plain or "not_measured" in plain:
            continue
        ratio = total(m) / total(plain)
        prod = total(m, True) / total(plain, True)
        noon = midday(m) / midday(plain)
        rows.append(row(NAME, f"gaps: calls {label} / date sweeps", ratio, "ratio",
                        f"{1 / ratio:.1f}x fewer calls per hour ({total(m):.0f} / {total(plain):.0f}); at the "
                        f"production "
                        f"cadence {prod:.3f} ({1 / prod:.1f}x); with today's window at noon in China (half a "
                        f"day's history, {midday(m):.0f} / {midday(plain):.0f}) {noon:.3f} ({1 / noon:.1f}x); "
                        f"of the gap-driven calls "
                        f"{m['by_id_per_hour'] / max(total(m), 1e-9) * 100:.0f} % by id, "
                        f"{m['date_per_hour'] / max(total(m), 1e-9) * 100:.0f} % safety sweeps"))
    measured = {label: m for label, m in modes.items() if "not_measured" not in m}
    rows.append(check(NAME, "gaps read-back",
                      all(m["missing"] == 0 for m in measured.values()) and not r["duplicates"] and not r["phantoms"],
                      "; ".join(f"{label}: {m['expected'] - m['missing']:,} of {m['expected']:,} final statuses"
                                for label, m in measured.items())
                      + f" on the output {r['drain_secs'] * k / 3600:.2f} compressed h after the period; "
                        f"{r['duplicates']} duplicate event_id; phantoms: {r['phantoms'] or 0}; time x{k:g}, "
                        f"{r['rate']:g} emails/s an account ({r['per_day']:,} a compressed day), {r['webhooks']:,} "
                        f"webhooks; " + cpu_note(r["cpu"])))
    return rows


def run(ctx) -> list[dict]:
    sizes = QUICK if ctx.quick else FULL
    common = {"bootstrap": ctx.bootstrap, "latency_ms": LATENCY_MS, "profile": ctx.profile}
    rows: list[dict] = []
    say(f"quota: first sweep of {sizes['sweep']['messages']:,} SendCloud emails at {LATENCY_MS:.0f} ms")
    rows += _sweep_rows(run_child("quota:measure_sweep", {**common, **sizes["sweep"]}, timeout=900))
    say(f"quota: {sizes['ids']['ids']:,} UniSender ids, staleness over {sizes['ids']['period_secs']:.0f} s")
    rows += _ids_rows(run_child("quota:measure_ids", {**common, **sizes["ids"]}, timeout=900))
    g = sizes["gaps"]
    say(f"quota: gaps, date sweeps and gap-driven side by side, time x{g['compress']:g}, "
        f"{g['warmup_hours'] + g['period_hours']:g} compressed h and a drain")
    rows += _gap_rows(run_child("quota:measure_gaps", {**common, **g}, timeout=900))
    return rows
