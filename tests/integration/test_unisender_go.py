"""A Unisender Go webhook through the worker's HTTP receiver into the event topics, on a real
broker (worker.providers._unisender_go; before 2026-12-06 it was answered 200 and nothing was
written). The body is signed as Unisender Go signs (the MD5 of the compact JSON with the API key
as `auth`), shaped as anymail's example (see tests/unit/providers/test_unisender_go_events.py)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.support import validate_event
from tests.unit.providers.test_unisender_go_events import KEY, SPAM_BLOCK, USER_UNKNOWN, event, signed

pytestmark = pytest.mark.integration

ACCOUNTS = [{"name": "go", "provider": "unisender", "poll": {"enabled": False},
             "credentials": {"api_key_env": "GO_KEY"}}]


async def test_go_status_events_become_events_and_the_rest_is_ignored(kafka_bootstrap, topic_prefix):
    data = worker_config(kafka_bootstrap, topic_prefix, ACCOUNTS)
    body = signed([event("delivered", email="a@example.com"), event("hard_bounced", USER_UNKNOWN, email="b@example.com"),
                   event("opened", email="a@example.com"), SPAM_BLOCK])
    async with InProcessWorker(data, {"GO_KEY": KEY}) as w:
        await wait_ready(w.url)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{w.url}/webhooks/unisender/go", data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200
            async with session.post(f"{w.url}/webhooks/unisender/go", data=body.replace(b'"auth":"', b'"auth":"0'),
                                    headers={"Content-Type": "application/json"}) as r:
                assert r.status == 401       # the same signature check as classic's
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered", f"{topic_prefix}.invalid"],
                                 expect=2, quiet_secs=2)
    events = sorted((orjson.loads(r.value) for r in records), key=lambda e: e["type"])
    for e in events:
        validate_event(e)
    assert [(e["type"], e["email_id"], e["recipient"], e["occurred_at"], e["message_id"]) for e in events] == [
        ("delivered", "1a3Q2V-0000OZ-S0:a@example.com", "a@example.com", "2015-11-30T15:09:42Z", "1a3Q2V-0000OZ-S0"),
        ("invalid", "1a3Q2V-0000OZ-S0:b@example.com", "b@example.com", "2015-11-30T15:09:42Z", "1a3Q2V-0000OZ-S0"),
    ]
    assert events[1]["reason"] == "unknown_user" and events[1]["provider_sub_status"] == "err_user_unknown"
