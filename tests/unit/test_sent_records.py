"""Sent-message records that cannot be tracked (sent-feed audit of 2026-12-06), through the feed's
routing (worker.sentfeed `_route`, worker.sent): an id the provider's status API cannot take is a
dead letter, not a poison for every id batched with it; ids or addresses over the event caps and
records sent in the future are dead letters; an unreadable record that names a configured account
says whose it is; a record naming no account is a dead letter and one naming an unknown account is
counted, never silently dropped. Expected values by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from tests.integration.harness import worker_config
from worker import metrics
from worker.config import parse_config
from worker.deadletter import DeadLetter
from worker.intake import Admitted
from worker.sentfeed import SentFeed

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", [
    {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}},
    {"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}, "poll": {"gap_driven": True}},
    {"name": "plain", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
     "webhook": {"app_key_env": "K"}, "poll": {"gap_driven": False}},
], inputs={"sent_topic": "sent"}), {"K": "k" * 20})


def record(**fields) -> bytes:
    base = {"provider": "unisender", "account": "uni", "email_id": "11411542320", "recipient": "a@x.test",
            "sent_at": "2026-12-06T11:59:00Z"}
    return orjson.dumps({**base, **fields})


def route(value: bytes):
    return SentFeed(CONFIG, writer=None)._route(value, NOW)   # type: ignore[arg-type]


def letter(value: bytes) -> tuple[str, str, str]:
    routed = route(value)
    assert isinstance(routed, DeadLetter), routed
    return routed.provider, routed.account, routed.reason


def test_records_the_provider_can_take_are_forwarded():
    assert isinstance(route(record()), Admitted)
    assert isinstance(route(record(email_id=11411542321)), Admitted)          # a number, as UniSender's ids are
    assert isinstance(route(record(provider="sendcloud", account="sc", email_id="1796589827134_1_2_3.sc-1$a@x.test")),
                      Admitted)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"email_id": "ABC-123"}, ("unisender", "uni", "bad_sent_record")),           # UniSender's ids are numbers
    ({"email_id": "1,2"}, ("unisender", "uni", "bad_sent_record")),
    ({"provider": "sendcloud", "account": "sc", "email_id": "poison;id"}, ("sendcloud", "sc", "bad_sent_record")),
    ({"email_id": "1" * 513}, ("unisender", "uni", "field_too_long")),           # the id cap is 512
    ({"recipient": "a" * 314 + "@x.test"}, ("unisender", "uni", "field_too_long")),   # 321: the cap is 320
    ({"sent_at": "2099-01-01T00:00:00Z"}, ("unisender", "uni", "future_time")),
    ({"sent_at": "2026-12-06T12:05:01Z"}, ("unisender", "uni", "future_time")),   # 301 s ahead
    ({"sent_at": "yesterday"}, ("unisender", "uni", "bad_sent_record")),          # names a configured account
    ({"account": ""}, ("unknown", "unknown", "bad_sent_record")),                  # names none
])
def test_records_that_cannot_be_tracked_are_dead_letters_of_their_account(fields, expected):
    assert letter(record(**fields)) == expected


def test_near_the_limits_is_still_taken():
    assert isinstance(route(record(email_id="1" * 512)), Admitted)
    assert isinstance(route(record(recipient="a" * 313 + "@x.test")), Admitted)     # 320 characters
    assert isinstance(route(record(sent_at="2026-12-06T12:05:00Z")), Admitted)      # 300 s ahead


def test_an_unreadable_record_of_an_unknown_account_is_unknowns():
    assert letter(record(account="nope", sent_at="yesterday")) == ("unknown", "unknown", "bad_sent_record")
    assert letter(b"not json") == ("unknown", "unknown", "bad_sent_record")


def test_an_unknown_or_mismatched_account_is_counted_not_forwarded():
    def count() -> float:
        return metrics.REGISTRY.get_sample_value(
            "esw_errors_total", {"stage": "sent_feed", "error_type": "unknown_account"}) or 0.0
    before = count()
    assert route(record(account="nope")) is None
    assert route(record(provider="engagelab", account="sc")) is None              # sc is a SendCloud account
    assert count() == before + 2
    assert route(record(provider="sendcloud", account="plain")) is None           # configured, needs no feed
    assert count() == before + 2
