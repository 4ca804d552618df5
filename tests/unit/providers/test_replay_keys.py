"""`replay_key(req, record)`: what a captured signature would be reused as (worker.replays).
SendCloud and Aurora name one delivery by its HMAC over timestamp + a random token; EngageLab signs
only a timestamp, so its key adds what the record is about; UniSender signs the whole body and
Tencent nothing, so neither has one."""

from __future__ import annotations

import urllib.parse

import pytest

from worker.providers import aurora_sendcloud, engagelab, sendcloud, tencent_ses, unisender
from worker.providers.base import WebhookRequest

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("module", [sendcloud, aurora_sendcloud], ids=["sendcloud", "aurora"])
def test_the_sendcloud_lineage_keys_a_record_by_its_signature(module):
    body = urllib.parse.urlencode({"event": "deliver", "emailId": "m1$a@x.test", "recipient": "a@x.test",
                                   "timestamp": "1652117390000", "token": "t" * 50, "signature": "ab12" * 16}).encode()
    req = WebhookRequest(body=body, content_type=FORM)
    [record] = module.split_webhook(req)
    assert module.replay_key(req, record) == "ab12" * 16
    assert module.replay_key(req, {**record, "signature": "AB12" * 16}) == "ab12" * 16   # verification ignores case
    assert module.replay_key(req, {**record, "signature": ""}) is None
    assert module.replay_key(req, {k: v for k, v in record.items() if k != "signature"}) is None


def test_engagelab_keys_a_record_by_its_signature_email_event_and_time():
    headers = {"x-webhook-signature": "f00d" * 16, "x-webhook-timestamp": "1676615711"}
    status = {"status": {"message_status": "delivered", "status_data": {"email_id": "e1$a@x.test"}}, "itime": 1}
    response = {"response": {"event": "unsubscribe", "response_data": {"email_id": "e2$b@x.test"}}, "itime": 2}
    req = WebhookRequest(body=b"{}", content_type="application/json", headers=headers)
    assert engagelab.replay_key(req, status) == "f00d" * 16 + "|e1$a@x.test|delivered|1"
    assert engagelab.replay_key(req, response) == "f00d" * 16 + "|e2$b@x.test|unsubscribe|2"
    # the same callback with altered content (another sub-status) keeps its key: a replay
    altered = {"status": {"message_status": "delivered", "status_data": {"email_id": "e1$a@x.test", "sub_stat": 406}},
               "itime": 1}
    assert engagelab.replay_key(req, altered) == engagelab.replay_key(req, status)
    # genuine callbacks sent in the same instant differ in email, event or time: other keys
    later = {"status": {"message_status": "delivered", "status_data": {"email_id": "e1$a@x.test"}}, "itime": 9}
    bounced = {"status": {"message_status": "soft_bounce", "status_data": {"email_id": "e1$a@x.test"}}, "itime": 1}
    assert len({engagelab.replay_key(req, r) for r in (status, later, bounced)}) == 3
    upper = WebhookRequest(body=b"{}", content_type="application/json",
                           headers={**headers, "x-webhook-signature": "F00D" * 16})
    assert engagelab.replay_key(upper, status) == engagelab.replay_key(req, status)
    opened = {"response": {"event": "open", "response_data": {"email_id": "e1$a@x.test"}}}
    assert engagelab.replay_key(req, opened) is None                  # never emitted: not keyed
    assert engagelab.replay_key(WebhookRequest(body=b"{}", content_type="application/json"), status) is None


def test_body_signed_and_unsigned_providers_have_no_replay_key():
    req = WebhookRequest(body=b'{"auth": "x"}', content_type="application/json")
    assert unisender.replay_key(req, {"event_name": "email_status"}) is None
    assert tencent_ses.replay_key(req, {"event": "delivered"}) is None
