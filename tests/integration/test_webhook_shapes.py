"""What the edge audit of 2026-12-06 found, through HTTP, a real broker and the shard: a signed
multipart/form-data body (`curl -F`) was taken for SendCloud's URL test, 200 and nothing written;
now it is one event."""

from __future__ import annotations

import urllib.parse

import aiohttp
import orjson
import pytest

from tests.integration.kafka_utils import read_all
from tests.integration.test_webhooks import sendcloud_form, worker  # noqa: F401 - `worker` is a fixture

pytestmark = pytest.mark.integration


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
