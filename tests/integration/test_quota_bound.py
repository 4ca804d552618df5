"""Issue 14 against a far provider: the simulator answers every status call 150 ms late, the worker
polls through real Kafka. A first sweep must run at the quota share (not at the round trip) without
a throttle answer, each page fetched once and every event committed exactly once, also when some
pages of parallel windows fail and are asked again."""

from __future__ import annotations

import collections
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_pipeline import OUTPUTS
from tests.integration.world import ENV, check_against_truth, diff, observed, sim_account, worker_account
from worker.model import Provider
from worker.simulator import SimConfig, Simulator
from worker.simulator.simconfig import Faults

pytestmark = pytest.mark.integration

CHINA = timezone(timedelta(hours=8))
WINDOW = 5.0             # the quota window, shortened: 120 calls per 5 s
QUOTA = 120
SHARE = 0.8              # the worker's default share: 19.2 calls/s allowed
LATENCY_MS = 150


def settled_anchor(now: float) -> float:
    """China-local midnight two days back: the history (history_days=2) is days 3 and 4 back,
    every timeline long finished, so what a sweep must find does not move while it runs."""
    day = datetime.fromtimestamp(now, CHINA).date() - timedelta(days=2)
    return datetime(day.year, day.month, day.day, tzinfo=CHINA).timestamp() + 1


def expected_visible(sim: Simulator, name: str) -> collections.Counter:
    now = sim.clock()
    out: collections.Counter = collections.Counter()
    for message in sim.messages(name, now):
        visible = sim.visible_status(name, message.email_id, now)
        for type_ in visible.types if visible else ():
            out[(name, message.email_id, type_.value)] += 1
    return out


async def sweep_once(kafka_bootstrap: str, topic_prefix: str, per_day: int, faults: Faults | None = None,
                     poll: dict | None = None, seed: int = 41):
    acct = sim_account(Provider.SENDCLOUD, "far", quota_per_minute=QUOTA, quota_window_secs=WINDOW,
                       cache_ttl_secs=600, history_days=2, history_per_day=per_day, live_per_sec=0, live_max=0)
    sim = Simulator(SimConfig(seed=seed, accounts=(acct,), time_scale=1, anchor=settled_anchor(time.time()),
                              latency_ms=LATENCY_MS))
    base = await sim.start()
    if faults is not None:
        sim.set_faults("far", faults)
    # one sweep of every window: the next is due 10 minutes (the cache TTL) after it
    account = worker_account(acct, base, webhook=False, poll={"lookback_days": 4, "interval_min_secs": 600,
                                                               "interval_max_secs": 3600, **(poll or {})})
    data = worker_config(kafka_bootstrap, topic_prefix, [account])
    expected = expected_visible(sim, "far")
    try:
        async with InProcessWorker(data, ENV) as worker:
            await wait_ready(worker.url)
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=120, quiet_secs=3)
    finally:
        await sim.stop()
    return sim, expected, records


async def test_a_far_provider_is_polled_at_the_quota_share_without_a_throttle(kafka_bootstrap, topic_prefix):
    sim, expected, records = await sweep_once(kafka_bootstrap, topic_prefix, per_day=7_000)
    calls = sorted((c for c in sim.calls if c.account == "far"), key=lambda c: c.at)
    ok = [c for c in calls if c.outcome == "ok"]
    allowed = QUOTA * SHARE / WINDOW
    achieved = (len(ok) - 1) / (ok[-1].at - ok[0].at)
    serial = 1000 / LATENCY_MS
    print(f"\nquota-bound sweep: {len(ok)} calls in {ok[-1].at - ok[0].at:.1f} s = {achieved:.1f} calls/s of "
          f"{allowed:.1f} allowed ({achieved / allowed:.0%}); one call at a time could make {serial:.1f}/s; "
          f"peak in flight {sim.peak_in_flight['far']}")
    assert [c for c in calls if c.outcome == "throttled"] == []
    # The rate is CPU-bound on a loaded 2-core CI machine: 66 % of the share (peak 5 in flight) was
    # measured while another CI run shared the machine, 90-112 % in bench/README.md on an idle one (the
    # benchmark measures the share itself). Here: well above one call at a time, with several in flight.
    assert achieved >= 0.55 * allowed > 1.5 * serial
    assert sim.peak_in_flight["far"] >= 3
    pages = collections.Counter(c.query_key for c in ok)
    assert max(pages.values()) == 1, "a page was fetched twice in one sweep"
    actual, events = observed(records)
    assert actual == expected, diff(expected, actual)
    assert len({e["event_id"] for e in events}) == len(events)


