"""Id-based polling (worker.poll.ids): the edges mutation testing found unpinned.

Boundaries of the age limit, which fields a learned change keeps, when an applied write is due,
the waits' growth with age, and next_due_in, which nothing else called. Expected values are worked
out by hand from the module docstring's rules (1 min after a change; unchanged: 5 % of the age,
at least the floor, at most 6 h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.integration.harness import worker_config
from worker.config import parse_config
from worker.model import EventType, Observation
from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.providers.base import PollPage

NOW = 1_700_000_000.0
INF = float("inf")


def obs(email_id: str, status: str, final: bool = False) -> Observation:
    return Observation(email_id=email_id, recipient="", type=EventType.DELIVERED if final else None, reason=None,
                       occurred_at=datetime.fromtimestamp(NOW, tz=UTC), provider_status=status, final=final)


def tracker(max_age: float = 1000.0, batch: int = 10) -> IdTracker:
    return IdTracker(max_age_secs=max_age, batch=batch)


# -- for_account ----------------------------------------------------------------------------------


def _accounts():
    accounts = [
        {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"},
         "poll": {"id_max_age_days": 3}},
        {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
         "webhook": {"app_key_env": "K"}},
    ]
    return parse_config(worker_config("127.0.0.1:9", "p", accounts, shards=1), {"K": "k"}).accounts


def test_for_account_ages_out_after_the_configured_days_and_batches_500():
    uni, _ = _accounts()
    t = IdTracker.for_account(uni, {"a": Tracked("a@x", NOW - 10)}, NOW)
    assert t.max_age_secs == 259_200.0          # 3 days
    assert t.batch == 500                       # checkEmail's maximum
    assert t.due(NOW) == ["a"]                  # a restored id is due at once


def test_for_account_of_a_uniSender_account_rechecks_after_id_min_recheck_secs():
    uni, _ = _accounts()
    t = IdTracker.for_account(uni, {}, NOW)
    assert (t.floor_secs, t.min_recheck_secs, t.gap_after_secs, t.tz, t.gap_driven) == (30, 30, None, None, False)


def test_for_account_of_a_date_provider_is_a_gap_tracker_with_the_providers_id_batch():
    _, sc = _accounts()
    restored = {"a": Tracked("a@x", NOW - 10)}
    t = IdTracker.for_account(sc, restored, NOW)
    assert (t.batch, t.floor_secs, t.min_recheck_secs, t.gap_after_secs) == (20, 900, 600, 900)  # SendCloud caches 600 s
    assert t.gap_driven and t.tz == timezone(timedelta(hours=8))
    assert t.due(NOW - 10 + 900) == []                            # restored: due once its gap has passed,
    assert t.due(NOW - 10 + 960) == ["a"]                         # alone after a minute's linger


# -- learn ----------------------------------------------------------------------------------------


def test_learn_takes_an_id_exactly_max_age_old_and_refuses_one_a_second_older():
    t = tracker(max_age=100)
    assert t.learn("a", "a@x", NOW - 100, None, False, NOW) == Tracked("a@x", NOW - 100)
    assert t.learn("b", "b@x", NOW - 101, None, False, NOW) is False


def test_learn_the_same_status_again_is_no_change():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "soft"), NOW)
    assert t.learn("a", "a@x", NOW, "soft", False, NOW + 1) is False


def test_learn_keeps_the_known_recipient_and_fills_a_missing_one():
    t = tracker()
    t.apply_write("known", Tracked("a@x", NOW, "s1"), NOW)
    t.apply_write("blank", Tracked("", NOW, "s1"), NOW)
    assert t.learn("known", "other@x", NOW, "s2", False, NOW) == Tracked("a@x", NOW, "s2")
    assert t.learn("blank", "b@x", NOW, "s2", False, NOW) == Tracked("b@x", NOW, "s2")


def test_learn_a_final_report_without_a_status_keeps_the_known_status():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "s1"), NOW)
    assert t.learn("a", "a@x", NOW, None, True, NOW) == Tracked("a@x", NOW, "s1", final=True)


def test_learn_only_a_recipient_for_an_id_that_had_none():
    t = tracker()
    t.apply_write("a", Tracked("", NOW, "s1"), NOW)
    assert t.learn("a", "c@x", NOW, None, False, NOW) == Tracked("c@x", NOW, "s1")
    assert t.learn("a", "", NOW, None, False, NOW) is False


# -- apply_write ----------------------------------------------------------------------------------


def test_apply_write_none_drops_the_id_and_tolerates_an_unknown_one():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW), NOW)
    t.apply_write("a", None, NOW)
    t.apply_write("never-seen", None, NOW)
    assert t.ids == {}


def test_apply_write_of_a_new_status_is_due_a_minute_later():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "s1"), NOW)       # new: due at once
    assert t.ids["a"].due_at == NOW
    t.apply_write("a", Tracked("a@x", NOW, "s2"), NOW + 5)
    assert t.ids["a"].due_at == NOW + 65
    assert t.due(NOW + 64) == []
    assert t.due(NOW + 65) == ["a"]


def test_apply_write_without_a_change_keeps_the_due_time():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "s1"), NOW)
    t.failed(["a"], NOW, 300)                                  # due at NOW + 300
    t.apply_write("a", Tracked("b@x", NOW, "s1"), NOW + 10)    # recipient learned, status the same
    assert t.ids["a"].due_at == NOW + 300
    assert t.due(NOW + 299) == []
    assert t.due(NOW + 300) == ["a"]


def test_apply_write_of_a_final_status_is_never_due():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "s1"), NOW)
    t.apply_write("a", Tracked("a@x", NOW, "s1", final=True), NOW + 5)
    assert "a" not in t.ids and "a" in t.settled
    assert t.due(NOW + 10**6) == []


# -- due and next_due_in --------------------------------------------------------------------------


def test_due_lists_an_id_once_however_often_it_was_rescheduled_to_the_same_time():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW), NOW)
    t.failed(["a"], NOW, 10)
    t.failed(["a"], NOW, 10)                                   # two heap entries (NOW + 10, "a")
    assert t.due(NOW + 10) == ["a"]


def test_next_due_in_of_an_empty_tracker_is_infinite():
    assert tracker().next_due_in(NOW) == INF


def test_next_due_in_counts_down_to_zero():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW), NOW)
    t.failed(["a"], NOW, 30)
    assert t.next_due_in(NOW) == 30.0
    assert t.next_due_in(NOW + 12) == 18.0
    assert t.next_due_in(NOW + 50) == 0.0


def test_next_due_in_skips_stale_and_dropped_entries():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW), NOW)               # entry (NOW, a) ...
    t.failed(["a"], NOW, 100)                                  # ... superseded by (NOW + 100, a)
    t.apply_write("b", Tracked("b@x", NOW), NOW + 1)           # entry (NOW + 1, b) ...
    t.apply_write("b", None, NOW + 1)                          # ... of an id dropped since
    assert t.next_due_in(NOW) == 100.0
    t.apply_write("a", None, NOW)
    assert t.next_due_in(NOW) == INF


# -- plan and apply -------------------------------------------------------------------------------


def test_plan_skips_unknown_and_final_ids_and_goes_on_with_the_rest():
    t = tracker()
    t.apply_write("done", Tracked("d@x", NOW, "s1", final=True), NOW)
    t.apply_write("live", Tracked("l@x", NOW, "s1"), NOW)
    page = PollPage((obs("ghost", "s2"), obs("done", "s2"), obs("live", "s2")), 3, None)
    plan = t.plan(["live"], page, NOW)
    assert [(o.email_id, o.recipient, o.provider_status) for o in plan.observations] == [("live", "l@x", "s2")]
    assert plan.writes == {"live": Tracked("l@x", NOW, "s2")}


def test_plan_the_same_status_turning_final_is_a_write_without_an_observation():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW, "s1"), NOW)
    plan = t.plan(["a"], PollPage((obs("a", "s1", final=True),), 1, None), NOW)
    assert plan.observations == ()
    assert plan.writes == {"a": Tracked("a@x", NOW, "s1", final=True)}


def test_plan_drops_an_asked_id_only_when_older_than_max_age():
    t = tracker(max_age=100)
    t.apply_write("edge", Tracked("e@x", NOW - 100), NOW)
    t.apply_write("old", Tracked("o@x", NOW - 101), NOW)
    plan = t.plan(["edge", "old"], PollPage((), 0, None), NOW)
    assert plan.writes == {"old": None}


def test_expired_is_strictly_older_than_max_age():
    t = tracker(max_age=100)
    t.apply_write("edge", Tracked("e@x", NOW - 100), NOW)
    t.apply_write("old", Tracked("o@x", NOW - 101), NOW)
    assert t.expired(NOW) == ["old"]


def test_apply_tolerates_dropping_an_id_that_is_already_gone():
    t = tracker()
    t.apply(IdPlan((), {"gone": None}, ("gone",)), NOW)
    assert t.ids == {}


def test_apply_reschedules_every_checked_id_after_one_that_is_gone():
    t = tracker()
    t.apply_write("a", Tracked("a@x", NOW), NOW)
    t.apply(IdPlan((), {}, ("gone", "a")), NOW)
    assert t.ids["a"].checked_at == NOW
    assert t.ids["a"].due_at == NOW + 60


# age of the id when checked -> its wait: 5 % of the age, at least the floor (60), at most 6 h
UNCHANGED_WAITS = [(0, 60), (1_000, 60), (1_200, 60), (2_000, 100), (86_400, 4_320), (432_000, 21_600),
                   (2_592_000, 21_600)]


@pytest.mark.parametrize(("age", "wait"), UNCHANGED_WAITS)
def test_an_unchanged_id_waits_a_twentieth_of_its_age_within_the_floor_and_six_hours(age, wait):
    t = tracker(max_age=10**9)
    t.apply_write("a", Tracked("a@x", NOW - age), NOW)
    t.apply(IdPlan((), {}, ("a",)), NOW)
    assert t.ids["a"].due_at == NOW + wait


def test_a_checked_id_that_changed_is_due_a_minute_later_and_others_by_their_age():
    t = tracker(max_age=10**6)
    t.apply_write("a", Tracked("a@x", NOW - 4_000, "s1"), NOW)
    t.apply_write("b", Tracked("b@x", NOW - 4_000, "s1"), NOW)
    plan = t.plan(["a", "b"], PollPage((obs("a", "s2"), obs("b", "s1")), 2, None), NOW)
    t.apply(plan, NOW)
    assert (t.ids["a"].checked_at, t.ids["a"].due_at) == (NOW, NOW + 60)
    assert (t.ids["b"].checked_at, t.ids["b"].due_at) == (NOW, NOW + 200)
