"""Id-based polling: batches, soonest first, backoff per id, change-only observations."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.model import EventType, Observation
from worker.poll.ids import BASE_BACKOFF_SECS, IdTracker, Tracked
from worker.providers.base import PollPage

NOW = 1_700_000_000.0


def obs(email_id, status, type_=None, final=False):
    return Observation(email_id=email_id, recipient="", type=type_, reason=None,
                       occurred_at=datetime.fromtimestamp(NOW, tz=UTC), provider_status=status, final=final)


def tracker_with(n, batch=500):
    t = IdTracker(max_age_secs=30 * 86400, batch=batch)
    for i in range(n):
        t.apply_write(str(i), Tracked(recipient=f"r{i}@x.test", sent_at=NOW - i), NOW + i)
    return t


def test_batches_are_bounded_and_soonest_first():
    t = tracker_with(1200)
    first = t.due(NOW + 5000)
    assert len(first) == 500 and first[:3] == ["0", "1", "2"]


def test_unchanged_status_backs_off_and_changes_become_observations_with_the_recipient():
    t = tracker_with(2)
    asked = t.due(NOW + 10)
    plan = t.plan(asked, PollPage((obs("0", "ok_sent"), obs("1", "ok_sent")), 2, None), NOW + 10)
    assert [o.recipient for o in plan.observations] == ["r0@x.test", "r1@x.test"]
    t.apply(plan, NOW + 10)
    assert t.ids["0"].due_at == NOW + 10 + 60          # a changed status: again a minute later
    again = t.plan(t.due(NOW + 10 + BASE_BACKOFF_SECS), PollPage((obs("0", "ok_sent"),), 1, None), NOW + 200)
    assert again.observations == ()
    t.apply(again, NOW + 200)
    assert t.ids["0"].checked_at == NOW + 200
    assert t.ids["0"].due_at == NOW + 200 + 60          # unchanged, 200 s old: the floor (5 % is 10 s)


def test_final_ids_stop_being_checked_and_unknown_ids_are_dropped():
    t = tracker_with(3)
    asked = t.due(NOW + 10)
    page = PollPage((obs("0", "ok_delivered", EventType.DELIVERED, final=False),
                     obs("1", "err_user_unknown", EventType.INVALID, final=True)), 2, None, unknown_ids=("2",))
    plan = t.plan(asked, page, NOW + 10)
    assert plan.writes["1"].final and plan.writes["2"] is None and plan.writes["0"].status == "ok_delivered"
    t.apply(plan, NOW + 10)
    assert set(t.ids) == {"0"} and "1" in t.settled and len(t) == 2
    assert t.due(NOW + 10 * 86400) == ["0"]  # the final one is remembered, never asked again


def test_a_final_status_seen_first_is_not_restarted_by_a_late_sent_record():
    t = IdTracker(max_age_secs=30 * 86400, batch=10)
    first = t.learn("9", "a@x", NOW, "skip_dup_mailbox_full", True, NOW)  # webhook before the sent record
    assert first == Tracked("a@x", NOW, "skip_dup_mailbox_full", final=True)
    t.apply_write("9", first, NOW)
    assert t.learn("9", "a@x", NOW, None, False, NOW + 5) is False  # the sent record
    assert t.due(NOW + 86400) == []


def test_aged_out_ids_are_listed_for_tombstoning():
    t = IdTracker(max_age_secs=100, batch=10)
    t.apply_write("old", Tracked(recipient="a@x", sent_at=NOW - 200, final=True), NOW)
    t.apply_write("new", Tracked(recipient="b@x", sent_at=NOW), NOW)
    assert t.expired(NOW) == ["old"]


def test_old_ids_expire():
    t = IdTracker(max_age_secs=100, batch=10)
    t.apply_write("a", Tracked(recipient="a@x", sent_at=NOW), NOW)
    plan = t.plan(t.due(NOW + 500), PollPage((), 0, None), NOW + 500)
    assert plan.writes == {"a": None}


def test_learning_from_webhooks_updates_status_and_finality():
    t = tracker_with(1)
    assert t.learn("0", "r0@x.test", NOW, "err_will_retry", False, NOW) == Tracked("r0@x.test", NOW, "err_will_retry")
    assert t.learn("0", "r0@x.test", NOW, None, False, NOW) is False
    assert t.learn("0", "r0@x.test", NOW, "ok_delivered", True, NOW) == Tracked("r0@x.test", NOW, "ok_delivered", True)
    assert t.learn("new", "n@x", NOW, None, False, NOW) == Tracked("n@x", NOW, None)
    assert t.learn("old", "o@x", NOW - 40 * 86400, None, False, NOW) is False


def test_failed_batches_are_retried_later():
    t = tracker_with(2)
    asked = t.due(NOW + 10)
    t.failed(asked, NOW + 10, 120)
    assert t.due(NOW + 100) == []
    assert sorted(t.due(NOW + 131)) == ["0", "1"]
