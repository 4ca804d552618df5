from datetime import UTC, datetime, timedelta, timezone

import attrs
import jsonschema
import orjson
import pytest

from tests.support import validate_event
from worker.config import load_schema
from worker.model import (
    EventType,
    Observation,
    Provider,
    Reason,
    Scope,
    Smtp,
    Source,
    StatusEvent,
    epoch_ms,
    make_event_id,
    rfc3339,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _schema_enum(prop: str) -> set:
    return {v for v in load_schema("status-event.v1.json")["properties"][prop]["enum"] if v is not None}


@pytest.mark.parametrize(("prop", "enum"), [("type", EventType), ("provider", Provider), ("reason", Reason), ("source", Source),
                                            ("scope", Scope)])
def test_python_enums_and_schema_enums_are_identical(prop, enum):
    assert _schema_enum(prop) == {m.value for m in enum}


def test_config_schema_provider_enum_matches():
    schema = load_schema("config.v1.json")
    providers = schema["properties"]["accounts"]["items"]["properties"]["provider"]["enum"]
    assert set(providers) == {p.value for p in Provider}
    assert set(load_schema("sent-message.v1.json")["properties"]["provider"]["enum"]) == {p.value for p in Provider}


def _event(type_=EventType.INVALID, occurred=T0, scope=Scope.RECIPIENT, **kw) -> StatusEvent:
    # 550 5.1.1: about the recipient (issue 13: an invalid must say so; the schema refuses an
    # invalid whose scope is unknown). A delivery's event carries no scope whatever is given.
    obs = Observation(
        email_id="1676615711309_104117_18546_8821.sc-10_43_7_16-inbound0$User@Example.com",
        recipient="User@Example.com", type=type_, reason=Reason.UNKNOWN_USER, occurred_at=occurred, scope=scope,
        provider_status="无效邮件", provider_sub_status="406", provider_message="550 5.1.1 user unknown",
        smtp=Smtp(550, "5.1.1"), sent_at=T0 - timedelta(seconds=9), raw={"emailId": "x"}, **kw,
    )
    return StatusEvent.from_observation(obs, provider=Provider.SENDCLOUD, account="cn-main",
                                        source=Source.POLL, observed_at=T0 + timedelta(seconds=30))


@pytest.mark.parametrize("type_", list(EventType))
def test_every_type_encodes_to_a_schema_valid_event(type_):
    event = _event(type_)
    encoded = orjson.loads(event.encode())
    validate_event(encoded)
    assert encoded["permanent"] is (type_ in (EventType.INVALID, EventType.COMPLAINT, EventType.UNSUBSCRIBED))
    assert encoded["recipient"] == "user@example.com"
    assert encoded["occurred_at"] == "2024-05-01T12:00:00Z"
    assert encoded["raw"] is None  # only with emit_raw
    assert encoded["scope"] == (None if type_ is EventType.DELIVERED else "recipient")
    assert encoded["final"] is True  # not a soft bounce the provider is retrying


def test_round_trip_is_lossless():
    event = _event(occurred=T0.replace(microsecond=325000))
    assert StatusEvent.decode(event.encode()) == event


def test_emit_raw_copies_the_provider_record():
    obs = Observation(email_id="e", recipient="a@b.c", type=EventType.DELIVERED, reason=None,
                      occurred_at=T0, provider_status="1", raw={"k": "v"})
    event = StatusEvent.from_observation(obs, provider=Provider.ENGAGELAB, account="a", source=Source.WEBHOOK,
                                        observed_at=T0, emit_raw=True)
    assert event.to_dict()["raw"] == {"k": "v"}


def test_event_id_is_deterministic_and_sensitive_to_each_part():
    base = ("sendcloud", "cn-main", "id1", "delivered", T0)
    first = make_event_id(*base)
    assert first == make_event_id(*base)
    assert len(first) == 32
    variants = [
        ("engagelab", *base[1:]), (base[0], "other", *base[2:]), (*base[:2], "id2", *base[3:]),
        (*base[:3], "invalid", base[4]), (*base[:4], T0 + timedelta(milliseconds=1)),
    ]
    assert len({make_event_id(*v) for v in variants} | {first}) == len(variants) + 1


def test_event_id_ignores_the_zone_the_time_was_written_in():
    china = timezone(timedelta(hours=8))
    assert make_event_id("p", "a", "e", "t", T0) == make_event_id("p", "a", "e", "t", T0.astimezone(china))


def test_epoch_ms_is_exact_for_milliseconds():
    t = datetime.fromtimestamp(1676615711, tz=UTC).replace(microsecond=325000)
    assert epoch_ms(t) == 1676615711325


@pytest.mark.parametrize(("when", "ms"), [
    # worked by hand: days * 86,400,000 + seconds * 1,000 + whole milliseconds, rounded down
    (datetime(1970, 1, 1, tzinfo=UTC), 0),
    (datetime(1970, 1, 2, 0, 0, 1, 999_999, tzinfo=UTC), 86_401_999),
    (datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC), -1),     # -0.5 ms: down, not to 0
    (datetime(1969, 12, 31, 23, 59, 58, tzinfo=UTC), -2_000),
    (datetime(2024, 1, 1, 8, 0, 0, 7_000, tzinfo=timezone(timedelta(hours=8))), 1_704_067_200_007),
    (datetime(1, 1, 1, tzinfo=UTC), -62_135_596_800_000),
])
def test_epoch_ms_of_hand_worked_times(when, ms):
    assert epoch_ms(when) == ms


