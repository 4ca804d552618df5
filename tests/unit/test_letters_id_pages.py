"""The replay of a polled page's dead letter: a date-window page is written back to `_raw`; a
UniSender checkEmail page, which carries no address and no time and was read against the id
tracker's state when it was fetched, is refused as still unusable (docs/runbook.md, "Replay")
instead of being written back for the shard to dead-letter again."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson

from tests.unit.test_spread import account, config
from worker import raw
from worker.letters import Letter, resolve
from worker.model import Provider
from worker.providers.base import PollQuery

AT = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)


def letter(record: raw.PollPageRecord) -> Letter:
    return Letter(provider=record.provider.value, account=record.account, reason="malformed", part="raw",
                  content_type="application/json", received_at=AT, request_headers={}, value=raw.encode(record))


def test_a_unisender_page_is_not_replayed() -> None:
    cfg = config({"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}})
    body = orjson.dumps({"result": {"statuses": [{"id": "101", "status": "ok_delivered"}, {"id": 7}]}})
    page = raw.PollPageRecord(Provider.UNISENDER, "uni", AT, PollQuery(email_ids=("101",)), 200, {}, body)
    outcome = resolve(cfg, letter(page))
    assert (outcome.records, outcome.unusable) == ((), ("malformed",))


def test_a_sendcloud_page_is_replayed() -> None:
    cfg = config(account(name="sc"))
    body = orjson.dumps({"result": True, "statusCode": 200, "message": "ok", "info": {"total": "1", "voListSize": 1,
        "voList": [{"emailId": "1793606399000_15_1_1.sc-1-inbound0$dave@126.com", "status": "送达",
                    "recipients": "dave@126.com", "requestTime": "2026-11-02 14:58:01",
                    "modifiedTime": "2026-11-02 14:59:03"}]}})
    page = raw.PollPageRecord(Provider.SENDCLOUD, "sc", AT, PollQuery(send_date=date(2026, 11, 2)), 200, {}, body)
    outcome = resolve(cfg, letter(page))
    assert outcome.unusable == ()
    [admitted] = outcome.records
    assert admitted.value == raw.encode(page)
