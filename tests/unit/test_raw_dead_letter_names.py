"""A `_raw` record this release cannot read is dead-lettered under the provider and account its
envelope names (when the shard has that account), so that `replay-dead-letters --account` finds it
once a release that reads it runs; a value that is not JSON is kept as bytes, not labelled JSON.
(docs/runbook.md, "Dead letters": `account` is `unknown` only when the input names none we know.)"""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from tests.unit.test_mutants_staging import NOW, records, staging
from worker import raw

# a later release's webhook record (version 2), as it would write it
V2 = orjson.dumps({"v": 2, "kind": "webhook", "provider": "sendcloud", "account": "sc", "received_at": 1793602800000,
                   "record": {"event": "deliver"}})
V2_OTHER = orjson.dumps({"v": 2, "kind": "webhook", "provider": "sendcloud", "account": "not-here",
                         "received_at": 1793602800000, "record": {}})
V2_WRONG_PROVIDER = orjson.dumps({"v": 2, "kind": "webhook", "provider": "unisender", "account": "sc",
                                  "received_at": 1793602800000, "record": {}})
V1_NO_KIND = orjson.dumps({"v": 1, "kind": "nope", "provider": "unisender", "account": "uni", "received_at": 1})
NOT_JSON = b"\x00\xffnot json"


@pytest.mark.parametrize(("value", "expected"), [
    (V2, ("sendcloud", "sc", "unknown_raw_version", "application/json")),
    (V2_OTHER, ("unknown", "unknown", "unknown_raw_version", "application/json")),
    (V2_WRONG_PROVIDER, ("unknown", "unknown", "unknown_raw_version", "application/json")),
    (V1_NO_KIND, ("unisender", "uni", "bad_raw_record", "application/json")),
    (NOT_JSON, ("unknown", "unknown", "bad_raw_record", "application/octet-stream")),
    (b"[1, 2]", ("unknown", "unknown", "bad_raw_record", "application/json")),
])
def test_an_unreadable_raw_record_is_named_by_its_envelope(value, expected) -> None:
    st = staging()
    st.stage_raw(records(value), NOW)
    [letter] = st.batch.dead
    assert (letter.provider, letter.account, letter.reason, letter.content_type) == expected
    assert letter.key == f"{expected[0]}/{expected[1]}".encode()
    assert (letter.part, letter.body) == ("raw", value)


def test_a_poison_record_is_named_by_its_envelope_too() -> None:
    st = staging()
    st.stage_poison(SimpleNamespace(offset=3, value=V2), NOW)
    st.stage_poison(SimpleNamespace(offset=4, value=NOT_JSON), NOW)
    assert [(d.provider, d.account, d.reason, d.content_type) for d in st.batch.dead] == [
        ("sendcloud", "sc", "poison_record", "application/json"),
        ("unknown", "unknown", "poison_record", "application/octet-stream")]
    assert st.batch.raw_offset == 5


def test_named_and_media_type() -> None:
    assert raw.named(V2) == ("sendcloud", "sc")
    assert raw.named(b'{"provider": 1, "account": "sc"}') is None
    assert raw.named(b'{"provider": "sendcloud"}') is None
    assert raw.named(None) is None
    assert raw.media_type(None) == "application/octet-stream"
    assert raw.media_type(b'"x"') == "application/json"