async def test_failed_pages_of_parallel_windows_are_asked_again_alone_and_nothing_is_lost_or_doubled(
        kafka_bootstrap, topic_prefix):
    # no retry inside the call: a 5xx fails the page, which backs off 2 s while the others go on
    sim, expected, records = await sweep_once(
        kafka_bootstrap, topic_prefix, per_day=2_500, faults=Faults(error_5xx_rate=0.15, seed=7),
        poll={"retry_attempts": 1, "retry_max_secs": 2}, seed=43)
    calls = [c for c in sim.calls if c.account == "far"]
    failed = collections.Counter(c.query_key for c in calls if c.outcome == "fault")
    ok = collections.Counter(c.query_key for c in calls if c.outcome == "ok")
    print(f"\nparallel pages with faults: {sum(failed.values())} failed calls on {len(failed)} pages; "
          f"{len(ok)} pages answered")
    assert failed, "the fault rate should have failed some pages"
    assert set(failed) <= set(ok), "a failed page was not asked again"
    assert max(ok.values()) == 1, "a page that answered was asked again"
    actual, events = observed(records)
    assert actual == expected, diff(expected, actual)
    assert len({e["event_id"] for e in events}) == len(events)


async def test_gap_driven_polling_finds_by_id_what_no_webhook_reported(kafka_bootstrap, topic_prefix):
    """A sent feed and no webhooks: mail is sent after the worker's first sweeps (which find
    nothing) and the next sweep is ten minutes away, so only gap-driven polling can find the
    statuses: by id (SendCloud `emailIds`, up to twenty a call, one send date; Tencent one
    `MessageId` a call) once an email is 2 s overdue. Every final status arrives exactly once."""
    import asyncio

    from tests.integration.test_pipeline import create_topic, last_change_at
    from tests.integration.world import publish_sent

    stream = {"history_days": 0, "history_per_day": 0, "live_per_sec": 8.0, "live_max": 60, "cache_ttl_secs": 0}
    accounts = [sim_account(Provider.SENDCLOUD, "gap-sc", **stream), sim_account(Provider.TENCENT_SES, "gap-tc", **stream)]
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=45, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    poll = {"lookback_days": 1, "gap_after_secs": 2, "interval_min_secs": 600, "interval_max_secs": 3600}
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(a, base, webhook=False, poll=poll)
                                                         for a in accounts], inputs={"sent_topic": sent_topic})
    published: set = set()
    try:
        async with InProcessWorker(data, ENV) as worker:
            await wait_ready(worker.url)
            first_sweeps = await first_sweeps_done(sim, names)
            live_end = sim.clock() + stream["live_max"] / stream["live_per_sec"] + 1
            while sim.clock() < live_end or sim.clock() < last_change_at(sim, names) + 1:
                await publish_sent(kafka_bootstrap, sent_topic, sim, names, sim.clock(), published)
                await asyncio.sleep(0.5)
            await publish_sent(kafka_bootstrap, sent_topic, sim, names, sim.clock(), published)
            expected = expected_visible(sim, "gap-sc") + expected_visible(sim, "gap-tc")
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=120, quiet_secs=3)
    finally:
        await sim.stop()
    actual, events = observed(records)
    assert len(published) == 120
    # every status visible at the end, once; a call may also have caught an earlier status of an
    # email (a soft bounce Tencent was still retrying): real, once, and never a duplicate
    assert not expected - actual and max(actual.values()) == 1, diff(expected, actual)
    assert not check_against_truth(sim, names, sim.clock(), events, sources=frozenset({"poll"}))
    assert len({e["event_id"] for e in events}) == len(events)
    later = [c for c in sim.calls[first_sweeps:] if c.outcome == "ok"]
    by_id = collections.Counter(c.account for c in later if _asks_ids(c.query_key))
    print(f"\ngap-driven: {dict(by_id)} calls by id for {len(published)} sent emails, "
          f"{len(later) - sum(by_id.values())} other calls after the first sweeps")
    assert all(_asks_ids(c.query_key) for c in later), "a date window was swept again"
    assert 60 / 20 <= by_id["gap-sc"] < 60                        # batches, not one call per email
    assert 0 < by_id["gap-tc"]


async def first_sweeps_done(sim: Simulator, names: list[str], quiet_secs: float = 1.5, timeout: float = 60.0) -> int:
    """The index into `sim.calls` past the worker's first sweeps: once no date-window call has come
    for `quiet_secs` (a sweep's pages wait for the limiter's tokens, so readiness does not mean the
    first sweeps are over)."""
    import asyncio

    deadline, seen, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        n = sum(1 for c in sim.calls if c.account in names and not _asks_ids(c.query_key))
        if n != seen:
            seen, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= quiet_secs:
            return len(sim.calls)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the first sweeps did not end within {timeout:.0f} s ({seen} date-window calls)")


def _asks_ids(query_key: tuple) -> bool:
    return any(key in ("emailIds", "MessageId") for key, _ in query_key)
