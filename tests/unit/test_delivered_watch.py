"""A delivered UniSender id settles `id_delivered_watch_hours` after sending (issue 15).

UniSender's `ok_delivered`, `ok_read` and `ok_link_visited` are not final (the letter may still be
reported as spam or unsubscribed: PROVIDERS.md 4.4), so id polling used to keep such an id open,
re-checked, until `id_max_age_days`: ~80 % of a UniSender account's ids were full records (bench
soak). A delivered id now settles at its first check after the watch; before it, and for any
status that is not delivered, nothing changed. Times below are worked by hand: the watch is 24 h
(86,400 s) unless a case says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tests.integration.harness import worker_config
from tests.unit.test_mutants_ids import _accounts
from worker.config import parse_config
from worker.model import EventType, Observation
from worker.poll.ids import IdTracker, Tracked
from worker.providers.base import PollPage

NOW = 1_700_000_000.0
HOUR = 3600.0


def obs(email_id: str, status: str, type_: EventType | None, final: bool = False) -> Observation:
    return Observation(email_id=email_id, recipient="", type=type_, reason=None,
                       occurred_at=datetime.fromtimestamp(NOW, tz=UTC), provider_status=status, final=final)


def tracker(status: str | None = "ok_delivered", watch_secs: float = 24 * HOUR) -> IdTracker:
    t = IdTracker(max_age_secs=30 * 86400.0, batch=500, floor_secs=30.0, min_recheck_secs=30.0,
                  delivered_watch_secs=watch_secs)
    t.apply_write("11411542313", Tracked("a@x.test", NOW, status), NOW)
    return t


def check(t: IdTracker, observation: Observation, at: float):
    plan = t.plan(["11411542313"], PollPage((observation,), 1, None), at)
    t.apply(plan, at)
    return plan


def test_a_delivered_id_stays_open_inside_the_watch():
    t = tracker()
    plan = check(t, obs("11411542313", "ok_delivered", EventType.DELIVERED), NOW + 24 * HOUR - 1)
    assert plan.writes == {} and plan.observations == ()
    assert "11411542313" in t.ids and "11411542313" not in t.settled


def test_an_unchanged_delivered_id_settles_at_its_first_check_after_the_watch():
    t = tracker()
    plan = check(t, obs("11411542313", "ok_delivered", EventType.DELIVERED), NOW + 24 * HOUR)
    assert plan.writes == {"11411542313": Tracked("a@x.test", NOW, "ok_delivered", final=True)}
    assert plan.observations == ()                       # nothing new to say: no event
    assert t.ids == {} and "11411542313" in t.settled and len(t) == 1
    # a late sent record or webhook cannot start it over
    assert t.learn("11411542313", "a@x.test", NOW, None, False, NOW + 25 * HOUR) is False
    assert t.due(NOW + 10 * 86400.0) == []


def test_a_change_to_read_after_the_watch_is_reported_and_settles():
    t = tracker()
    plan = check(t, obs("11411542313", "ok_read", EventType.DELIVERED), NOW + 30 * HOUR)
    assert [(o.provider_status, o.recipient) for o in plan.observations] == [("ok_read", "a@x.test")]
    assert plan.writes == {"11411542313": Tracked("a@x.test", NOW, "ok_read", final=True)}
    assert "11411542313" in t.settled


def test_a_complaint_inside_the_watch_is_still_seen():
    t = tracker()
    plan = check(t, obs("11411542313", "ok_fbl", EventType.COMPLAINT, final=True), NOW + 20 * HOUR)
    assert [o.type for o in plan.observations] == [EventType.COMPLAINT]
    assert plan.writes["11411542313"].final is True


def test_a_soft_bounce_or_pending_id_is_not_settled_by_the_watch():
    for status, type_ in (("err_will_retry", EventType.SOFT_BOUNCE), ("ok_sent", None)):
        t = tracker(status)
        plan = check(t, obs("11411542313", status, type_), NOW + 3 * 86400.0)
        assert plan.writes == {}, status
        assert "11411542313" in t.ids, status


def test_a_watch_of_zero_settles_at_the_first_delivered_answer():
    t = tracker(status=None, watch_secs=0.0)
    plan = check(t, obs("11411542313", "ok_delivered", EventType.DELIVERED), NOW + 60)
    assert [o.provider_status for o in plan.observations] == ["ok_delivered"]
    assert plan.writes["11411542313"].final is True and t.ids == {}


def test_for_account_reads_the_watch_from_config():
    uni, sc = _accounts()
    assert IdTracker.for_account(uni, {}, NOW).delivered_watch_secs == 86_400.0   # default 24 h
    assert IdTracker.for_account(sc, {}, NOW).delivered_watch_secs == float("inf")  # gap-driven: n/a
    accounts = [{"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"},
                 "poll": {"id_delivered_watch_hours": 2.5}}]
    (uni_short,) = parse_config(worker_config("127.0.0.1:9", "p", accounts, shards=1), {"K": "k"}).accounts
    assert IdTracker.for_account(uni_short, {}, NOW).delivered_watch_secs == 9_000.0
