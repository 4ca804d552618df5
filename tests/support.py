"""Helpers shared by the test suites: schema validation and golden event rendering."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import jsonschema

from worker.config import load_schema
from worker.model import Observation, Provider, Source, StatusEvent

# Fixed values for golden files: the golden output must depend on the provider's data only.
GOLDEN_ACCOUNT = "acct"
GOLDEN_OBSERVED_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)

_event_validator = jsonschema.Draft202012Validator(
    load_schema("status-event.v1.json"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def validate_event(event: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError listing the first problem of an encoded event; also the
    issue-13 invariant in plain words (the schema states it too): an `invalid` is evidence about
    the address (scope recipient or domain) or the provider's own refusal (provider), and only a
    soft bounce may be one the provider is still retrying. The worker writes both fields always."""
    _event_validator.validate(event)
    if event["type"] == "invalid" and "scope" in event:   # events before issue 13 have none
        assert event.get("scope") in ("recipient", "domain", "provider"), f"invalid with scope {event.get('scope')}"
    if event.get("final") is False:
        assert event["type"] == "soft_bounce", f"{event['type']} not final"


def golden_events(observations: list[Observation], provider: Provider, source: Source) -> list[dict[str, Any]]:
    """The events a list of observations becomes (non-emitted statuses left out), schema-checked."""
    out = []
    for obs in observations:
        if obs.type is None:
            continue
        event = StatusEvent.from_observation(
            obs, provider=provider, account=GOLDEN_ACCOUNT, source=source, observed_at=GOLDEN_OBSERVED_AT
        ).to_dict()
        validate_event(event)
        out.append(event)
    return out


def hook_acct(provider: Provider, keys=(), **options: str):
    """An account context that only carries webhook keys and options (for verify_webhook)."""
    from worker.providers.base import AccountContext

    return AccountContext(name=GOLDEN_ACCOUNT, provider=Provider(provider), base_url="http://x",
                          webhook_keys=tuple(keys), options=options)
