"""Issue 14's edges that mutation testing found unpinned: the bookkeeping of parallel pages (page
retries, extents, claims of a retired window), one throttle episode's pause, the early re-check heap
and its compaction, gap batches held for another send date, and the id of a Tencent sent record
through the shard. Expected values are worked by hand from the modules' docstrings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.harness import worker_config
from worker import raw
from worker.config import parse_config
from worker.model import EventType, Observation, Provider, Source
from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.scheduler import Cursor, DateWindowScheduler
from worker.providers.base import CHINA_TZ, PollPage
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)  # 2024-01-02 01:00 in China
WID = "2024-01-02|*"
T0 = 1_700_000_000.0


def sched(**kw) -> DateWindowScheduler:
    args = dict(tz=CHINA_TZ, lookback_days=0, status_filters=(), page_limit=100, interval_min=600,
                interval_max=3600, cache_ttl=600, ahead=8)
    args.update(kw)
    return DateWindowScheduler(**args)


def page(rows: int, next_offset: int | None, total: int | None) -> PollPage:
    return PollPage((), rows=rows, next_offset=next_offset, total=total)


def claims(s: DateWindowScheduler, now: datetime = NOW) -> list[int]:
    out = []
    while (nxt := s.claim(now)) is not None:
        out.append(nxt[1].offset)
    return out


def at(secs: float) -> datetime:
    return NOW + timedelta(seconds=secs)


# -- the scheduler's page bookkeeping ------------------------------------------------------------


def test_a_page_backing_off_at_the_new_cursor_keeps_its_wait():
    s = sched()
    s.learn_extent(WID, page(100, 100, 300))
    assert claims(s) == [0, 100, 200]
    s.failed(WID, NOW, 120.0, offset=100)                    # page 100 failed; page 0 commits
    s.apply(WID, s.after_page(WID, page(100, 100, 300), 0, NOW))
    s.release(WID, 0)
    assert s.cursors[WID].offset == 100
    assert claims(s, at(119)) == [] and claims(s, at(120)) == [100]


def test_a_retry_left_behind_the_cursor_is_forgotten():
    s = sched()
    s.learn_extent(WID, page(100, 100, 300))
    assert claims(s) == [0, 100, 200]
    s.failed(WID, NOW, 500.0, offset=0)                      # page 0 failed, asked again, then committed
    assert claims(s, at(500)) == [0]
    s.apply(WID, s.after_page(WID, page(100, 100, 300), 0, at(500)))
    s.release(WID, 0)
    assert claims(s, at(500)) == []                          # 100 and 200 are still claimed
    assert s.next_due_in(at(100)) == 3600                    # no stale retry of page 0 to wake for


def test_the_end_of_a_sweep_forgets_its_page_retries_and_only_its_own():
    s = sched(lookback_days=1)
    other = "2024-01-01|*"
    assert sorted(claims(s)) == [0, 0]
    s.failed(WID, NOW, 3600.0, offset=0)
    s.failed(other, NOW, 3600.0, offset=0)
    s.apply(WID, s.after_page(WID, page(0, None, 0), 0, NOW))     # this window's sweep ends (it shrank)
    first = s.claim(at(900))
    assert first is not None and (first[0], first[1].offset) == (WID, 0)   # its next sweep is not held up
    assert s.claim(at(900)) is None                                # the other window's page still waits
    assert s.next_due_in(at(900)) == pytest.approx(2700)


def test_a_short_backoff_still_holds_the_page():
    s = sched()
    assert claims(s) == [0]
    s.failed(WID, NOW, 0.5, offset=0)
    assert claims(s) == [] and claims(s, at(0.5)) == [0]


def test_a_retired_window_keeps_no_claims():
    s = sched()
    assert claims(s) == [0]
    s.forget(WID)
    assert s.claimed(WID) == frozenset()


def test_the_extent_never_shrinks_within_a_sweep():
    s = sched()
    s.learn_extent(WID, page(100, 100, 500))
    s.learn_extent(WID, page(100, 100, 300))
    assert claims(s) == [0, 100, 200, 300, 400]


def test_after_page_follows_the_cursor_it_is_given():
    s = sched()
    base = Cursor(interval=600.0, offset=300, in_sweep=True, started_at=NOW.timestamp(), seen=300)
    c = s.after_page(WID, page(100, 400, 500), 2, NOW, base=base)
    assert (c.offset, c.seen, c.changes) == (400, 400, 2)


def test_next_due_in_takes_the_soonest_of_every_window():
    s = sched(lookback_days=1)
    newer, older = "2024-01-02|*", "2024-01-01|*"
    s.apply(newer, s.after_page(newer, page(0, None, 0), 0, at(-890)))   # due again at +10
    assert claims(s) == [0]                                              # the older window's first page
    s.failed(older, NOW, 30.0, offset=0)
    assert s.next_due_in(NOW) == 10


def test_next_due_in_ignores_retries_that_are_past_or_now():
    s = sched()
    assert claims(s) == [0]
    s._page_retry[(WID, 700)] = NOW.timestamp()             # a retry of a page that is not wanted
    s._page_retry[(WID, 800)] = NOW.timestamp() - 5
    assert s.next_due_in(NOW) == 3600


def test_next_due_in_below_a_second():
    s = sched()
    s.apply(WID, s.after_page(WID, page(0, None, 0), 0, at(-899.5)))
    assert s.next_due_in(NOW) == 0.5


def test_staleness_counts_a_window_backing_off_after_a_failure():
    s = sched()
    s.cursor(WID, NOW)                                       # due now
    s.failed(WID, NOW, 100.0)
    assert s.staleness(at(50)) == 50.0


def test_widen_twice_is_widen_once():
    s = sched(safety_sweep=7200.0)
    s.widen()
    s.widen()
    assert (s.interval_min, s.interval_max, s.safety_sweep) == (7200, 7200, None)


# -- one throttle episode -------------------------------------------------------------------------


def test_a_longer_retry_after_in_the_same_episode_extends_the_pause():
    clock = [0.2]
    lim = AdaptiveLimiter(10.0, clock=lambda: clock[0])
    lim.on_throttle(None, 0.0)                              # paused until 60.2
    lim.on_throttle(120.0, 0.1)
    assert lim.paused_until == pytest.approx(120.2) and lim.rate == 5.0


def test_a_late_answer_of_the_episode_without_retry_after_does_not_extend_the_pause():
    clock = [0.2]
    lim = AdaptiveLimiter(10.0, clock=lambda: clock[0])
    lim.on_throttle(None, 0.0)
    clock[0] = 59.5
    lim.on_throttle(None, 0.1)
    assert lim.paused_until == pytest.approx(60.2) and lim.throttles == 1


def test_a_call_taken_at_the_instant_of_the_throttle_starts_a_new_episode():
    clock = [5.0]
    lim = AdaptiveLimiter(10.0, clock=lambda: clock[0])
    lim.on_throttle(None, 4.0)
    lim.on_throttle(None, 5.0)                              # asked_at == throttled_at: not before it
    assert lim.throttles == 2 and lim.rate == 2.5


# -- id freshness ---------------------------------------------------------------------------------


def uni(batch: int = 3) -> IdTracker:
    return IdTracker(max_age_secs=30 * 86400, batch=batch, floor_secs=30, min_recheck_secs=30)


def test_early_claims_take_at_most_a_batch():
    t = uni(batch=2)
    for i in range(3):
        t.apply_write(str(i), Tracked("r@x", T0), T0)
    assert len(t.claim(T0, early=True)) == 2


def test_new_and_restored_ids_can_be_checked_early_and_final_ones_never():
    t = uni()
    t.apply_write("new", Tracked("n@x", T0), T0)
    t.restore("back", Tracked("b@x", T0), T0)
    t.restore("done", Tracked("d@x", T0, "ok_delivered", final=True), T0)
    t.apply_write("done2", Tracked("d2@x", T0, "ok_delivered", final=True), T0)
    assert sorted(t.claim(T0, early=True)) == ["back", "new"]


def test_an_early_claim_skips_an_id_forgotten_meanwhile():
    t = uni()
    t.apply_write("a", Tracked("a@x", T0), T0)
    t.apply_write("b", Tracked("b@x", T0), T0)
    t.apply_write("a", None, T0)
    assert t.claim(T0, early=True) == ["b"]


@pytest.mark.parametrize("early", [False, True])
def test_a_claimed_id_stays_claimed_when_a_webhook_changes_its_status(early):
    t = uni()
    t.apply_write("a", Tracked("a@x", T0, "ok_sent"), T0)
    assert t.claim(T0, early=early) == ["a"]
    t.apply_write("a", Tracked("a@x", T0, "ok_delivered"), T0 + 1)
    assert t.claim(T0 + 200) == [] and t.claim(T0 + 200, early=True) == []


def test_the_early_heap_is_compacted_past_twice_the_ids_plus_1024():
    t = uni()
    t.apply_write("a", Tracked("a@x", T0), T0)               # two entries
    t.apply_write("z", Tracked("z@x", T0, final=True), T0)   # final: settled, not among the ids
    t.claim(T0, top_up=False)                                # (a top-up would pop a's first entry)
    for i in range(1025):                                    # 1 + 1025 = 1026 = 2 x 1 + 1024: kept
        t.apply(IdPlan((), {}, ("a",)), T0 + i)
    assert len(t._by_check) == 1026
    t.apply(IdPlan((), {}, ("a",)), T0 + 1025)               # 1027: rebuilt from the live ids
    assert t._by_check == [(T0 + 1025, "a")]
    t.apply(IdPlan((), {}, ("a",)), T0 + 1026)
    assert t.claim(T0 + 1056, early=True) == ["a"]


def test_id_polling_does_not_linger():
    t = uni()
    t.apply_write("a", Tracked("a@x", T0), T0 + 10)
    assert t.next_due_in(T0) == 10


def test_gap_staleness_is_zero_at_the_moment_an_id_falls_due():
    t = IdTracker(max_age_secs=86400, batch=20, floor_secs=900, min_recheck_secs=900, gap_after_secs=900, tz=CHINA_TZ)
    t.apply_write("a", Tracked("a@x", T0), T0)
    assert t.staleness(T0 + 900) == 0.0 and t.staleness(T0 + 901) == 1.0


def gaps(batch: int = 3) -> IdTracker:
    return IdTracker(max_age_secs=30 * 86400, batch=batch, floor_secs=900, min_recheck_secs=900,
                     gap_after_secs=900, tz=CHINA_TZ)


def test_a_part_batch_lingers_from_its_first_due_id():
    t = gaps()
    t.apply_write("a", Tracked("a@x", T0), T0)
    t.apply_write("b", Tracked("b@x", T0 + 30), T0)
    assert t.claim(T0 + 959) == []
    assert t.claim(T0 + 960) == ["a", "b"]                   # a has waited its minute, b only 30 s


# T0 is 2023-11-14 22:13:20 UTC, 06:13 on the 15th in China: 9 h earlier is the 14th there, 1 h
# earlier still the 15th
DAY14, DAY15 = T0 - 9 * 3600, T0 - 3600


def mixed(between: int) -> IdTracker:
    """An id of the 14th, `between` ids of the 15th, another of the 14th, due in that order."""
    t = gaps(batch=2)
    t.apply_write("a1", Tracked("a@x", DAY14), DAY14)       # learned when sent: due 900 s later
    for i in range(between):
        t.apply_write(f"b{i}", Tracked("b@x", DAY15 + i), DAY14)
    t.apply_write("a2", Tracked("a@x", DAY15 + between), DAY14)
    t.ids["a2"].sent_at = DAY14 + 1                         # dated the 14th, but due last
    return t


def test_gap_batches_look_past_eight_ids_of_another_date():
    assert mixed(8).claim(T0 + 3600) == ["a1", "a2"]


def test_gap_batches_stop_looking_after_more_than_eight():
    t = mixed(9)
    assert t.claim(T0 + 3600) == ["a1"]
    assert t.claim(T0 + 3600) == ["b0", "b1"]                # the held ids are back in the schedule


def test_a_lingering_part_batch_puts_back_the_other_dates_too():
    t = gaps(batch=3)
    t.apply_write("x", Tracked("x@x", T0), T0)               # due at +900
    t.apply_write("y", Tracked("y@x", T0 + 10), T0)          # due at +910...
    t.ids["y"].sent_at = DAY14                               # ...but dated the 14th
    assert t.claim(T0 + 920) == []                           # x has lingered 20 s of its 60
    assert t.claim(T0 + 960) == ["x"]
    assert t.claim(T0 + 969) == [] and t.claim(T0 + 970) == ["y"]


def test_for_account_takes_the_configured_recheck_and_the_lookback_as_the_gap_age():
    accounts = [{"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"},
                 "poll": {"id_min_recheck_secs": 45}},
                {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
                 "webhook": {"enabled": False}, "poll": {"lookback_days": 3}}]
    data = {**worker_config("127.0.0.1:9", "p", accounts, shards=1), "inputs": {"sent_topic": "sent"}}
    uni_acct, sc = parse_config(data, {"K": "k"}).accounts
    t = IdTracker.for_account(uni_acct, {}, T0)
    assert (t.floor_secs, t.min_recheck_secs) == (45, 45)
    assert IdTracker.for_account(sc, {}, T0).max_age_secs == 4 * 86400


# -- the shard's side of gap tracking -------------------------------------------------------------


TC_CONFIG = parse_config({**worker_config("127.0.0.1:9", "p", [
    {"name": "tc", "provider": "tencent_ses", "credentials": {"secret_id": "AKID", "secret_key_env": "K"},
     "webhook": {"enabled": False}},
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}}], shards=1), "inputs": {"sent_topic": "sent"}}, {"K": "k"})


def test_a_tencent_sent_record_is_tracked_per_recipient():
    st = Staging(TC_CONFIG, TC_CONFIG.accounts, Restored.empty(), T0)
    sent = raw.SentMessage(Provider.TENCENT_SES, "tc", NOW, "qcloudses-30-1-date-20240101-x", "Bob@Example.com", NOW)
    st.stage_raw([type("R", (), {"offset": 1, "value": raw.encode(sent)})()], NOW)
    st.committed(st.take(), T0)
    assert list(st.trackers["tc"].ids) == ["qcloudses-30-1-date-20240101-x:bob@example.com"]


def test_learning_skips_an_open_but_not_what_follows_it():
    st = Staging(TC_CONFIG, TC_CONFIG.accounts, Restored.empty(), T0)
    sc = TC_CONFIG.accounts[1]
    when = datetime.fromtimestamp(T0, UTC)
    opened = Observation(email_id="m1", recipient="r@x", type=None, reason=None, occurred_at=when,
                         provider_status="open")
    delivered = Observation(email_id="m1", recipient="r@x", type=EventType.DELIVERED, reason=None, occurred_at=when,
                            provider_status="deliver", final=True)
    st.learn(sc, [opened, delivered], when, Source.WEBHOOK)
    st.committed(st.take(), T0)
    assert "m1" in st.trackers["sc"].settled and "m1" not in st.trackers["sc"].ids
