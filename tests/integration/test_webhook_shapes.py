"""What the edge audit of 2026-12-06 found, through HTTP, a real broker and the shard: a SendCloud
webhook signed by a clock an hour ahead of ours was answered 401 and nothing kept (now: 200, and
the shard dead-letters its status as future_time, to replay); a signed multipart/form-data body
(`curl -F`) was taken for a URL test, 200 and nothing written (now: one event); a body naming a
signature the worker cannot read was 200 and nothing written (now: 401)."""

from __future__ import annotations

import time
import urllib.parse

import aiohttp
import orjson
import pytest

from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import post, sendcloud_form, worker  # noqa: F401 - `worker` is a fixture

pytestmark = pytest.mark.integration


async def test_a_signature_an_hour_ahead_is_kept_as_a_future_time_dead_letter(worker, kafka_bootstrap,  # noqa: F811
                                                                               topic_prefix):
    w, session = worker
    body = sendcloud_form("deliver", "ahead1$ahead@example.com", ts_ms=int((time.time() + 3600) * 1000))
    assert await post(session, f"{w.url}/webhooks/sendcloud/sc", body) == (200, {"code": 200, "message": "ok"})
    [letter] = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=1, quiet_secs=2, timeout=30)
    headers = dict(letter.headers)
    assert (headers["reason"], headers["account"]) == (b"future_time", b"sc")
    assert await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], quiet_secs=1) == []


async def test_a_signed_multipart_body_becomes_one_event(worker, kafka_bootstrap, topic_prefix):  # noqa: F811
    w, session = worker
    form = aiohttp.MultipartWriter("form-data")            # what `curl -F` sends
    for name, value in urllib.parse.parse_qsl(sendcloud_form("deliver", "mp1$multi@example.com").decode()):
        form.append(value).set_content_disposition("form-data", name=name)
    async with session.post(f"{w.url}/webhooks/sendcloud/sc", data=form) as r:
        assert r.status == 200
        assert r.request_info.headers.get("Content-Type", "").startswith("multipart/form-data")
    [event] = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1, quiet_secs=2, timeout=30)
    assert orjson.loads(event.value)["email_id"] == "mp1$multi@example.com"


async def test_a_signature_that_cannot_be_read_is_401(worker):  # noqa: F811
    w, session = worker
    inner = dict(urllib.parse.parse_qsl(sendcloud_form("deliver", "wr1$wrapped@example.com").decode()))
    status, _ = await post(session, f"{w.url}/webhooks/sendcloud/sc", orjson.dumps({"data": inner}),
                           {"Content-Type": "application/json"})
    assert status == 401
