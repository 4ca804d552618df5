"""Webhook URLs as operators paste them, and bodies as HTTP clients label them, through real aiohttp
(aiohttp's own test server and client) with the fake `_raw` writer of test_receiver."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_receiver import CONFIG, ENV, FORM, NOW, TS_MS, FakeWriter, sendcloud
from worker.webhooks import WebhookReceiver


@pytest.fixture
async def client():
    writer = FakeWriter()
    receiver = WebhookReceiver(CONFIG, writer, clock=lambda: NOW)
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    app.add_routes(receiver.routes())
    async with TestClient(TestServer(app)) as c:
        yield c, writer


async def test_a_trailing_slash_reaches_the_same_account(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc/", data=sendcloud("deliver", "m1$a@x.test"), headers=FORM)
    assert r.status == 200
    [(records, dead)] = writer.writes
    assert len(records) == 1 and dead == []
    token = ENV["T"]
    answers = [(await c.get(path)).status for path in (
        "/webhooks/sendcloud/sc/", f"/webhooks/tencent_ses/tx/{token}/", "/webhooks/tencent_ses/tx/wrong-token/",
        "/webhooks/sendcloud/nobody/", "/webhooks/sendcloud/off/")]
    assert answers == [200, 200, 401, 404, 404]
    assert (await c.head("/webhooks/sendcloud/sc/")).status == 200


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "application/x-www-form-urlencoded; charset=UTF-8"])
async def test_a_signed_json_event_labelled_as_a_form_is_written_not_taken_for_a_url_test(client, content_type):
    # `curl -d` labels any body as a form. Read as one, this JSON had no signature fields: SendCloud's URL
    # test, answered 200 with nothing written (webhook audit 2026-12-06).
    c, writer = client
    token = "j" * 50
    signature = hmac.new(ENV["K"].encode(), (TS_MS + token).encode(), hashlib.sha256).hexdigest()
    body = orjson.dumps({"event": "deliver", "emailId": "m2$b@x.test", "recipient": "b@x.test", "timestamp": TS_MS,
                         "token": token, "signature": signature})
    r = await c.post("/webhooks/sendcloud/sc", data=body, headers={"Content-Type": content_type})
    assert r.status == 200
    [(records, dead)] = writer.writes
    assert dead == [] and len(records) == 1


async def test_an_unsigned_json_body_labelled_as_a_form_is_still_a_url_test(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=b'{"event": "test"}', headers=FORM)
    assert r.status == 200 and writer.writes == []
    r = await c.post("/webhooks/sendcloud/sc", data=b'{"event": "deliver", "emailId": "m3$c@x.test"}', headers=FORM)
    assert r.status == 401 and writer.writes == []   # names an event, carries no signature
