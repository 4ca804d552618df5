"""The shape every provider module shares: plain functions, the registry, credentials as data, and
the shared helpers of base.py (one response validator, one parser per kind of value)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from worker.errors import BadRequest, FatalConfig, PollError, Retriable, Throttled
from worker.model import EventType, Provider
from worker.providers import REGISTRY, aurora_sendcloud, engagelab, get_module, sendcloud, tencent_ses, unisender
from worker.providers._answers import read_answer
from worker.providers.base import (
    CHINA_TZ,
    AccountContext,
    Credentials,
    Need,
    PollQuery,
    SenderSide,
    as_int,
    as_text,
    epoch_time,
    local_time,
    resolve,
)

NOW = datetime(2024, 1, 1, 17, 0, tzinfo=UTC)
FUNCTIONS = ("build_poll_request", "parse_poll_response", "verify_webhook", "split_webhook", "webhook_observations")


def test_the_registry_is_a_plain_dict_of_the_five_modules() -> None:
    assert type(REGISTRY) is dict
    expected = {Provider.ENGAGELAB: engagelab, Provider.SENDCLOUD: sendcloud,
                Provider.AURORA_SENDCLOUD: aurora_sendcloud, Provider.UNISENDER: unisender,
                Provider.TENCENT_SES: tencent_ses}
    assert expected == REGISTRY
    assert get_module("tencent_ses") is tencent_ses and get_module(Provider.UNISENDER) is unisender


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_is_a_plain_function_of_its_own_module(provider: Provider, name: str) -> None:
    module = REGISTRY[provider]
    fn = getattr(module, name)
    assert inspect.isfunction(fn), f"{module.__name__}.{name} is not a plain function"
    assert fn.__module__ == module.__name__


def test_both_sendcloud_editions_run_one_engine_on_their_own_data() -> None:
    assert sendcloud.EDITION.provider is Provider.SENDCLOUD
    assert aurora_sendcloud.EDITION.provider is Provider.AURORA_SENDCLOUD
    assert aurora_sendcloud.EDITION.statuses is aurora_sendcloud.STATUSES
    assert aurora_sendcloud.EDITION.events is aurora_sendcloud.EVENTS


# What worker.config required of each provider before the requirements became data.
SENDCLOUD_LINEAGE = Credentials(
    poll=(Need("credentials", "api_user", "for polling", plain=True), Need("credentials", "api_key", "for polling")),
    webhook=(Need("webhook", "app_key", "to verify webhooks"),),
)
EXPECTED_CREDENTIALS = {
    Provider.ENGAGELAB: SENDCLOUD_LINEAGE,
    Provider.SENDCLOUD: SENDCLOUD_LINEAGE,
    Provider.AURORA_SENDCLOUD: SENDCLOUD_LINEAGE,
    Provider.UNISENDER: Credentials(poll=(Need("credentials", "api_key", "for polling"),),
                                    webhook_key_fallback="api_key"),
    Provider.TENCENT_SES: Credentials(
        poll=(Need("credentials", "secret_id", "for polling", plain=True),
              Need("credentials", "secret_key", "for polling")),
        webhook=(Need("webhook", "path_token", "Tencent does not sign webhooks; an unguessable path protects them",
                      min_length=16),),
    ),
}


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
def test_credentials(provider: Provider) -> None:
    module = REGISTRY[provider]
    expected = EXPECTED_CREDENTIALS[provider]
    assert expected == module.CREDENTIALS


# -- read_answer: one order for every provider --------------------------------------------------


def _coded(doc: Any) -> PollError | None:
    code = doc.get("code") if isinstance(doc, dict) else None
    return {"slow": Throttled("slow"), "auth": FatalConfig("auth"), "wait": Throttled("wait", 60.0)}.get(code)


@pytest.mark.parametrize(("status", "headers", "body", "error", "retry_after"), [
    (429, {"retry-after": "30"}, b'{"code": "auth"}', Throttled, 30),     # 1. HTTP 429 first
    (500, {}, b'{"code": "auth"}', FatalConfig, None),                    # 2. then the body's own code
    (401, {"retry-after": "5"}, b'{"code": "slow"}', Throttled, 5),
    (200, {}, b'{"code": "wait"}', Throttled, 60.0),                       # the provider's default wait
    (200, {"retry-after": "0"}, b'{"code": "wait"}', Throttled, 60.0),
    (200, {"retry-after": "9"}, b'{"code": "wait"}', Throttled, 9),
    (503, {}, b"{}", Retriable, None),                                    # 3. then the HTTP status
    (403, {}, b"{}", FatalConfig, None),
    (404, {}, b"<html/>", BadRequest, None),
    (302, {}, b"{}", Retriable, None),
    (200, {}, b"<html/>", Retriable, None),                               # 4. then a body that is not JSON
])
def test_read_answer_order(status: int, headers: dict[str, str], body: bytes, error: type[PollError],
                           retry_after: float | None) -> None:
    with pytest.raises(error) as caught:
        read_answer(status, headers, body, NOW, _coded)
    if error is Throttled:
        assert caught.value.retry_after == retry_after


def test_read_answer_returns_the_json() -> None:
    assert read_answer(201, {}, b'{"a": [1]}', NOW, _coded) == {"a": [1]}


# A body error code under an HTTP error status, per provider: the body's code wins (except over 429).
BODY_ERRORS = {
    Provider.SENDCLOUD: ({"result": False, "statusCode": 40005}, FatalConfig),
    Provider.AURORA_SENDCLOUD: ({"result": False, "statusCode": 50000}, Throttled),
    Provider.ENGAGELAB: ({"code": 30000, "message": "Authentication failed."}, FatalConfig),
    Provider.UNISENDER: ({"error": "x", "code": "invalid_arg"}, BadRequest),
    Provider.TENCENT_SES: ({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure"}}}, FatalConfig),
}


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
@pytest.mark.parametrize("status", [500, 401])
def test_the_body_code_wins_over_the_http_status(provider: Provider, status: int) -> None:
    doc, error = BODY_ERRORS[provider]
    acct = AccountContext(name="a", provider=provider, base_url="https://x")
    query = PollQuery(email_ids=("1",)) if provider is Provider.UNISENDER else PollQuery()
    module = get_module(provider)
    with pytest.raises(error):
        module.parse_poll_response(acct, query, status, {}, orjson.dumps(doc), NOW)
    with pytest.raises(Throttled):
        module.parse_poll_response(acct, query, 429, {}, orjson.dumps(doc), NOW)


# -- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "kwargs", "expected"), [
    (406, {}, 406), ("406", {}, 406), (True, {}, None), ("4a", {}, None), ("\u0664", {}, None), (4.0, {}, None),
    ("12345", {"max_digits": 5}, 12345), ("123456", {"max_digits": 5}, None), ("1", {"max_digits": 0}, None),
    (1, {"max_digits": 0}, 1),
])
def test_as_int(value: Any, kwargs: dict[str, int], expected: int | None) -> None:
    assert as_int(value, **kwargs) == expected


@pytest.mark.parametrize(("value", "expected"), [("a", "a"), (7, "7"), ("", None), (False, None), (1.5, None)])
def test_as_text(value: Any, expected: str | None) -> None:
    assert as_text(value) == expected


def test_epoch_time_by_default_and_whole() -> None:
    at = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert epoch_time(1700000000) == epoch_time("1700000000") == epoch_time("1700000000000") == at
    assert epoch_time("1700000000.5") == epoch_time(1700000000.5) == at   # accepted, whole seconds kept
    assert epoch_time(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert epoch_time("1700000000", max_digits=13) == at
    for bad in (0, "0", 1.5, "1700000000.5", 10**13, "1" * 14, True, None, -5):
        with pytest.raises(ValueError):
            epoch_time(bad, max_digits=13)
    for bad in ("-1", "1e9", True, None, [1]):
        with pytest.raises((TypeError, ValueError)):
            epoch_time(bad)


def test_local_time_by_default_and_with_a_layout() -> None:
    at = datetime(2024, 1, 2, 2, 0, 5, tzinfo=UTC)
    assert local_time("2024-01-02 10:00:05", CHINA_TZ) == at
    assert local_time("2024-01-02  10:00:05", CHINA_TZ, layout="%Y-%m-%d %H:%M:%S") == at   # strptime's \s+
    assert local_time("1969-12-31 23:00:00", UTC, layout="%Y-%m-%d %H:%M:%S").year == 1969
    for bad in ("2024-01-02  10:00:05", "1969-12-31 23:00:00", "2024-01-02T10:00:05"):
        with pytest.raises(ValueError):
            local_time(bad, CHINA_TZ)
    with pytest.raises(TypeError):
        local_time(1704160805, CHINA_TZ)


@pytest.mark.parametrize(("setting", "expected"), [(None, EventType.SOFT_BOUNCE), (EventType.INVALID, EventType.INVALID)])
def test_resolve(setting: EventType | None, expected: EventType) -> None:
    acct = AccountContext(name="a", provider=Provider.UNISENDER, base_url="x", sender_rejection=setting)
    assert resolve(SenderSide(EventType.SOFT_BOUNCE), acct) is expected
    assert resolve(EventType.DELIVERED, acct) is EventType.DELIVERED
    assert resolve(None, acct) is None
