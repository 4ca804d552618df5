"""The webhook receiver against the real broker: every answer of DESIGN.md section 6."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import secrets
import time
import urllib.parse

import aiohttp
import orjson
import pytest

from tests.conftest import _kafka_script
from tests.integration.harness import InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.test_kafka_faults import metric
from tests.support import validate_event

pytestmark = pytest.mark.integration

APP_KEY, OLD_KEY, TOKEN = "current-app-key", "previous-app-key", "tencent-path-token-0123456789"
OLD_TOKEN = "tencent-old-path-token-987654321"
ENV = {"SC_API": "api", "SC_APP": APP_KEY, "SC_OLD": OLD_KEY, "TC_KEY": "k", "TC_TOKEN": TOKEN, "TC_OLD": OLD_TOKEN}


def accounts() -> list[dict]:
    off = {"enabled": False}
    return [
        {"name": "sc", "provider": "sendcloud", "poll": off,
         "credentials": {"api_user": "u", "api_key_env": "SC_API"},
         "webhook": {"app_key_env": "SC_APP", "previous_app_key_env": "SC_OLD", "replay_window_secs": 600}},
        {"name": "tx", "provider": "tencent_ses", "poll": off,
         "credentials": {"secret_id": "AKID", "secret_key_env": "TC_KEY"}, "webhook": {"path_token_env": "TC_TOKEN", "previous_path_token_env": "TC_OLD"}},
        {"name": "quiet", "provider": "sendcloud", "poll": off, "webhook": {"enabled": False}},
    ]


def sendcloud_form(event: str, email_id: str, key: str = APP_KEY, ts_ms: int | None = None, **extra) -> bytes:
    """A SendCloud webhook as SendCloud signs it: HMAC-SHA256(app key, timestamp + token), hex."""
    timestamp = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    fields = {"event": event, "emailId": email_id, "recipient": "Someone@Example.com", "timestamp": timestamp,
              "token": token, "signature": signature, "apiUser": "u", **extra}
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def worker(kafka_bootstrap, topic_prefix):
    data = worker_config(kafka_bootstrap, topic_prefix, accounts(), http={"max_body_bytes": 4096})
    async with InProcessWorker(data, ENV) as w:
        await wait_ready(w.url)
        async with aiohttp.ClientSession() as session:
            yield w, session


async def post(session, url, body, headers=FORM):
    async with session.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_a_signed_webhook_becomes_one_event(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    url = f"{w.url}/webhooks/sendcloud/sc"
    body = sendcloud_form("invalid", "msg1$someone@example.com", substat="406", substatdesc="address does not exist")
    assert await post(session, url, body) == (200, {"code": 200, "message": "ok"})
    assert (await post(session, url, body))[0] == 200  # the provider's retry: same body again
    records = await read_all(kafka_bootstrap, [f"{topic_prefix}.invalid"], expect=1, quiet_secs=2)
    assert len(records) == 1
    event = orjson.loads(records[0].value)
    validate_event(event)
    assert (event["provider"], event["account"], event["type"], event["source"]) == ("sendcloud", "sc", "invalid", "webhook")
    assert event["recipient"] == "someone@example.com" and event["provider_sub_status"] == "406"


async def test_a_json_event_labelled_as_a_form_at_a_url_with_a_slash_becomes_one_event(worker, kafka_bootstrap,
                                                                                       topic_prefix):
    # `curl -d` labels any body as a form, and an operator may paste the URL with a trailing slash
    # into the console: both were lost (a URL test's 200, or a 404) before 2026-12-06.
    w, session = worker
    timestamp, token = str(int(time.time() * 1000)), secrets.token_hex(25)
    body = orjson.dumps({"event": "invalid", "emailId": "msg9$nine@example.com", "recipient": "nine@example.com",
                         "substat": 406, "message": "550 5.1.1 user unknown", "timestamp": timestamp, "token": token,
                         "signature": hmac.new(APP_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()})
    assert await post(session, f"{w.url}/webhooks/sendcloud/sc/", body) == (200, {"code": 200, "message": "ok"})
    records = await read_all(kafka_bootstrap, [f"{topic_prefix}.invalid"], expect=1, quiet_secs=2)
    assert [orjson.loads(r.value)["email_id"] for r in records] == ["msg9$nine@example.com"]
    async with session.get(f"{w.url}/webhooks/sendcloud/sc/") as r:
        assert r.status == 200


async def test_signature_rotation_replay_and_forgery(worker):
    w, session = worker
    url = f"{w.url}/webhooks/sendcloud/sc"
    assert (await post(session, url, sendcloud_form("deliver", "a$x@y.z", key=OLD_KEY)))[0] == 200
    assert (await post(session, url, sendcloud_form("deliver", "a$x@y.z", key="attacker")))[0] == 401
    stale = int((time.time() - 3600) * 1000)  # older than the 600 s replay window
    assert (await post(session, url, sendcloud_form("deliver", "a$x@y.z", ts_ms=stale)))[0] == 401
    unsigned = urllib.parse.urlencode({"event": "deliver", "emailId": "a", "recipient": "x@y.z"}).encode()
    assert (await post(session, url, unsigned))[0] == 401
    assert (await post(session, url, b"\x00\xff garbage"))[0] == 401  # nothing authentic in it


async def test_routing_answers(worker):
    w, session = worker
    assert (await post(session, f"{w.url}/webhooks/mailgun/sc", b"x"))[0] == 404
    assert (await post(session, f"{w.url}/webhooks/sendcloud/nobody", b"x"))[0] == 404
    assert (await post(session, f"{w.url}/webhooks/sendcloud/quiet", b"x"))[0] == 404  # webhooks disabled
    assert (await post(session, f"{w.url}/webhooks/sendcloud/sc/extra-token", b"x"))[0] == 404
    async with session.get(f"{w.url}/webhooks/sendcloud/sc") as r:
        assert r.status == 200  # providers probe the URL with GET
    big = sendcloud_form("deliver", "a$x@y.z", message="x" * 5000)
    assert (await post(session, f"{w.url}/webhooks/sendcloud/sc", big))[0] == 413


@pytest.mark.parametrize("path", ["/webhooks/sendcloud/nobody", "/webhooks/sendcloud/sc"])
async def test_a_refused_body_is_never_read_the_connection_closes_after_the_answer(worker, path):
    """Edge audit of 2026-12-06: aiohttp read ("lingered over") an unread body for up to 10 s after
    the answer, decoding its Content-Encoding: a 1 MB gzip of 1 GiB posted to any URL cost ~1 s of
    CPU after its 404. Now the connection closes at once, the rest of the body never read: the
    sender sees the close while it still has body to send."""
    w, _ = worker
    bomb_head = gzip.compress(bytes(64 << 20))[:32 << 10]       # the first 32 KB of 64 MiB of zeros
    host, port = w.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     f"Content-Encoding: gzip\r\nContent-Length: {64 << 20}\r\n\r\n".encode() + bomb_head)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] in (b"404", b"413"), status
        rest = await asyncio.wait_for(reader.read(), 5)          # the answer's headers and body, then EOF
        assert b"Connection: close" in rest or b"connection: close" in rest.lower()
    finally:
        writer.close()


async def test_what_the_http_parser_refuses_is_answered_400_and_counted(worker):
    """Edge audit of 2026-12-06: aiohttp's parser answers these 400 before any handler runs, and they
    were counted nowhere (every drop is counted: esw_webhook_requests_total, account unknown)."""
    w, _ = worker
    series = {"provider": "unknown", "account": "unknown", "status": "400"}
    before = await metric(w.url, "esw_webhook_requests_total", **series)
    host, port = w.url.removeprefix("http://").split(":")
    for raw in (b"POST /webhooks/sendcloud/sc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"POST /webhooks/sendcloud/sc HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(raw)
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), 5)).split()[1] == b"400"
        finally:
            writer.close()
    assert await metric(w.url, "esw_webhook_requests_total", **series) == before + 2


async def test_tencent_is_protected_by_its_path_token(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    body = orjson.dumps({"event": "bounce", "email": "b@example.com", "bulkId": "qcloudses-1", "timestamp": int(time.time()),
                         "reason": "550 5.1.1 user unknown", "bounceType": "hard_bounce", "eventid": 3})
    json_headers = {"Content-Type": "application/json"}
    assert (await post(session, f"{w.url}/webhooks/tencent_ses/tx", body, json_headers))[0] == 401
    assert (await post(session, f"{w.url}/webhooks/tencent_ses/tx/wrong-token-xxxxxxxx", body, json_headers))[0] == 401
    assert (await post(session, f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", body, json_headers))[0] == 200
    assert (await post(session, f"{w.url}/webhooks/tencent_ses/tx/{OLD_TOKEN}", body, json_headers))[0] == 200  # rotating
    records = await read_all(kafka_bootstrap, [f"{topic_prefix}.invalid"], expect=1)
    event = orjson.loads(records[0].value)
    assert event["email_id"] == "qcloudses-1:b@example.com"
    assert event["smtp"] == {"code": 550, "enhanced": "5.1.1"}


async def test_authentic_but_unparseable_goes_to_the_dead_letter_topic(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    series = {"account": "tx", "provider": "tencent_ses", "reason": "malformed"}
    before = await metric(w.url, "esw_dead_letters_total", **series)  # the process's registry: earlier tests count too
    garbage = b'{"event": "bounce", "email": '  # truncated JSON, on the token-protected path
    status, _ = await post(session, f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", garbage, {"Content-Type": "application/json"})
    assert status == 200
    no_id = sendcloud_form("invalid", "")  # signed, but no email id to attribute it to
    assert (await post(session, f"{w.url}/webhooks/sendcloud/sc", no_id))[0] == 200
    dead = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], expect=2)
    assert len(dead) == 2
    by_provider = {dict(r.headers)["provider"]: r for r in dead}
    tencent = by_provider[b"tencent_ses"]
    assert tencent.value == garbage  # the raw bytes, untouched
    headers = dict(tencent.headers)
    assert headers["account"] == b"tx" and headers["reason"] == b"malformed" and headers["part"] == b"body"
    assert headers["content-type"] == b"application/json" and headers["received_at"].endswith(b"Z")
    assert dict(by_provider[b"sendcloud"].headers)["part"] == b"record"  # one split record, as JSON
    assert orjson.loads(by_provider[b"sendcloud"].value)["event"] == "invalid"
    assert await metric(w.url, "esw_dead_letters_total", **series) == before + 1
    async with session.get(f"{w.url}/metrics") as r:
        assert "someone@example.com" not in (await r.text()).lower()  # no personal data in metrics



async def test_kafka_down_answers_503_then_200_when_back(tmp_path, topic_prefix):
    script = _kafka_script()
    state = tmp_path / "kafka"
    state.mkdir()
    bootstrap = script.up(state)
    try:
        data = worker_config(bootstrap, topic_prefix, accounts(), http={"ack_timeout_secs": 1.5})
        async with InProcessWorker(data, ENV) as w, aiohttp.ClientSession() as session:
            await wait_ready(w.url)
            url = f"{w.url}/webhooks/sendcloud/sc"
            assert (await post(session, url, sendcloud_form("deliver", "d1$x@y.z")))[0] == 200
            script.down(state)
            # bounded by http.ack_timeout_secs (1.5 s here): an answer, 503, never a hang
            assert (await post(session, url, sendcloud_form("deliver", "d2$x@y.z")))[0] == 503
            script.up(state, fresh=False)
            deadline = time.monotonic() + 60
            status = None
            while time.monotonic() < deadline:
                status = (await post(session, url, sendcloud_form("deliver", "d2$x@y.z")))[0]
                if status == 200:
                    break
                await asyncio.sleep(1)
            assert status == 200
            records = await read_all(bootstrap, [f"{topic_prefix}.delivered"], expect=2, timeout=30)
            assert sorted(orjson.loads(r.value)["email_id"] for r in records) == ["d1$x@y.z", "d2$x@y.z"]
    finally:
        script.down(state)
