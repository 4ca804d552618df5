"""Golden events checked against an event-id formula written here, not taken from the worker.

The goldens' `event_id`s were rendered by the code under test (tests.support.golden_events), so the
conformance suite only proves the code agrees with itself. Here every golden id is recomputed
from the golden's own literal fields with the formula of DESIGN.md section 3 and the docstring of
worker.model.make_event_id, typed out again:

    sha256(utf8(provider \\x1f account \\x1f email_id \\x1f type \\x1f <occurred_at in epoch ms>)).hex[:32]

occurred_at is parsed here by hand (no worker helper). A few hand-worked cases pin the formula
with literal ids that were computed once with hashlib alone (see each case).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from worker.model import EventType, Observation, Provider, Source, StatusEvent, make_event_id

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PROVIDERS = ("engagelab", "sendcloud", "aurora_sendcloud", "unisender", "tencent_ses")

# RFC 3339 in UTC with a Z suffix, optional fraction (the schema's `pattern: Z$` plus date-time).
_RFC3339_Z = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")


def _epoch_ms(text: str) -> int:
    """Whole milliseconds since the epoch of an RFC 3339 `...Z` string, by hand (floor, like the docstring)."""
    match = _RFC3339_Z.fullmatch(text)
    assert match is not None, f"not RFC 3339 with Z: {text!r}"
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or ""
    millis = int((fraction + "000")[:3])
    return calendar.timegm((year, month, day, hour, minute, second)) * 1000 + millis


def _expected_id(provider: str, account: str, email_id: str, type_: str, occurred_at: str) -> str:
    material = "\x1f".join((provider, account, email_id, type_, str(_epoch_ms(occurred_at))))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def _goldens() -> list[tuple[str, int, dict]]:
    out = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        for index, event in enumerate(case.get("expect", {}).get("events", [])):
            out.append((f"{path.parent.name}/{path.name}", index, event))
    return out


GOLDENS = _goldens()


def test_the_fixture_folders_hold_goldens_for_every_provider() -> None:
    # Guards against a vacuous pass (a moved folder would otherwise parametrize over nothing).
    by_provider = {p: 0 for p in PROVIDERS}
    for name, _, _ in GOLDENS:
        by_provider[name.split("/")[0]] += 1
    assert all(count >= 5 for count in by_provider.values()), by_provider
    assert len(GOLDENS) >= 100


def test_the_hand_parser_agrees_with_literal_instants() -> None:
    # Hand-worked: 2022-05-09T17:29:51Z is 1652117391 s (calendar.timegm), 2017-06-19T07:38:22Z 1497857902 s.
    assert _epoch_ms("2022-05-09T17:29:51Z") == 1652117391000
    assert _epoch_ms("2023-02-17T06:35:14.123Z") == 1676615714123
    assert _epoch_ms("2017-06-19T07:38:22Z") == 1497857902000
    assert _epoch_ms("1970-01-01T00:00:00.001Z") == 1


@pytest.mark.parametrize(("fixture", "index", "event"), GOLDENS, ids=[f"{n}#{i}" for n, i, _ in GOLDENS])
def test_golden_event_id_matches_the_independent_formula(fixture: str, index: int, event: dict) -> None:
    expected = _expected_id(event["provider"], event["account"], event["email_id"], event["type"], event["occurred_at"])
    assert event["event_id"] == expected, f"{fixture} event {index}: event_id is not the documented hash"


# The schema's required string fields that must be non-empty in every golden (status-event.v1.json
# minLength 1 / enums), written out here; message_id, sent_at, reason, provider_sub_status,
# provider_message, smtp and raw may be null.
NON_EMPTY = ("type", "provider", "account", "email_id", "recipient", "occurred_at", "source", "provider_status")
TYPES = {"delivered", "invalid", "soft_bounce", "complaint", "unsubscribed"}
PERMANENT = {"invalid", "complaint", "unsubscribed"}


@pytest.mark.parametrize(("fixture", "index", "event"), GOLDENS, ids=[f"{n}#{i}" for n, i, _ in GOLDENS])
def test_golden_fields_are_filled_in(fixture: str, index: int, event: dict) -> None:
    where = f"{fixture} event {index}"
    for field in NON_EMPTY:
        assert isinstance(event.get(field), str) and event[field] != "", f"{where}: {field} empty or missing"
    assert event["schema_version"] == 1, where
    assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"]), where
    assert event["provider"] == fixture.split("/")[0], f"{where}: provider is not the folder's"
    assert event["type"] in TYPES, where
    assert event["permanent"] is (event["type"] in PERMANENT), where
    assert event["recipient"] == event["recipient"].lower(), f"{where}: recipient not lower-cased"
    assert "@" in event["recipient"], where
    _epoch_ms(event["occurred_at"])  # RFC 3339 with Z, or it raises
    if event["sent_at"] is not None:
        _epoch_ms(event["sent_at"])
    assert event["source"] == ("poll" if fixture.split("/")[1].startswith("poll_") else "webhook"), where


# -- hand-worked cases ---------------------------------------------------------------------------
# Each literal id was computed once, outside the worker, with:
#   python3 -c 'import hashlib; print(hashlib.sha256("\x1f".join((p, a, e, t, ms)).encode("utf-8")).hexdigest()[:32])'

HAND_WORKED = [
    # SendCloud invalid webhook at timestamp 1652117391000 (ms) = 2022-05-09T17:29:51Z; the id keeps
    # the provider's mixed case.
    ("sendcloud", "cn-main", "1652117389552_218362_2287_3497.sc-10_9_13_213-inbound1$Bob@Example.com",
     EventType.INVALID, datetime(2022, 5, 10, 1, 29, 51, tzinfo=timezone(timedelta(hours=8))),
     "c54d2a230273b89db17aa72818b9928d"),
    # Tencent seed row, DeliverTime 1609831698 s = 2021-01-05T07:28:18Z.
    ("tencent_ses", "acct", "qcloudses-30-4123414323-date-20210101094334-syNARhMTbKI1:example@cloud.com",
     EventType.DELIVERED, datetime(2021, 1, 5, 7, 28, 18, tzinfo=UTC),
     "858acfa917dfac8cecc2b50648cbb167"),
    # Sub-millisecond digits are dropped (floor): 14.123456 s counts as 1676615714123 ms.
    ("engagelab", "eu", "1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$a@b.cn",
     EventType.SOFT_BOUNCE, datetime(2023, 2, 17, 6, 35, 14, 123456, tzinfo=UTC),
     "29d8ffd82a6002ee2ce28a0ed236d9a8"),
    # Non-ASCII account name: hashed as UTF-8; 10:38:22 at UTC+3 = 1497857902 s.
    ("unisender", "ру-аккаунт", "11411542313",
     EventType.UNSUBSCRIBED, datetime(2017, 6, 19, 10, 38, 22, tzinfo=timezone(timedelta(hours=3))),
     "ed431fca991423f94ff371af4e918fde"),
]


@pytest.mark.parametrize(("provider", "account", "email_id", "type_", "occurred_at", "literal"), HAND_WORKED,
                         ids=[c[0] for c in HAND_WORKED])
def test_make_event_id_hand_worked(provider, account, email_id, type_, occurred_at, literal) -> None:
    assert make_event_id(provider, account, email_id, type_.value, occurred_at) == literal


@pytest.mark.parametrize(("provider", "account", "email_id", "type_", "occurred_at", "literal"), HAND_WORKED,
                         ids=[c[0] for c in HAND_WORKED])
def test_status_event_carries_the_hand_worked_id(provider, account, email_id, type_, occurred_at, literal) -> None:
    obs = Observation(email_id=email_id, recipient="Someone@Example.COM", type=type_, reason=None,
                      occurred_at=occurred_at, provider_status="x")
    event = StatusEvent.from_observation(obs, provider=Provider(provider), account=account, source=Source.WEBHOOK,
                                         observed_at=datetime(2030, 1, 1, tzinfo=UTC))
    assert event.event_id == literal
    encoded = event.to_dict()
    assert encoded["event_id"] == literal
    assert encoded["recipient"] == "someone@example.com"
    assert dict(event.headers)["event_id"] == literal.encode()
    # The golden formula above, run on the encoded event, gives the same literal.
    assert _expected_id(encoded["provider"], encoded["account"], encoded["email_id"], encoded["type"],
                        encoded["occurred_at"]) == literal
