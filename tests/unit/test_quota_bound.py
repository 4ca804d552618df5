"""Issue 14's pure pieces: parallel pages of a window (claims, extent, speculation, per-page retry),
one halving per throttle episode, id freshness (age-based waits, early re-checks of spare quota),
gap-driven tracking, and the config that switches it. Expected values are worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.errors import ConfigError
from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.poll.limiter import AdaptiveLimiter
from worker.poll.scheduler import DateWindowScheduler
from worker.providers.base import CHINA_TZ, PollPage

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc)  # 2024-01-02 01:00 in China
WID = "2024-01-02|*"


def sched(ahead: int = 8) -> DateWindowScheduler:
    return DateWindowScheduler(tz=CHINA_TZ, lookback_days=0, status_filters=(), page_limit=100, interval_min=600,
                               interval_max=3600, cache_ttl=600, ahead=ahead)


def claims(s: DateWindowScheduler, now: datetime = NOW) -> list[int]:
    out = []
    while (nxt := s.claim(now)) is not None:
        out.append(nxt[1].offset)
    return out


def page(rows: int, next_offset: int | None, total: int | None) -> PollPage:
    return PollPage((), rows=rows, next_offset=next_offset, total=total)


# -- parallel pages -------------------------------------------------------------------------------


def test_one_page_at_a_time_until_the_total_is_known_then_every_page_of_the_window():
    s = sched()
    assert claims(s) == [0]                                   # nothing else until page 0 answers
    s.learn_extent(WID, page(100, 100, 450))
    assert claims(s) == [100, 200, 300, 400]                  # page 0 said 450 rows: the rest go at once
    assert s.claimed(WID) == frozenset({0, 100, 200, 300, 400})
    s.apply(WID, s.after_page(WID, page(100, 100, 450), 0, NOW))
    s.release(WID, 0)
    assert claims(s) == [] and s.cursors[WID].offset == 100  # committed in order: the cursor follows


def test_pages_past_the_cursor_are_claimed_only_within_ahead():
    s = sched(ahead=3)
    s.learn_extent(WID, page(100, 100, 2000))
    assert claims(s) == [0, 100, 200]                         # three pages from the cursor at 0
    s.apply(WID, s.after_page(WID, page(100, 100, 2000), 0, NOW))
    s.release(WID, 0)
    assert claims(s) == [300]                                 # the cursor moved one page: one more


def test_without_a_total_a_full_page_lets_two_more_pages_go():
    s = sched()
    assert claims(s) == [0]
    s.learn_extent(WID, page(100, 100, None))                 # Tencent: a full page, no total
    s.apply(WID, s.after_page(WID, page(100, 100, None), 0, NOW))
    s.release(WID, 0)
    assert claims(s) == [100, 200, 300]                       # the next page and two past it


def test_a_failed_page_backs_off_alone_and_a_throttled_one_is_asked_again_at_once():
    s = sched()
    s.learn_extent(WID, page(100, 100, 400))
    assert claims(s) == [0, 100, 200, 300]
    s.failed(WID, NOW, 60.0, offset=200)
    s.failed(WID, NOW, 0.0, offset=300)
    assert claims(s) == [300]
    assert claims(s, NOW + timedelta(seconds=59)) == []
    assert claims(s, NOW + timedelta(seconds=60)) == [200]


def test_the_end_of_a_sweep_releases_every_claim_and_forgets_the_total():
    s = sched()
    s.learn_extent(WID, page(100, 100, 500))
    assert claims(s) == [0, 100, 200, 300, 400]
    s.apply(WID, s.after_page(WID, page(0, None, 0), 0, NOW))   # the window shrank to nothing
    assert s.claimed(WID) == frozenset()
    assert claims(s, NOW + timedelta(seconds=899)) == []       # a quiet sweep: 600 x 1.5 until the next
    assert claims(s, NOW + timedelta(seconds=900)) == [0]      # which starts from one page again


def test_next_due_in_is_zero_only_when_a_page_can_be_claimed():
    s = sched()
    assert s.next_due_in(NOW) == 0.0
    assert claims(s) == [0]
    assert s.next_due_in(NOW) == 3600                          # every page claimed: the answer wakes us
    s.failed(WID, NOW, 30.0, offset=0)
    assert s.next_due_in(NOW) == 30.0


def test_staleness_counts_from_when_the_oldest_due_window_became_due():
    s = sched()
    assert s.staleness(NOW) == 0.0                             # first seen now: due now
    assert s.staleness(NOW + timedelta(seconds=90)) == 90.0
    s.apply(WID, s.after_page(WID, page(0, None, 0), 0, NOW + timedelta(seconds=90)))
    assert s.staleness(NOW + timedelta(seconds=100)) == 0.0    # swept, quiet: due again at 90 + 900
    assert s.staleness(NOW + timedelta(seconds=1000)) == 10.0


# -- one halving per throttle episode ------------------------------------------------------------


def test_throttle_answers_to_calls_already_in_flight_halve_the_rate_once():
    clock = [0.0]
    lim = AdaptiveLimiter(10.0, clock=lambda: clock[0])
    asked = [lim._clock() for _ in range(3)]                   # three calls sent at t=0
    clock[0] = 0.2
    lim.on_throttle(None, asked[0])
    assert lim.rate == 5.0 and lim.throttles == 1
    lim.on_throttle(None, asked[1])
    lim.on_throttle(30.0, asked[2])                            # same episode, a longer Retry-After
    assert lim.rate == 5.0 and lim.throttles == 1
    assert lim.paused_until == pytest.approx(60.2)             # the window (60 s) is longer than 30 s
    clock[0] = 61.0
    lim.on_throttle(None, 60.5)                                # a call sent after that throttle: a new one
    assert lim.rate == 2.5 and lim.throttles == 2


# -- id freshness ---------------------------------------------------------------------------------


T0 = 1_700_000_000.0


def uni(batch: int = 3) -> IdTracker:
    return IdTracker(max_age_secs=30 * 86400, batch=batch, floor_secs=30, min_recheck_secs=30)


def test_spare_quota_rechecks_ids_early_but_never_within_min_recheck():
    t = uni()
    for i, age in enumerate((100, 2_000, 20_000)):             # due 30, 100, 1000 s after a check
        t.apply_write(f"id{i}", Tracked(f"r{i}@x", T0 - age), T0)
    assert t.claim(T0) == ["id0", "id1", "id2"]                 # all due at once (new)
    t.apply(IdPlan((), {}, ("id0", "id1", "id2")), T0)
    assert [t.ids[f"id{i}"].due_at - T0 for i in range(3)] == [30, 100, 1000]
    assert t.claim(T0 + 29) == []                              # nothing due
    assert t.claim(T0 + 29, early=True) == []                  # and none checked 30 s ago yet
    assert t.claim(T0 + 30, early=True) == ["id0", "id1", "id2"]   # spare quota: soonest due first


def test_early_claims_take_the_least_recently_checked_and_skip_ids_checked_too_recently():
    t = uni()
    t.apply_write("young", Tracked("y@x", T0), T0)
    t.apply_write("old", Tracked("o@x", T0 - 2_000), T0)
    t.claim(T0)
    t.apply(IdPlan((), {}, ("young", "old")), T0)               # young due +30, old due +100
    t.apply(IdPlan((), {}, ("young",)), T0 + 25)                # young checked again: due +55
    assert t.claim(T0 + 40, early=True) == ["old"]             # young was checked 15 s ago: not yet
    assert t.claim(T0 + 55, early=True) == ["young"]


def test_a_batch_of_due_ids_is_topped_up_with_the_least_recently_checked_ones():
    """A call costs one token whatever it carries: a part batch of due ids takes early re-checks
    too (least recently checked first, none within min_recheck); `due` looks without topping up."""
    t = uni(batch=4)
    for name, age in (("a", 40_000), ("b", 20_000), ("c", 2_000), ("d", 100)):
        t.apply_write(name, Tracked(f"{name}@x", T0 - age), T0)
    t.claim(T0)
    t.apply(IdPlan((), {}, ("a", "b", "c", "d")), T0)           # due +2000, +1000, +100, +30 (5 % of age)
    t.apply(IdPlan((), {}, ("b",)), T0 + 10)                    # b checked again at +10: due +1010
    t.apply(IdPlan((), {}, ("c",)), T0 + 20)                    # c at +20: due +120
    assert t.due(T0 + 45) == ["d"]                              # only d is due
    assert t.claim(T0 + 45) == ["d", "a", "b"]                  # topped up: a checked at +0, b +10; c within 30 s
    assert t.claim(T0 + 50) == []                               # nothing due: no call to top up
    assert t.claim(T0 + 50, early=True) == ["c"]                # c past min_recheck now; the rest claimed


def test_a_top_up_never_makes_a_batch_larger_than_the_batch():
    t = uni(batch=3)
    for name in ("a", "b", "c", "d"):
        t.apply_write(name, Tracked(f"{name}@x", T0 - 100), T0)
    t.claim(T0)                                                 # a, b, c
    t.apply(IdPlan((), {}, ("a", "b", "c")), T0)                # each due at +30 (the floor)
    t.claim(T0)                                                 # d
    t.apply(IdPlan((), {}, ("d",)), T0 + 10)                    # d due at +40
    assert t.claim(T0 + 40) == ["a", "b", "c"]                  # all due: full, nothing to top up
    t.failed(["a", "b", "c"], T0 + 40, 100.0)                   # back at +140
    t.apply_write("e", Tracked("e@x", T0), T0 + 45)             # new: due now, never checked
    assert t.claim(T0 + 45) == ["d", "e", "a"]                  # d and e due; one place left of three candidates


def test_claimed_ids_are_out_of_the_schedule_until_applied_or_failed():
    t = uni(batch=2)
    for i in range(3):
        t.apply_write(str(i), Tracked("r@x", T0 - i), T0)
    first = t.claim(T0)
    assert len(first) == 2 and t.claim(T0) == [x for x in "012" if x not in first]
    assert t.claim(T0) == []
    t.failed(first, T0, 5.0)
    assert t.claim(T0 + 5) == first


def test_staleness_of_ids_is_the_wait_of_the_one_due_longest():
    t = uni()
    t.apply_write("a", Tracked("a@x", T0), T0)
    assert t.staleness(T0 + 12) == 12.0
    t.claim(T0 + 12)
    assert t.staleness(T0 + 12) == 0.0


# -- gap-driven -----------------------------------------------------------------------------------


def gaps(batch: int = 20) -> IdTracker:
    return IdTracker(max_age_secs=30 * 86400, batch=batch, floor_secs=900, min_recheck_secs=900,
                     gap_after_secs=900, tz=CHINA_TZ)


def test_a_sent_email_is_due_only_once_its_gap_has_passed_and_never_early():
    t = gaps()
    t.apply_write("a", Tracked("a@x", T0), T0)
    assert t.claim(T0 + 899) == [] and t.claim(T0 + 899, early=True) == []
    assert t.claim(T0 + 900) == []                             # a part batch lingers min(60, 90) s
    assert t.next_due_in(T0 + 900) == 60
    assert t.claim(T0 + 960) == ["a"]


def test_a_full_batch_of_overdue_ids_goes_at_once():
    t = gaps(batch=2)
    t.apply_write("a", Tracked("a@x", T0), T0)
    t.apply_write("b", Tracked("b@x", T0 + 460), T0)
    assert t.claim(T0 + 900) == []                             # one due (b, 440 s of its 900, cannot ride): it waits
    assert t.claim(T0 + 910) == ["a", "b"]                     # b has waited half its gap: a full batch


def test_a_final_status_from_a_webhook_or_sweep_settles_the_gap():
    t = gaps()
    t.apply_write("a", Tracked("a@x", T0), T0)
    change = t.learn("a", "a@x", T0, "delivered", True, T0 + 60)
    t.apply_write("a", change, T0 + 60)
    assert t.claim(T0 + 10_000) == []


def test_gap_batches_share_one_send_date_in_the_providers_zone():
    t = gaps()
    # 2023-11-14 22:13:20 UTC is 2023-11-15 06:13 in China; 9 hours earlier is still the 14th there
    t.apply_write("late", Tracked("l@x", T0), T0)
    t.apply_write("early", Tracked("e@x", T0 - 9 * 3600), T0)
    t.apply_write("late2", Tracked("l2@x", T0 + 1), T0)
    first = t.claim(T0 + 3600)                                 # everything overdue past its linger
    assert first == ["early"]
    assert t.send_date(t.ids["early"]) == date(2023, 11, 14)
    assert sorted(t.claim(T0 + 3600)) == ["late", "late2"]
    assert t.send_date(t.ids["late"]) == date(2023, 11, 15)


def test_gap_answers_pass_every_row_on_and_leave_learning_to_the_shard():
    from worker.model import EventType, Observation
    t = gaps()
    t.apply_write("a", Tracked("a@x", T0), T0)
    row = Observation(email_id="a", recipient="a@x", type=EventType.DELIVERED, reason=None,
                      occurred_at=datetime.fromtimestamp(T0 + 5, UTC), provider_status="delivered", final=True)
    other = Observation(email_id="b", recipient="b@x", type=EventType.DELIVERED, reason=None,
                        occurred_at=datetime.fromtimestamp(T0 + 5, UTC), provider_status="delivered", final=True)
    plan = t.plan(["a"], PollPage((row, other), 2, None), T0 + 900)
    assert plan.observations == (row, other) and plan.writes == {}


# -- config ---------------------------------------------------------------------------------------


def config(poll: dict, provider: str = "sendcloud", sent_topic: str | None = "sent"):
    creds = {"api_user": "u", "api_key_env": "K"} if provider != "unisender" else {"api_key_env": "K"}
    data = worker_config("127.0.0.1:9", "p", [{"name": "a", "provider": provider, "credentials": creds,
                                               "webhook": {"enabled": False}, "poll": poll}])
    if sent_topic:
        data["inputs"] = {"sent_topic": sent_topic}
    return parse_config(data, {"K": "k"})


@pytest.mark.parametrize(("poll", "sent_topic", "on"), [
    ({}, "sent", True),                       # on by default with a sent feed
    ({}, None, False),                        # off without one
    ({"gap_driven": False}, "sent", False),
    ({"gap_driven": True}, "sent", True),
    ({"enabled": False}, "sent", False),      # an account that does not poll tracks nothing
])
def test_gap_driven_is_on_by_default_where_a_sent_feed_exists(poll, sent_topic, on):
    assert config(poll, sent_topic=sent_topic).accounts[0].poll.gap_driven is on


def test_gap_driven_without_a_sent_feed_or_on_unisender_is_a_config_error():
    with pytest.raises(ConfigError) as no_feed:
        config({"gap_driven": True}, sent_topic=None)
    assert no_feed.value.problems == ["accounts[0].poll.gap_driven: needs inputs.sent_topic (the sent emails are "
                                      "what it polls)"]
    with pytest.raises(ConfigError) as uni_err:
        config({"gap_driven": True}, provider="unisender")
    assert uni_err.value.problems == ["accounts[0].poll.gap_driven: unisender cannot be polled by email id (it is "
                                      "polled by id already)"]
    assert config({}, provider="unisender").accounts[0].poll.gap_driven is False
    with pytest.raises(ConfigError) as off:
        config({"gap_driven": True, "enabled": False})
    assert off.value.problems == ["accounts[0].poll.gap_driven: needs poll.enabled (it is a way of polling)"]


def test_gap_driven_sweeps_become_the_safety_net_once_sent_emails_arrive():
    acct = config({"safety_sweep_secs": 7200}).accounts[0]
    s = DateWindowScheduler.for_account(acct, {})
    assert (s.interval_min, s.interval_max, s.ahead) == (600, 3600, 16)   # no sent record yet: as usual
    s.widen()
    assert (s.interval_min, s.interval_max) == (7200, 7200)
    plain = DateWindowScheduler.for_account(config({}, sent_topic=None).accounts[0], {})
    plain.widen()
    assert (plain.interval_min, plain.interval_max) == (600, 3600)   # not gap-driven: never widened


@pytest.mark.parametrize(("changes", "interval"), [(0, 7200.0), (3, 7200.0)])
def test_a_window_swept_before_the_widening_takes_the_safety_interval_at_its_next_sweep_end(changes, interval):
    """A cursor from before widen() (swept at the short interval, or restored after a restart)
    ends its next sweep at the safety interval, quiet or not: 600 x 1.5 = 900 and 600 / 2 = 300
    would both sweep it far more often than safety_sweep_secs."""
    s = DateWindowScheduler.for_account(config({"safety_sweep_secs": 7200}).accounts[0], {})
    c = s.after_page(WID, page(10, None, 10), 1, NOW)          # a sweep before the sent feed arrived
    assert c.interval == 600.0                                  # changes: halved, held at interval_min
    s.apply(WID, c)
    s.widen()
    later = NOW + timedelta(seconds=700)
    end = s.after_page(WID, page(10, None, 10), changes, later)
    assert end.interval == interval
    assert end.due_at == later.timestamp() + interval


@pytest.mark.parametrize(("feed_id", "recipient", "tracked"), [
    ("qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1", "Bob@Example.com",
     "qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1:bob@example.com"),     # SendEmail's MessageId
    ("qcloudses-30-1-date-20210101094334-x:bob@example.com", "Bob@Example.com",
     "qcloudses-30-1-date-20210101094334-x:bob@example.com"),                           # already per recipient
])
def test_a_tencent_sent_record_is_tracked_under_the_id_its_rows_and_webhooks_carry(feed_id, recipient, tracked):
    from worker.providers import get_module
    assert get_module("tencent_ses").DEFAULTS.sent_email_id(feed_id, recipient) == tracked
    assert get_module("sendcloud").DEFAULTS.sent_email_id("m1$bob@example.com", "bob@example.com") == \
        "m1$bob@example.com"


def test_a_gap_recheck_never_repeats_a_batch_within_the_providers_cache():
    acct = config({"gap_after_secs": 120}).accounts[0]            # SendCloud caches answers 600 s
    t = IdTracker.for_account(acct, {}, T0)
    assert (t.gap_after_secs, t.floor_secs) == (120, 600)
