"""The nine findings of the hostile-input issue, each reproduced against the worker and a real
broker: one accepted webhook must not stop a shard, nothing fans out, a captured signature cannot
carry forged content, a forged time poisons nothing, slow bodies are bounded, a bad row does not
block its window, poison `_raw` records and deep JSON are dead-lettered, and a webhook accepted for
an account the shard's owner does not know yet is replayable once it does."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import sys
import time
import urllib.parse
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.integration.harness import ROOT, InProcessWorker, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.world import ENV as WORLD_ENV
from tests.integration.world import diff, ever_visible, expected_visible, observed, sim_account, worker_account
from worker import raw
from worker.emit import account_key, shard_of
from worker.model import EventType, Provider
from worker.simulator import Faults, SimConfig, Simulator

pytestmark = pytest.mark.integration

APP_KEY, EL_KEY, TOKEN = "findings-app-key", "findings-engagelab-secret", "findings-tencent-path-token-0123"
ENV = {"K": APP_KEY, "E": EL_KEY, "T": TOKEN, "X": "x"}
OUTPUTS = [t.value for t in EventType]
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def accounts(*extra: dict) -> list[dict]:
    off = {"enabled": False}
    return [
        {"name": "sc", "provider": "sendcloud", "poll": off, "webhook": {"app_key_env": "K"}},
        {"name": "el", "provider": "engagelab", "poll": off, "webhook": {"app_key_env": "E"}},
        {"name": "tx", "provider": "tencent_ses", "poll": off, "webhook": {"path_token_env": "T"}},
        *extra,
    ]


def sendcloud(event: str, email_id: str, recipient: str, ts_ms: int | None = None, token: str | None = None,
              **extra: str) -> tuple[bytes, dict[str, str]]:
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    token = token or secrets.token_hex(25)
    sig = hmac.new(APP_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    fields = {"event": event, "emailId": email_id, "recipient": recipient, "timestamp": ts, "token": token,
              "signature": sig, **extra}
    return urllib.parse.urlencode(fields).encode(), fields


def engagelab(event: str, email_id: str, itime_ms: int, **data: object) -> tuple[bytes, dict[str, str]]:
    ts = str(int(time.time()))
    headers = {**JSON, "X-WebHook-Timestamp": ts,
               "X-WebHook-Signature": hmac.new(EL_KEY.encode(), ts.encode(), hashlib.sha256).hexdigest()}
    body = {"status": {"message_status": event, "status_data": {"email_id": email_id, **data}}, "itime": itime_ms,
            "to": email_id.partition("$")[2], "message_id": email_id.partition("$")[0]}
    return orjson.dumps(body), headers


def tencent(email: str, bulk_id: str = "b-1", **extra) -> dict:
    return {"event": "delivered", "email": email, "bulkId": bulk_id, "timestamp": int(time.time()), **extra}


async def canary(session: aiohttp.ClientSession, url: str, bootstrap: str, prefix: str, tag: str) -> None:
    """A genuine webhook after an attack must be committed: no shard is wedged."""
    body, _ = sendcloud("deliver", f"canary-{tag}$c@x.test", "c@x.test")
    async with session.post(f"{url}/webhooks/sendcloud/sc", data=body, headers=FORM) as r:
        assert r.status == 200
    wanted, deadline = f"canary-{tag}$c@x.test", time.monotonic() + 30
    while time.monotonic() < deadline:
        records = await read_all(bootstrap, [f"{prefix}.delivered"], timeout=10, quiet_secs=0.5)
        if wanted in {orjson.loads(r.value)["email_id"] for r in records}:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the canary after {tag} was not committed within 30 s: a shard is stuck")


async def dead_letters(bootstrap: str, prefix: str, expect: int) -> list[tuple[dict, bytes]]:
    records = await read_all(bootstrap, [f"{prefix}._dead_letter"], expect=expect, timeout=30, quiet_secs=1)
    return [({k: v.decode() for k, v in r.headers}, r.value) for r in records]


@pytest.fixture
async def worker(kafka_bootstrap, topic_prefix):
    data = worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=2,
                         http={"max_records_per_body": 200, "body_read_timeout_secs": 2,
                               "max_concurrent_requests": 6})
    async with InProcessWorker(data, ENV) as w, aiohttp.ClientSession() as session:
        await wait_ready(w.url)
        yield w, session


async def test_1_an_accepted_webhook_with_a_huge_id_does_not_stop_its_shard(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    body = orjson.dumps(tencent("a@x.test", bulk_id="b" * 600_000))
    async with session.post(f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", data=body, headers=JSON) as r:
        assert r.status == 200
    [(headers, value)] = await dead_letters(kafka_bootstrap, topic_prefix, 1)
    assert (headers["reason"], headers["part"]) == ("record_too_large", "record")
    assert orjson.loads(value)["bulkId"] == "b" * 600_000
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "huge-id")


async def test_2_a_fan_out_body_is_one_dead_letter(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    body = b"[" + b",".join([b"{}"] * 349_000) + b"]"    # 1 MiB of empty events
    async with session.post(f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", data=body, headers=JSON) as r:
        assert r.status in (200, 413)                     # 413: over http.max_body_bytes
    if r.status == 200:
        [(headers, value)] = await dead_letters(kafka_bootstrap, topic_prefix, 1)
        assert headers["reason"] == "too_many_records" and value == body
    smaller = b"[" + b",".join([b"{}"] * 100_000) + b"]"
    async with session.post(f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", data=smaller, headers=JSON) as r:
        assert r.status == 200
    letters = await dead_letters(kafka_bootstrap, topic_prefix, 2)
    assert [h["reason"] for h, _ in letters][-1] == "too_many_records" and len(letters) <= 2
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "fan-out")


async def test_3_a_captured_signature_cannot_carry_forged_content(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    genuine, fields = sendcloud("deliver", "m1$bob@x.test", "bob@x.test")
    url = f"{w.url}/webhooks/sendcloud/sc"
    async with session.post(url, data=genuine, headers=FORM) as r:
        assert r.status == 200
    async with session.post(url, data=genuine, headers=FORM) as r:   # the provider's own retry
        assert r.status == 200
    for victim in ("alice", "carol", "dave", "erin"):                  # the same signature, forged bodies
        forged = urllib.parse.urlencode({**fields, "event": "invalid", "emailId": f"m9${victim}@x.test",
                                         "recipient": f"{victim}@x.test", "substat": "406"}).encode()
        async with session.post(url, data=forged, headers=FORM) as r:
            assert r.status == 200                                       # dead-lettered, not refused
    letters = await dead_letters(kafka_bootstrap, topic_prefix, 4)
    assert sorted(h["reason"] for h, _ in letters) == ["replayed_signature"] * 4
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "replay")
    events = [orjson.loads(r.value) for r in await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS])]
    assert sorted(e["email_id"] for e in events) == ["canary-replay$c@x.test", "m1$bob@x.test"]


async def test_4_a_forged_future_time_poisons_nothing(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    url = f"{w.url}/webhooks/engagelab/el"
    year_2100 = 4_102_444_800_000
    body, headers = engagelab("delivered", "m1$bob@x.test", year_2100)
    async with session.post(url, data=body, headers=headers) as r:
        assert r.status == 200
    body, headers = engagelab("invalid_email", "m1$bob@x.test", int(time.time() * 1000), sub_stat=406)
    async with session.post(url, data=body, headers=headers) as r:
        assert r.status == 200
    [(letter, _)] = await dead_letters(kafka_bootstrap, topic_prefix, 1)
    assert letter["reason"] == "future_time"
    [record] = await read_all(kafka_bootstrap, [f"{topic_prefix}.invalid"], expect=1)
    assert orjson.loads(record.value)["email_id"] == "m1$bob@x.test"          # not judged stale
    assert await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], timeout=3, quiet_secs=1) == []


async def test_5_slow_bodies_are_cut_off_and_shed_not_parked(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    url = f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}"

    async def stalled():
        yield b'{"event": "delivered", "email": "'
        await asyncio.sleep(30)                                      # longer than the body deadline
        yield b'x"}'

    async def slow() -> tuple[int, str | None]:
        async with aiohttp.ClientSession() as own, own.post(url, data=stalled(), headers=JSON) as r:
            return r.status, r.headers.get("Retry-After")

    answers = await asyncio.wait_for(asyncio.gather(*(slow() for _ in range(20))), 60)
    statuses = sorted(status for status, _ in answers)
    assert set(statuses) <= {408, 503} and statuses.count(408) <= 6, statuses     # at most the cap is read
    assert all(after == "5" for status, after in answers if status == 503)
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "slow")


async def test_6_a_bad_row_does_not_block_its_window(kafka_bootstrap, topic_prefix):
    acct = sim_account(Provider.SENDCLOUD, "rows", cache_ttl_secs=1.0, history_days=1, history_per_day=60,
                       live_per_sec=0, live_max=0)
    sim = Simulator(SimConfig(seed=41, accounts=(acct,), time_scale=1))
    base = await sim.start()
    sim.set_faults("rows", Faults(bad_row_rate=1.0, seed=4))              # every page has one bad row
    data = worker_config(kafka_bootstrap, topic_prefix, [worker_account(acct, base, webhook=False,
                                                                        poll={"interval_min_secs": 2})])
    try:
        async with InProcessWorker(data, WORLD_ENV) as w, aiohttp.ClientSession() as session:
            await wait_ready(w.url)
            deadline = time.monotonic() + 60
            windows: list = []
            while time.monotonic() < deadline:
                async with session.get(f"{w.url}/status") as r:
                    windows = [x for p in (await r.json())["group"]["pollers"] for x in p.get("windows", [])]
                if windows and sum(x["sweeps"] for x in windows) >= 3:
                    break
                await asyncio.sleep(0.5)
            assert sum(x["sweeps"] for x in windows) >= 3, f"windows do not advance past bad rows: {windows}"
            letters = await dead_letters(kafka_bootstrap, topic_prefix, 3)
            assert {(h["reason"], h["part"]) for h, _ in letters} == {("malformed", "raw")}
            assert isinstance(raw.decode(letters[0][1]), raw.PollPageRecord)   # the whole page, replayable
            sim.set_faults("rows", Faults())                                  # the provider heals
            expected = expected_visible(sim, ["rows"], sim.clock())
            records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                     expect=sum(expected.values()), timeout=90, quiet_secs=3)
        seen = ever_visible(sim, ["rows"], sim.clock())
    finally:
        await sim.stop()
    actual, _ = observed(records)
    # time_scale 1: a soft bounce the provider later delivers may be polled before it changes
    assert not expected - actual and max(actual.values()) == 1, diff(expected, actual)
    assert not set(actual) - seen, sorted(set(actual) - seen)


async def test_7_poison_raw_records_are_dead_lettered_and_the_shard_goes_on(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    shard = shard_of("sendcloud", "sc", 2)
    poison = [
        b'[{"v": 1}]',                                                          # a list, not an object
        orjson.dumps({"v": 1, "kind": "poll_page", "provider": "sendcloud", "account": "sc", "received_at": 1,
                      "query": {}, "status": 200, "headers": {}, "body": 7}),    # a page body that is no text
        orjson.dumps({"v": 99, "kind": "webhook"}),                             # a version from the future
        orjson.dumps({"v": 1, "kind": "webhook", "provider": "sendcloud", "account": "nobody", "received_at": 1,
                      "record": {}}),                                           # an account nobody has
        b"\x00\xff garbage",
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in poison:
            await producer.send_and_wait(f"{topic_prefix}._raw", value, key=account_key("sendcloud", "sc"),
                                         partition=shard)
    finally:
        await producer.stop()
    letters = await dead_letters(kafka_bootstrap, topic_prefix, len(poison))
    assert sorted(h["reason"] for h, _ in letters) == sorted(
        ["bad_raw_record", "bad_raw_record", "unknown_raw_version", "unknown_account", "bad_raw_record"])
    assert sorted(v for _, v in letters) == sorted(poison)                     # kept byte for byte
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "poison")


async def test_8_deep_json_is_dead_lettered_not_answered_500(worker, kafka_bootstrap, topic_prefix):
    w, session = worker
    for depth in (255, 600, 1024):
        deep = b'{"event": "delivered", "email": "a@x.test", "bulkId": "b", "timestamp": 1, "reason": ' \
               + b'{"x":' * depth + b"1" + b"}" * depth + b"}"
        async with session.post(f"{w.url}/webhooks/tencent_ses/tx/{TOKEN}", data=deep, headers=JSON) as r:
            assert r.status == 200, depth
    letters = await dead_letters(kafka_bootstrap, topic_prefix, 3)
    assert [h["reason"] for h, _ in letters] == ["malformed"] * 3
    await canary(session, w.url, kafka_bootstrap, topic_prefix, "deep")


async def test_9_an_account_added_mid_rollout_is_replayable_once_its_owner_knows_it(kafka_bootstrap, topic_prefix,
                                                                                   tmp_path):
    late = {"name": "late", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"app_key_env": "K"}}
    old = worker_config(kafka_bootstrap, topic_prefix, accounts(), shards=2)
    new = worker_config(kafka_bootstrap, topic_prefix, accounts(late), shards=2)
    # a new pod accepted the webhook for "late" and wrote it to _raw; the old owner does not know "late"
    record = raw.WebhookRecord(Provider.SENDCLOUD, "late", datetime.now(UTC),
                               sendcloud("deliver", "m1$late@x.test", "late@x.test")[1])
    async with InProcessWorker(old, ENV) as w:
        await wait_ready(w.url)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(f"{topic_prefix}._raw", raw.encode(record),
                                         key=account_key("sendcloud", "late"), partition=shard_of("sendcloud", "late", 2))
        finally:
            await producer.stop()
        [(letter, _)] = await dead_letters(kafka_bootstrap, topic_prefix, 1)
        assert letter["reason"] == "unknown_account"
    config = tmp_path / "new.yaml"
    config.write_text(yaml.safe_dump(new))
    async with InProcessWorker(new, ENV) as w:                        # the rollout is done
        await wait_ready(w.url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "replay-dead-letters", "--config", str(config), "--reason",
            "unknown_account", "--no-progress", cwd=ROOT, env={**ENV, "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        [event] = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1, timeout=60)
    assert orjson.loads(event.value)["email_id"] == "m1$late@x.test"