def test_to_dict_holds_plain_json_types():
    d = _event().to_dict()
    assert [type(d[k]) for k in ("type", "provider", "source", "reason", "scope")] == [str] * 5
    assert (d["type"], d["provider"], d["source"]) == ("invalid", "sendcloud", "poll")


def test_rfc3339_is_utc_with_z():
    china = timezone(timedelta(hours=8))
    assert rfc3339(datetime(2022, 11, 10, 15, 39, 1, tzinfo=china)) == "2022-11-10T07:39:01Z"
    assert rfc3339(T0.replace(microsecond=5000)) == "2024-05-01T12:00:00.005Z"
    assert rfc3339(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05Z"


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        rfc3339(datetime(2024, 1, 1))


def test_headers_and_key():
    event = _event()
    headers = dict(event.headers)
    assert headers == {"event_type": b"invalid", "provider": b"sendcloud", "event_id": event.event_id.encode(),
                       "schema": b"status-event/v1", "content-type": b"application/json"}
    assert event.key == b"user@example.com"


def test_schema_rejects_extra_fields_and_bad_enums():
    encoded = orjson.loads(_event().encode())
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**encoded, "extra": 1})
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**encoded, "type": "bounced"})
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**encoded, "permanent": False})  # invalid is permanent
    with pytest.raises(jsonschema.ValidationError):
        validate_event({**encoded, "occurred_at": "2024-05-01T20:00:00+08:00"})  # UTC only


def test_naive_to_utc_reads_the_provider_zone_like_strptime_did():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from worker.providers.base import CHINA_TZ, naive_to_utc

    assert naive_to_utc("2016-10-18 09:32:08", CHINA_TZ) == datetime(2016, 10, 18, 1, 32, 8, tzinfo=UTC)
    assert naive_to_utc("2016-1-8 9:3:2", CHINA_TZ) == datetime(2016, 1, 8, 1, 3, 2, tzinfo=UTC)
    for bad in ("2016-10-18T09:32:08", "2016-02-30 00:00:00", "2016-10-18 09:32", " 2016-10-18 09:32:08", "２０１６-10-18 09:32:08"):
        with pytest.raises(ValueError):
            naive_to_utc(bad, CHINA_TZ)

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.text(alphabet="0123456789-: T", max_size=22))
    def same_as_strptime(text):
        try:
            expected = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ).astimezone(UTC)
        except ValueError:
            expected = None
        try:
            got = naive_to_utc(text, CHINA_TZ)
        except ValueError:
            got = None
        assert got == expected

    same_as_strptime()


def test_message_texts_are_cut_at_their_cap_and_oversized_ids_are_flagged():
    from worker.model import EventType as ET
    from worker.model import Observation, Provider, Source, StatusEvent

    at = datetime(2026, 11, 2, tzinfo=UTC)
    obs = Observation(email_id="e" * 512, recipient="r" * 320, type=ET.INVALID, reason=None, occurred_at=at,
                      provider_status="s" * 128, provider_message="m" * 5_000)
    assert not obs.oversized                     # exactly at the caps: 512 id, 320 address, 128 status
    event = StatusEvent.from_observation(obs, provider=Provider.SENDCLOUD, account="a", source=Source.POLL,
                                         observed_at=at)
    assert event.provider_message == "m" * 2_000
    for field, value in (("email_id", "e" * 513), ("recipient", "r" * 321), ("message_id", "m" * 513),
                         ("provider_status", "s" * 129), ("provider_sub_status", "4" * 129)):
        assert attrs.evolve(obs, **{field: value}).oversized, field
