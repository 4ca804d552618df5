"""A poll answer planned while a webhook's id change is staged but not committed (worker.poll.ids
`plan` with worker.staging `_staged_id`).

The defect these pin (found in a three-broker run): a UniSender webhook reported a soft bounce, its
id change waited in the open batch, the id poll answered 0.2 s later with the same status, and the
tracker, which compared with the committed status only, emitted the soft bounce a second time (the
poll's row has no time of its own, so dedup took it for a later attempt). The poll must compare with
the id as it will be once everything staged commits: the open batch, then the batch in flight, then
memory. Expected values are literals."""

from __future__ import annotations

from tests.unit.test_mutants_staging import NOW, NOW_TS, UNI, records, staging, uni_webhook
from worker.model import EventType, Observation, Source
from worker.poll.ids import Tracked
from worker.providers.base import PollPage
from worker.state import Restored


def polled(status: str, type_: EventType | None, final: bool) -> PollPage:
    """checkEmail's answer for id 8001, as worker.providers.unisender reads it: no time, no address."""
    row = Observation(email_id="8001", recipient="", type=type_, reason=None, occurred_at=NOW,
                      provider_status=status, final=final, exact_time=False)
    return PollPage((row,), 1, None)


MAILBOX_FULL = polled("err_mailbox_full", EventType.SOFT_BOUNCE, True)


def sent_and_waiting():
    """A staging whose UniSender tracker holds id 8001, sent an hour ago, last seen `ok_sent`."""
    restored = Restored.empty()
    restored.ids["uni"] = {"8001": Tracked("box@example.net", NOW_TS - 3600, "ok_sent")}
    return staging(restored)


async def test_a_status_a_staged_webhook_reported_is_not_emitted_again_by_the_poll():
    st = sent_and_waiting()
    st.stage_raw(records(uni_webhook()), NOW)      # err_mailbox_full, final: one event, change staged
    assert len(st.batch.events) == 1
    tracker = st.trackers["uni"]
    assert tracker.ids["8001"].status == "ok_sent"  # memory as committed
    plan = tracker.plan(["8001"], MAILBOX_FULL, NOW_TS + 0.2)
    assert plan.observations == ()
    assert plan.writes == {"8001": Tracked("box@example.net", NOW_TS - 3600, "err_mailbox_full", final=True)}
    # nor does staging it make a second event
    assert st.observe(UNI, plan.observations, Source.POLL, NOW) == 0
    assert len(st.batch.events) == 1


async def test_the_batch_in_flight_counts_as_staged_too():
    st = sent_and_waiting()
    st.stage_raw(records(uni_webhook()), NOW)
    st.take()                                       # committing: the open batch is a new, empty one
    assert st.trackers["uni"].plan(["8001"], MAILBOX_FULL, NOW_TS + 0.2).observations == ()


async def test_once_the_webhooks_batch_failed_the_poll_reports_the_status():
    # the failed batch is dropped and its `_raw` records replayed later: the poll is the first report
    st = sent_and_waiting()
    st.stage_raw(records(uni_webhook()), NOW)
    st.failed(st.take(), RuntimeError("aborted"))
    plan = st.trackers["uni"].plan(["8001"], MAILBOX_FULL, NOW_TS + 0.2)
    assert [o.provider_status for o in plan.observations] == ["err_mailbox_full"]
    assert [o.recipient for o in plan.observations] == ["box@example.net"]


async def test_a_status_other_than_the_staged_one_is_emitted_and_written_over_it():
    st = sent_and_waiting()
    st.stage_raw(records(uni_webhook()), NOW)      # staged: err_mailbox_full
    later = polled("ok_delivered", EventType.DELIVERED, False)
    plan = st.trackers["uni"].plan(["8001"], later, NOW_TS + 0.2)
    assert [o.provider_status for o in plan.observations] == ["ok_delivered"]
    # evolved from the staged id (its status before this answer was err_mailbox_full, final)
    assert plan.writes == {"8001": Tracked("box@example.net", NOW_TS - 3600, "ok_delivered", final=False)}


async def test_an_id_whose_deletion_is_staged_is_not_reported():
    st = sent_and_waiting()
    st.stage_deletions([], [st.expired(NOW_TS + 11 * 86400).ids[0]])   # id_max_age_days is 10
    assert st.trackers["uni"].plan(["8001"], MAILBOX_FULL, NOW_TS + 0.2).observations == ()


async def test_after_the_commit_memory_answers_as_before():
    st = sent_and_waiting()
    st.stage_raw(records(uni_webhook()), NOW)
    st.committed(st.take(), NOW_TS)
    assert "8001" not in st.trackers["uni"].ids and "8001" in st.trackers["uni"].settled
    assert st.trackers["uni"].plan(["8001"], MAILBOX_FULL, NOW_TS + 0.2).observations == ()


def test_a_sent_record_and_a_webhook_in_one_batch_keep_the_sent_time():
    """What a webhook teaches is compared with the id as staged too (worker.poll.ids `learn`): a
    UniSender sent record (sent two hours before NOW) and the id's first webhook in one batch left the
    id with the webhook's arrival as its send time (the webhook has none), which moves its checks and
    its expiry. Found with the same fix as test_gap_learning's same-batch test."""
    from datetime import timedelta
    from types import SimpleNamespace

    from worker import raw
    from worker.model import Provider

    st = staging()
    sent_at = NOW - timedelta(hours=2)
    sent = raw.encode(raw.SentMessage(Provider.UNISENDER, "uni", sent_at, "8002", "box@example.net", sent_at))
    hook = raw.encode(raw.WebhookRecord(Provider.UNISENDER, "uni", NOW, {
        "login": "demo", "event_name": "email_status", "event_time": "2026-11-02 10:00:00",
        "email": "box@example.net", "status": "err_will_retry", "status_group": "error_group", "email_id": 8002}))
    st.stage_raw([SimpleNamespace(offset=1, value=sent), SimpleNamespace(offset=2, value=hook)], NOW)
    st.committed(st.take(), NOW_TS)
    tracked = st.trackers["uni"].ids["8002"]
    assert (tracked.recipient, tracked.status, tracked.final) == ("box@example.net", "err_will_retry", False)
    assert tracked.sent_at == NOW_TS - 7200
