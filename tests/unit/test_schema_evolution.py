"""Schema evolution within status-event/v1 (docs/consumers.md): fields are only added, optional,
so an event written before `final`, `scope` and `attempt` existed still validates and decodes."""

from __future__ import annotations

import copy

import jsonschema
import orjson
import pytest

from tests.support import validate_event
from worker.model import EventType, Scope, StatusEvent

# An event exactly as the release before issue 13 wrote it (typed by hand, not encoded by the code).
BEFORE = {
    "schema_version": 1, "event_id": "0f3c2a9d8e7b6a5f4e3d2c1b0a998877", "type": "soft_bounce",
    "provider": "sendcloud", "account": "cn-main", "email_id": "1652117389552_2287$bob@example.com",
    "message_id": None, "recipient": "bob@example.com", "occurred_at": "2022-05-10T01:29:51Z",
    "sent_at": "2022-05-10T01:29:50Z", "observed_at": "2022-05-10T01:29:52Z", "source": "poll",
    "permanent": False, "reason": "mailbox_full", "provider_status": "软退信", "provider_sub_status": "509",
    "provider_message": "452 4.2.2 mailbox full", "smtp": {"code": 452, "enhanced": "4.2.2"}, "raw": None,
}


def test_an_event_written_before_the_new_fields_still_validates() -> None:
    validate_event(BEFORE)
    invalid = {**BEFORE, "type": "invalid", "permanent": True, "reason": "unknown_user"}
    validate_event(invalid)


@pytest.mark.parametrize(("type_", "final"), [("soft_bounce", False), ("invalid", True), ("delivered", True)])
def test_an_older_event_decodes_with_the_documented_defaults(type_, final) -> None:
    old = {**BEFORE, "type": type_, "permanent": type_ == "invalid"}
    event = StatusEvent.decode(orjson.dumps(old))
    assert (event.final, event.scope, event.attempt) == (final, None, None)
    assert event.type is EventType(type_)


def test_a_new_event_carries_the_fields() -> None:
    new = {**BEFORE, "final": True, "scope": "recipient", "attempt": None}
    validate_event(new)
    event = StatusEvent.decode(orjson.dumps(new))
    assert (event.final, event.scope) == (True, Scope.RECIPIENT)
    assert orjson.loads(event.encode()) == new


@pytest.mark.parametrize("change", [
    {"type": "invalid", "permanent": True, "scope": "sender"},      # the invariant
    {"type": "invalid", "permanent": True, "scope": "unknown"},
    {"type": "delivered", "reason": None, "scope": "recipient"},    # a delivery has no scope
    {"type": "delivered", "reason": None, "final": False},          # only soft bounces retry
    {"scope": "mailbox"},                                           # not in the enum
    {"attempt": 0},
])
def test_the_schema_refuses_what_the_contract_forbids(change) -> None:
    event = copy.deepcopy(BEFORE) | change
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(_schema()).validate(event)


def _schema() -> dict:
    from worker.config import load_schema
    return load_schema("status-event.v1.json")
