"""The webhook receiver through its seam: a fake `_raw` writer in place of Kafka, real aiohttp in
front (aiohttp's own test server and client). Answers and what goes to `_raw` / dead letters."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import urllib.parse
from datetime import UTC, datetime

import attrs
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError

from tests.integration.harness import worker_config
from worker import metrics, raw
from worker.config import parse_config
from worker.model import Provider
from worker.raw import WebhookRecord
from worker.webhooks import WebhookReceiver

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
TS_MS = "1793606400000"      # NOW in epoch milliseconds
ENV = {"K": "sendcloud-app-key", "E": "engagelab-secret", "T": "tencent-path-token-0123456789"}
CONFIG = parse_config(worker_config("127.0.0.1:9", "p", [
    {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"app_key_env": "K"}},
    {"name": "el", "provider": "engagelab", "poll": {"enabled": False}, "webhook": {"app_key_env": "E"}},
    {"name": "tx", "provider": "tencent_ses", "poll": {"enabled": False}, "webhook": {"path_token_env": "T"}},
    {"name": "off", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"enabled": False}},
], http={"max_body_bytes": 2048, "ack_timeout_secs": 0.3}), ENV)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@attrs.define
class FakeWriter:
    fail: BaseException | None = None
    delay: float = 0.0
    writes: list = attrs.field(factory=list)
    bounds: list = attrs.field(factory=list)

    async def write(self, records=(), dead=(), within=None):
        self.bounds.append(within)
        async with asyncio.timeout(within):     # the bound the real writer keeps (worker.intake.Deadlines)
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        for letter in dead:
            letter.headers                      # what the real writer sends: must encode whatever came in
        self.writes.append((list(records), list(dead)))


@pytest.fixture
async def client():
    writer = FakeWriter()
    receiver = WebhookReceiver(CONFIG, writer, clock=lambda: NOW)
    app = web.Application(client_max_size=CONFIG.http.max_body_bytes)
    app.add_routes(receiver.routes())
    async with TestClient(TestServer(app)) as c:
        yield c, writer


def sendcloud(event: str, email_id: str, key: str = ENV["K"], **extra: str) -> bytes:
    token = "t" * 50
    sig = hmac.new(key.encode(), (TS_MS + token).encode(), hashlib.sha256).hexdigest()
    return urllib.parse.urlencode({"event": event, "emailId": email_id, "recipient": "A@x.test", "timestamp": TS_MS,
                                   "token": token, "signature": sig, **extra}).encode()


async def test_a_signed_webhook_goes_to_raw_and_gets_200(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m1$a@x.test"), headers=FORM)
    assert r.status == 200 and await r.json() == {"code": 200, "message": "ok"}
    [(records, dead)] = writer.writes
    assert dead == [] and len(records) == 1
    record = records[0].record            # admitted: encoded once, as it goes to _raw
    assert isinstance(record, WebhookRecord) and raw.decode(records[0].value) == record
    assert (record.provider, record.account, record.received_at) == (Provider.SENDCLOUD, "sc", NOW)
    assert record.record["emailId"] == "m1$a@x.test" and record.record["event"] == "deliver"


@pytest.mark.parametrize(("path", "status"), [
    ("/webhooks/mailgun/sc", 404),
    ("/webhooks/sendcloud/nobody", 404),
    ("/webhooks/sendcloud/off", 404),                         # webhooks disabled for the account
    ("/webhooks/sendcloud/sc/extra-token", 404),              # a path token where none is configured
    ("/webhooks/tencent_ses/tx", 401),                        # token missing
    ("/webhooks/tencent_ses/tx/tencent-path-token-012345678", 401),   # one character short
    ("/webhooks/tencent_ses/tx/tencent-path-token-0123456789X", 401),
])
async def test_unknown_routes_and_wrong_tokens(client, path, status):
    c, writer = client
    r = await c.post(path, data=b'{"event": "delivered"}', headers={"Content-Type": "application/json"})
    assert r.status == status and writer.writes == []


async def test_tencent_with_its_token_is_accepted(client):
    c, writer = client
    body = orjson.dumps({"event": "delivered", "email": "a@x.test", "bulkId": "b1", "timestamp": 1793606400})
    r = await c.post(f"/webhooks/tencent_ses/tx/{ENV['T']}", data=body, headers={"Content-Type": "application/json"})
    assert r.status == 200 and len(writer.writes[0][0]) == 1


async def test_a_bad_signature_is_401_and_nothing_is_written(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m1$a@x.test", key="other"), headers=FORM)
    assert r.status == 401 and writer.writes == []


async def test_bodies_over_the_limit_are_413(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=b"x" * 3000, headers=FORM)
    assert r.status == 413

    async def chunks():                                       # no Content-Length: counted as it streams
        for _ in range(5):
            yield b"y" * 1000

    r = await c.post("/webhooks/sendcloud/sc", data=chunks(), headers=FORM)
    assert r.status == 413 and writer.writes == []


async def test_authentic_but_unusable_input_is_dead_lettered_and_answered_200(client):
    c, writer = client
    # a signed record whose event is unknown: the record alone is dead-lettered
    r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("teleport", "m1$a@x.test"), headers=FORM)
    assert r.status == 200
    [(records, [letter])] = writer.writes
    assert records == [] and (letter.reason, letter.part, letter.source) == ("malformed", "record", "webhook")
    assert orjson.loads(letter.body)["event"] == "teleport"
    # EngageLab: a signed body that is not a callback: the whole body, with its signed headers
    body = b'{"nothing": "here"}'
    sig = hmac.new(ENV["E"].encode(), TS_MS.encode(), hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-WebHook-Timestamp": TS_MS, "X-WebHook-Signature": sig}
    r = await c.post("/webhooks/engagelab/el", data=body, headers=headers)
    assert r.status == 200
    [letter] = writer.writes[1][1]
    assert (letter.part, letter.body, letter.content_type) == ("body", body, "application/json")
    assert dict(letter.request_headers) == {"x-webhook-timestamp": TS_MS.encode(), "x-webhook-signature": sig.encode()}


@pytest.mark.parametrize(("fail", "delay", "status"), [
    (None, 1.0, 503),                                        # not acknowledged within ack_timeout_secs
    (KafkaConnectionError(), 0.0, 503),
    (RuntimeError("bug"), 0.0, 500),
])
async def test_kafka_trouble_is_503_and_bugs_are_500(client, fail, delay, status):
    c, writer = client
    writer.fail, writer.delay = fail, delay
    before = metrics.WEBHOOK_REQUESTS.labels("sendcloud", "sc", str(status))._value.get()
    r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m1$a@x.test"), headers=FORM)
    assert r.status == status
    assert metrics.WEBHOOK_REQUESTS.labels("sendcloud", "sc", str(status))._value.get() == before + 1
    assert writer.bounds == [0.3]        # the write is bounded by http.ack_timeout_secs


async def test_a_write_is_bounded_by_the_ack_timeout_also_with_dead_letters(client):
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=sendcloud("teleport", "m1$a@x.test"), headers=FORM)
    assert r.status == 200 and writer.writes[0][1] and writer.bounds == [0.3]   # unknown event: a dead letter


async def test_get_probes_answer_200_for_known_accounts(client):
    c, _ = client
    assert (await c.get("/webhooks/sendcloud/sc")).status == 200
    assert (await c.get("/webhooks/sendcloud/nobody")).status == 404


# -- the bounded edge (issue 11) -------------------------------------------------------------------

TIGHT = parse_config(worker_config("127.0.0.1:9", "p", [
    {"name": "tx", "provider": "tencent_ses", "poll": {"enabled": False}, "webhook": {"path_token_env": "T"}},
    {"name": "el", "provider": "engagelab", "poll": {"enabled": False}, "webhook": {"app_key_env": "E"}},
], http={"max_body_bytes": 2_000_000, "body_read_timeout_secs": 0.5, "max_records_per_body": 3,
         "max_concurrent_requests": 2, "max_inflight_body_bytes": 1_048_576}), ENV)
TX_URL = f"/webhooks/tencent_ses/tx/{ENV['T']}"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def tight():
    writer = FakeWriter()
    app = web.Application(client_max_size=TIGHT.http.max_body_bytes)
    app.add_routes(WebhookReceiver(TIGHT, writer, clock=lambda: NOW).routes())
    async with TestClient(TestServer(app)) as c:
        yield c, writer


def tencent(**fields) -> dict:
    return {"event": "delivered", "email": "a@x.test", "bulkId": "b1", "timestamp": 1793606400, **fields}


async def stalled(first: bytes, secs: float):
    yield first
    await asyncio.sleep(secs)
    yield b"}"


async def test_a_body_that_does_not_arrive_in_time_is_408(tight):
    c, writer = tight
    r = await c.post(TX_URL, data=stalled(b'{"event": "delivered"', 3.0), headers=JSON)
    assert r.status == 408 and writer.writes == []


async def test_a_fan_out_body_is_one_dead_letter(tight):
    c, writer = tight
    body = b"[" + b",".join([b"{}"] * 50_000) + b"]"
    r = await c.post(TX_URL, data=body, headers=JSON)
    assert r.status == 200
    [(records, [letter])] = writer.writes
    assert records == [] and (letter.reason, letter.part, letter.body) == ("too_many_records", "body", body)
    r = await c.post("/webhooks/engagelab/el", data=body, headers={**JSON, "X-WebHook-Timestamp": TS_MS,
                     "X-WebHook-Signature": hmac.new(ENV["E"].encode(), TS_MS.encode(), hashlib.sha256).hexdigest()})
    assert r.status == 200 and [d.reason for d in writer.writes[1][1]] in (["malformed"], ["too_many_records"])


async def test_oversized_fields_and_records_are_dead_lettered_not_written(tight):
    c, writer = tight
    huge = "b" * 600_000                                          # finding 1: a 600 KB bulkId
    long = "b" * 2_000                                            # over the id cap, under the record cap
    body = orjson.dumps([tencent(bulkId=huge), tencent(bulkId=long), tencent()])
    r = await c.post(TX_URL, data=body, headers=JSON)
    assert r.status == 200
    [(records, dead)] = writer.writes
    assert [(d.reason, d.part) for d in dead] == [("record_too_large", "record"), ("field_too_long", "record")]
    assert orjson.loads(dead[0].body)["bulkId"] == huge and orjson.loads(dead[1].body)["bulkId"] == long
    assert [a.record.record["bulkId"] for a in records] == ["b1"]


async def test_json_too_deep_to_encode_is_dead_lettered_whole_not_500(tight):
    c, writer = tight
    deep: dict = {}
    node = deep
    for _ in range(400):
        node["x"] = {}
        node = node["x"]
    body = orjson.dumps(tencent(reason="x")).replace(b'"reason":"x"', b'"reason":' + b'{"x":' * 400 + b"{}" + b"}" * 400)
    r = await c.post(TX_URL, data=body, headers=JSON)
    assert r.status == 200
    [(records, [letter])] = writer.writes
    assert records == [] and (letter.reason, letter.part, letter.body) == ("malformed", "body", body)


async def test_a_content_type_that_is_not_utf8_is_kept_as_received_not_answered_500(tight):
    c, writer = tight
    body = b"not json at all"
    reader, conn = await asyncio.open_connection(c.server.host, c.server.port)
    conn.write(f"POST {TX_URL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
               + b"Content-Type: application/json\xe9\r\n"          # a byte that is not UTF-8
               + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await conn.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    conn.close()
    assert status_line.split()[1] == b"200"
    [(_, [letter])] = writer.writes
    assert letter.reason == "malformed" and dict(letter.headers)["content-type"] == b"application/json\xe9"


async def test_a_client_that_goes_away_mid_body_is_not_a_500(tight):
    c, _ = tight
    before = {s: metrics.WEBHOOK_REQUESTS.labels("tencent_ses", "tx", s)._value.get() for s in ("400", "500")}
    reader, writer = await asyncio.open_connection(c.server.host, c.server.port)
    writer.write(f"POST {TX_URL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 5000\r\n\r\n{{\"event\": ".encode())
    await writer.drain()
    writer.close()                                            # gone after 11 of 5,000 bytes
    deadline = asyncio.get_running_loop().time() + 10
    while metrics.WEBHOOK_REQUESTS.labels("tencent_ses", "tx", "400")._value.get() == before["400"]:
        assert asyncio.get_running_loop().time() < deadline, "the abandoned request was never counted"
        await asyncio.sleep(0.05)
    assert metrics.WEBHOOK_REQUESTS.labels("tencent_ses", "tx", "500")._value.get() == before["500"]


async def test_a_200_is_logged_at_debug_level_and_any_other_answer_at_info(client, caplog):
    c, _ = client
    caplog.set_level(logging.INFO, logger="worker.webhooks")
    assert (await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m1$a@x.test"), headers=FORM)).status == 200
    assert [r for r in caplog.records if r.name == "worker.webhooks"] == []
    assert (await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m1$a@x.test", key="forged"),
                         headers=FORM)).status == 401
    [line] = [r for r in caplog.records if r.name == "worker.webhooks"]
    assert (line.levelno, line.getMessage(), line.status, line.account) == (logging.INFO, "webhook", 401, "sc")
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="worker.webhooks")
    assert (await c.post("/webhooks/sendcloud/sc", data=sendcloud("deliver", "m2$a@x.test"), headers=FORM)).status == 200
    [line] = [r for r in caplog.records if r.name == "worker.webhooks"]
    assert (line.levelno, line.status, line.records) == (logging.DEBUG, 200, 1)


# -- what outside evidence showed real traffic does (2026-12-06 audit; tests/fixtures/PUBLIC_SOURCES.md)


def engagelab_headers(ts: str = TS_MS) -> dict:
    sig = hmac.new(ENV["E"].encode(), ts.encode(), hashlib.sha256).hexdigest()
    return {**JSON, "X-WebHook-Timestamp": ts, "X-WebHook-Signature": sig}


@pytest.mark.parametrize(("body", "headers"), [
    (b"", {}),
    (b"{}", {"Content-Type": "application/json"}),
    (b'{"test": "url"}', {"Content-Type": "application/json"}),
    (b"foo=bar", FORM),
])
async def test_sendclouds_unsigned_url_test_post_gets_200_and_writes_nothing(client, body, headers):
    """SendCloud tests a webhook URL when it is configured: GET and POST must answer 200
    (PROVIDERS.md 2.5). An unsigned POST naming no event is that test, not a webhook."""
    c, writer = client
    r = await c.post("/webhooks/sendcloud/sc", data=body, headers=headers)
    assert r.status == 200 and writer.writes == []


async def test_an_unsigned_post_naming_an_event_is_still_refused(client):
    c, writer = client
    body = urllib.parse.urlencode({"event": "deliver", "emailId": "m1$a@x.test", "recipient": "a@x.test"}).encode()
    r = await c.post("/webhooks/sendcloud/sc", data=body, headers=FORM)
    assert r.status == 401 and writer.writes == []


async def test_an_engagelab_batch_with_one_callback_of_an_unknown_shape_loses_only_that_one(client):
    c, writer = client
    good = {"server": "email", "itime": int(TS_MS), "to": "a@x.test",
            "status": {"message_status": "delivered", "status_data": {"email_id": "m10$a@x.test"}}}
    odd = {"server": "email", "itime": int(TS_MS), "nothing": "here"}
    r = await c.post("/webhooks/engagelab/el", data=orjson.dumps([good, odd]), headers=engagelab_headers())
    assert r.status == 200
    [(records, [letter])] = writer.writes
    assert [a.record.record for a in records] == [good]
    assert (letter.reason, letter.part, orjson.loads(letter.body)) == ("malformed", "record", odd)


async def test_an_inbound_mail_over_the_record_cap_is_ignored_not_dead_lettered(tight):
    """An EngageLab `route` (inbound mail) carries no status: however big, it is dropped and
    counted, as an open is; it used to be dead-lettered as record_too_large (mail content in the
    dead-letter topic)."""
    c, writer = tight
    route = {"server": "email", "itime": int(TS_MS), "to": "a@x.test",
             "response": {"event": "route", "response_data": {"email_id": "m11$a@x.test", "content": "x" * 300_000}}}
    before = metrics.IGNORED.labels("engagelab", "el")._value.get()
    r = await c.post("/webhooks/engagelab/el", data=orjson.dumps(route), headers=engagelab_headers())
    assert r.status == 200 and writer.writes == []
    assert metrics.IGNORED.labels("engagelab", "el")._value.get() == before + 1


async def test_tencent_opens_and_clicks_are_dropped_at_the_edge(client):
    """Tencent opens, clicks and `processed` carry no status: counted as ignored, never written to
    `_raw`, and an open without its bulkId is not dead-lettered (nothing of it would be kept)."""
    c, writer = client
    before = metrics.IGNORED.labels("tencent_ses", "tx")._value.get()
    body = orjson.dumps([{"event": "open", "email": "a@x.test", "bulkId": "b1", "timestamp": 1793606400},
                         {"event": "click", "email": "a@x.test", "bulkId": "b1", "timestamp": 1793606400,
                          "link": "https://x.test"},
                         {"event": "processed", "email": "a@x.test", "timestamp": 1793606400}])
    r = await c.post(f"/webhooks/tencent_ses/tx/{ENV['T']}", data=body, headers=JSON)
    assert r.status == 200 and writer.writes == []
    assert metrics.IGNORED.labels("tencent_ses", "tx")._value.get() == before + 3


async def test_a_signed_form_with_a_gbk_field_is_dead_lettered_whole_with_200(client):
    c, writer = client
    token = "t" * 50
    sig = hmac.new(ENV["K"].encode(), (TS_MS + token).encode(), hashlib.sha256).hexdigest()
    body = (b"event=deliver&emailId=m1%24a%40x.test&subject=" + "退信".encode("gbk")
            + f"&timestamp={TS_MS}&token={token}&signature={sig}".encode())
    r = await c.post("/webhooks/sendcloud/sc", data=body, headers=FORM)
    assert r.status == 200
    [([], [letter])] = writer.writes
    assert (letter.reason, letter.part, letter.body) == ("malformed", "body", body)


async def test_a_body_whose_content_encoding_does_not_decode_is_400_not_500(client):
    c, writer = client
    import gzip
    good = gzip.compress(sendcloud("deliver", "m1$a@x.test"))
    r = await c.post("/webhooks/sendcloud/sc", data=good, headers={**FORM, "Content-Encoding": "gzip"})
    assert r.status == 200 and len(writer.writes) == 1            # a gzip body that decodes is read as usual
    r = await c.post("/webhooks/sendcloud/sc", data=b"\x1f\x8b\x08\x00not gzip at all",
                     headers={**FORM, "Content-Encoding": "gzip"})
    assert r.status == 400 and len(writer.writes) == 1


async def test_a_record_whose_json_outgrows_any_body_is_dead_lettered_as_the_body():
    """Edge audit of 2026-12-06: a form field of %01 is 3 bytes in the body and 6 in JSON (\\u0001), so a
    record over the record cap could be dead-lettered as JSON twice the body's size: at the documented
    4 MiB body cap an 8 MiB dead letter Kafka refused (503, readiness red, nothing kept). The body,
    within max_body_bytes, is kept whole instead."""
    roomy = parse_config(worker_config("127.0.0.1:9", "p", [
        {"name": "sc", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"app_key_env": "K"}},
    ], http={"max_body_bytes": 1_000_000}), ENV)
    writer = FakeWriter()
    app = web.Application(client_max_size=roomy.http.max_body_bytes)
    app.add_routes(WebhookReceiver(roomy, writer, clock=lambda: NOW).routes())
    body = sendcloud("deliver", "m1$a@x.test") + b"&message=" + b"%01" * 300_000     # 900 KB; its JSON 1.8 MB
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/webhooks/sendcloud/sc", data=body, headers=FORM)
        assert r.status == 200
    [(records, [letter])] = writer.writes
    assert records == [] and (letter.reason, letter.part, letter.body) == ("record_too_large", "body", body)
