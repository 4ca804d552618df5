"""One module of failure classes with a closed vocabulary of error types (worker.errors), used by
every metric, dead letter and log line, and documented in docs/metrics.md."""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

import worker
from worker import errors, metrics
from worker.deadletter import DeadLetter, signed_headers

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()

# The vocabulary, written out: adding or renaming an error type is a change of the metrics
# contract, so it must show up here (and in docs/metrics.md) on purpose.
EXPECTED = {
    "worker_error", "provider_error", "poll_error", "throttled", "retriable", "fatal_config", "bad_request",
    "webhook_error", "bad_signature", "malformed", "bad_raw_record", "unknown_raw_version", "unknown_account",
    "bad_sent_record", "shard_closed", "fenced", "producer_broken", "commit_failed", "commit_outcome_unknown", "topic_layout", "config",
    "sent_topic_missing",
    "unusable", "too_many_records", "field_too_long", "record_too_large", "event_too_large",
    "replayed_signature", "future_time", "poison_record",
    "timeout", "transport", "kafka", "unexpected",
}


def all_worker_modules():
    for info in pkgutil.walk_packages(worker.__path__, "worker."):
        yield importlib.import_module(info.name)


def test_the_vocabulary_is_closed_and_as_written():
    assert errors.ERROR_TYPES == EXPECTED


def test_every_failure_class_lives_in_worker_errors():
    list(all_worker_modules())   # import everything, so every subclass that exists is loaded
    seen, todo = [], [errors.WorkerError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo += cls.__subclasses__()
    strays = [f"{c.__module__}.{c.__name__}" for c in seen if c.__module__ != "worker.errors"]
    assert strays == []
    assert len({c.error_type for c in seen}) == len(seen), "two classes share an error_type"


def test_the_vocabulary_is_documented():
    section = DOC[DOC.index("## Error types"):]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == EXPECTED


@pytest.mark.parametrize(("exc", "expected"), [
    (errors.Throttled("x", 3.0), "throttled"),
    (errors.Fenced("x"), "fenced"),
    (errors.ConfigError(["a", "b"]), "config"),
    (TimeoutError(), "timeout"),
    (KeyError("k"), "unexpected"),
    (ZeroDivisionError(), "unexpected"),
])
def test_error_type_of(exc, expected):
    assert errors.error_type_of(exc) == expected


def test_metrics_refuse_names_outside_the_vocabulary():
    with pytest.raises(ValueError):
        metrics.error("poll", "KeyError")
    with pytest.raises(ValueError):
        metrics.error("nowhere", "timeout")
    with pytest.raises(ValueError):
        metrics.dead_letters("sendcloud", "a", "TypeError")
    with pytest.raises(ValueError):
        metrics.poll_request("sendcloud", "a", "ConnectionResetError")
    with pytest.raises(ValueError):
        metrics.Tally().dead_letter("sendcloud", "a", "oops")


def test_a_tally_reaches_the_counters_only_when_published():
    labels = ("sendcloud", "tally-test", "delivered", "poll")
    before = metrics.EVENTS.labels(*labels)._value.get()  # noqa: SLF001
    tally = metrics.Tally()
    tally.event(*labels)
    tally.event(*labels)
    assert metrics.EVENTS.labels(*labels)._value.get() == before  # noqa: SLF001
    tally.publish()
    assert metrics.EVENTS.labels(*labels)._value.get() == before + 2  # noqa: SLF001


def test_dead_letter_shape():
    at = datetime(2026, 11, 1, 12, 0, 0, 5000, tzinfo=timezone.utc)
    letter = DeadLetter("engagelab", "el", "malformed", "webhook", "body", b"\x00raw", "application/json", at,
                        signed_headers([("x-webhook-signature", "abc"), ("content-length", "4"),
                                        ("x-webhook-timestamp", "17")]))
    assert letter.key == b"engagelab/el"
    assert letter.headers == [
        ("schema", b"dead-letter/v1"), ("provider", b"engagelab"), ("account", b"el"), ("reason", b"malformed"),
        ("source", b"webhook"), ("part", b"body"), ("content-type", b"application/json"),
        ("received_at", b"2026-11-01T12:00:00.005Z"),
        ("request-x-webhook-signature", b"abc"), ("request-x-webhook-timestamp", b"17")]
    with pytest.raises(ValueError):
        DeadLetter("engagelab", "el", "ValueError", "webhook", "body", b"", "", at)
