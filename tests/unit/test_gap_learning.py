"""What a gap-driven tracker learns (worker.staging `learn`, worker.poll.ids `learn`), worked by
hand: only ids the sent feed named are checked by id; a soft bounce a webhook reports ends an id's
checks by id, one a poll found does not; and a final status staged before a sent record of the same
batch keeps the id settled (a defect the gaps bench found).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tests.integration.harness import worker_config
from worker import raw
from worker.config import parse_config
from worker.model import EventType, Observation, Provider, Source
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)  # 2024-01-02 01:00 in China

CONFIG = parse_config({**worker_config("127.0.0.1:9", "p", [
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}, "poll": {"gap_after_secs": 900}}], shards=1),
    "inputs": {"sent_topic": "sent"}}, {"K": "k"})
SC = CONFIG.accounts[0]
SENT = NOW - timedelta(minutes=20)
BOUNCED = NOW - timedelta(minutes=5)


def record(offset: int, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, value=value)


def staging_with_sent(email_id: str) -> Staging:
    st = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    sent = raw.SentMessage(Provider.SENDCLOUD, "sc", SENT, email_id, "bob@example.com", SENT)
    st.stage_raw([record(1, raw.encode(sent))], SENT)
    st.committed(st.take(), SENT.timestamp())
    assert st.trackers["sc"].gap_driven and email_id in st.trackers["sc"].ids
    return st


def soft_bounce_webhook(email_id: str) -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, {
        "event": "soft_bounce", "emailId": email_id, "recipient": "bob@example.com",
        "timestamp": str(int(BOUNCED.timestamp() * 1000)), "subStat": "503",
        "subStatDesc": "421 4.4.2 connection timed out"}))


def test_a_soft_bounce_by_webhook_settles_a_gap_driven_id():
    st = staging_with_sent("m1$bob@example.com")
    st.stage_raw([record(2, soft_bounce_webhook("m1$bob@example.com"))], NOW)
    batch = st.take()
    assert len(batch.events) == 1                  # the event is emitted as always
    st.committed(batch, NOW.timestamp())
    tracker = st.trackers["sc"]
    assert "m1$bob@example.com" not in tracker.ids
    assert "m1$bob@example.com" in tracker.settled
    assert tracker.claim(NOW.timestamp() + 86400) == []     # never asked by id


def soft_bounce_row(email_id: str) -> Observation:
    return Observation(email_id=email_id, recipient="bob@example.com", type=EventType.SOFT_BOUNCE, reason=None,
                       occurred_at=BOUNCED, provider_status="软退信", final=False)


def test_a_soft_bounce_a_poll_found_keeps_the_id_checked_by_id():
    st = staging_with_sent("m2$bob@example.com")
    st.learn(SC, [soft_bounce_row("m2$bob@example.com")], NOW, Source.POLL)
    st.committed(st.take(), NOW.timestamp())
    tracker = st.trackers["sc"]
    assert tracker.ids["m2$bob@example.com"].status == "软退信"
    assert "m2$bob@example.com" not in tracker.settled
    # due again: sent 20 min ago, 15 min gap, a status change waits 60 s more; then the 90 s linger
    assert tracker.claim(NOW.timestamp() + 60 + 90) == ["m2$bob@example.com"]


def test_the_same_soft_bounce_by_webhook_settles_it():
    st = staging_with_sent("m3$bob@example.com")
    st.learn(SC, [soft_bounce_row("m3$bob@example.com")], NOW, Source.WEBHOOK)
    st.committed(st.take(), NOW.timestamp())
    assert "m3$bob@example.com" in st.trackers["sc"].settled
    assert "m3$bob@example.com" not in st.trackers["sc"].ids


def test_a_soft_bounce_a_sweep_found_for_an_id_the_feed_did_not_name_starts_no_check():
    st = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    st.learn(SC, [soft_bounce_row("m4$bob@example.com")], NOW, Source.POLL)
    batch = st.take()
    assert batch.state == []                       # nothing to persist
    st.committed(batch, NOW.timestamp())
    tracker = st.trackers["sc"]
    assert "m4$bob@example.com" not in tracker.ids and "m4$bob@example.com" not in tracker.settled
    assert tracker.claim(NOW.timestamp() + 86400) == []


def test_a_final_status_a_sweep_found_first_keeps_a_late_sent_record_from_starting_checks():
    st = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    delivered = Observation(email_id="m5$bob@example.com", recipient="bob@example.com", type=EventType.DELIVERED,
                            reason=None, occurred_at=BOUNCED, provider_status="送达", final=True)
    st.learn(SC, [delivered], NOW, Source.POLL)
    st.committed(st.take(), NOW.timestamp())
    sent = raw.SentMessage(Provider.SENDCLOUD, "sc", SENT, "m5$bob@example.com", "bob@example.com", NOW)
    st.stage_raw([record(3, raw.encode(sent))], NOW)
    st.committed(st.take(), NOW.timestamp())
    tracker = st.trackers["sc"]
    assert "m5$bob@example.com" in tracker.settled and "m5$bob@example.com" not in tracker.ids


def delivered_webhook(email_id: str) -> bytes:
    return raw.encode(raw.WebhookRecord(Provider.SENDCLOUD, "sc", NOW, {
        "event": "deliver", "emailId": email_id, "recipient": "bob@example.com",
        "timestamp": str(int(BOUNCED.timestamp() * 1000))}))


@pytest.mark.parametrize("webhook_first", [True, False])
def test_a_delivery_and_its_sent_record_in_one_batch_leave_nothing_to_check_in_either_order(webhook_first):
    """The defect the bench found (in a quick gaps run, 34 of the 51 ids asked were delivered, webhook in):
    a sent record staged after the delivery's webhook, in the same batch, opened the id again."""
    st = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    sent = raw.encode(raw.SentMessage(Provider.SENDCLOUD, "sc", SENT, "m6$bob@example.com", "bob@example.com", NOW))
    hook = delivered_webhook("m6$bob@example.com")
    st.stage_raw([record(1, hook), record(2, sent)] if webhook_first else [record(1, sent), record(2, hook)], NOW)
    st.committed(st.take(), NOW.timestamp())
    tracker = st.trackers["sc"]
    assert "m6$bob@example.com" not in tracker.ids
    assert "m6$bob@example.com" in tracker.settled
    assert tracker.claim(NOW.timestamp() + 86400) == []


def test_a_row_that_starts_no_check_does_not_stop_the_rows_after_it():
    st = staging_with_sent("m7$bob@example.com")
    delivered = Observation(email_id="m7$bob@example.com", recipient="bob@example.com", type=EventType.DELIVERED,
                            reason=None, occurred_at=BOUNCED, provider_status="送达", final=True)
    st.learn(SC, [soft_bounce_row("m8$bob@example.com"), delivered], NOW, Source.POLL)   # m8: not on the feed
    st.committed(st.take(), NOW.timestamp())
    tracker = st.trackers["sc"]
    assert "m7$bob@example.com" in tracker.settled and "m7$bob@example.com" not in tracker.ids
    assert "m8$bob@example.com" not in tracker.ids
