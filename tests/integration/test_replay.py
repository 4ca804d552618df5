"""`replay-dead-letters` against the real broker: what reaches `_raw`, exactly once, and only that.

Dead letters are written with DeadLetter's own headers into a fresh `<prefix>._dead_letter`; the
command runs in-process (and once as a real process); `_raw` is read back and compared with
literal values. Shards are 4; the partition of each account is Kafka's Java client's
(`Utils.toPositive(Utils.murmur2(key)) % 4`, computed with kafka-clients 4.1.1): sendcloud/sc 1,
sendcloud/sc2 2, tencent_ses/tx 0, unisender/uni 2.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.integration.harness import ROOT, InProcessWorker, free_port, wait_ready, worker_config
from tests.integration.kafka_utils import read_all
from worker.config import Config, parse_config
from worker.deadletter import DeadLetter
from worker.emit import ensure_topics
from worker.replay import Replay, Selection, Summary, usage_problems

pytestmark = pytest.mark.integration

ENV = {"SC_KEY": "sc-app-key", "TC_KEY": "k", "TC_TOKEN": "tencent-path-token-0123456789", "UNI_KEY": "k"}
OFF = {"enabled": False}
SC, SC2, TX, UNI = ("sendcloud", "sc"), ("sendcloud", "sc2"), ("tencent_ses", "tx"), ("unisender", "uni")

AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)           # 1793613600000 ms
EARLIER = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)      # 1793534400000 ms
LATER = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)         # 1793692800000 ms


def account(provider: str, name: str) -> dict:
    if provider == "sendcloud":
        return {"name": name, "provider": provider, "poll": OFF, "credentials": {"api_user": "u", "api_key_env": "SC_KEY"},
                "webhook": {"app_key_env": "SC_KEY"}}
    if provider == "tencent_ses":
        return {"name": name, "provider": provider, "poll": OFF,
                "credentials": {"secret_id": "AKID", "secret_key_env": "TC_KEY"}, "webhook": {"path_token_env": "TC_TOKEN"}}
    return {"name": name, "provider": provider, "poll": OFF, "credentials": {"api_key_env": "UNI_KEY"},
            "webhook": {"enabled": False}}


def config_data(bootstrap: str, prefix: str, accounts=(SC, SC2, TX, UNI), **kafka) -> dict:
    return worker_config(bootstrap, prefix, [account(*a) for a in accounts], shards=4,
                         kafka={"output_partitions": 3, **kafka})


def config(bootstrap: str, prefix: str, accounts=(SC, SC2, TX, UNI)) -> Config:
    return parse_config(config_data(bootstrap, prefix, accounts), ENV)


# -- the dead letters, as the worker writes them -----------------------------------------------

SC_RECORD = b'{"event":"deliver","emailId":"e1$alice@example.com","recipient":"alice@example.com","timestamp":1793613600000}'
SC_RECORD_NO_ID = b'{"event":"deliver","recipient":"nobody@example.com"}'
TX_BODY = (b'[{"event":"delivered","email":"bob@example.com","bulkId":"qcloudses-1","timestamp":1793613600},'
           b'{"event":"bounce","email":5}]')
TX_BODY_TRUNCATED = b'{"event": "bou'
# `_raw` values exactly as worker.raw.encode writes them
RAW_SC2 = (b'{"v":1,"kind":"webhook","provider":"sendcloud","account":"sc2","received_at":1793610000000,'
           b'"record":{"event":"deliver","emailId":"e2$dave@example.com","recipient":"dave@example.com","timestamp":1793610000000}}')
RAW_V2 = b'{"v":2,"kind":"webhook","provider":"sendcloud","account":"sc","received_at":1793610000000,"record":{}}'
PAGE_BODY = ('{"result":true,"statusCode":200,"message":"ok","info":{"total":"1","voListSize":1,"voList":[{'
             '"emailId":"e3$erin@example.com","status":"送达","subStatus":null,"apiUser":"u","recipients":"erin@example.com",'
             '"requestTime":"2026-11-02 09:31:59","modifiedTime":"2026-11-02 09:32:08","sendLog":"ok"}]}}')
RAW_PAGE = ('{"v":1,"kind":"poll_page","provider":"sendcloud","account":"sc","received_at":1793610000000,'
            '"query":{"send_date":"2026-11-02","status":null,"offset":0,"limit":100},"status":200,'
            '"headers":{"content-type":"application/json"},"body":' + orjson.dumps(PAGE_BODY).decode() + '}').encode()
SENT_UNI = b'{"provider":"unisender","account":"uni","email_id":"11411542320","recipient":"carol@example.com","sent_at":"2026-11-02T09:00:00Z"}'
SENT_BAD = b'{"provider":"unisender","account":"uni"}'
SENT_DATE_POLLED = b'{"provider":"sendcloud","account":"sc","email_id":"s-1","recipient":"x@example.com","sent_at":"2026-11-02T09:00:00Z"}'


def webhook_record(account: tuple[str, str], reason: str, value: bytes, at: datetime = AT) -> DeadLetter:
    return DeadLetter(account[0], account[1], reason, "webhook", "record", value, "application/json", at)


def webhook_body(account: tuple[str, str], value: bytes, at: datetime = AT) -> DeadLetter:
    return DeadLetter(account[0], account[1], "malformed", "webhook", "body", value, "application/json", at)


def shard_raw(account: tuple[str, str], reason: str, value: bytes, at: datetime = AT) -> DeadLetter:
    return DeadLetter(account[0], account[1], reason, "shard", "raw", value, "application/json", at)


def sent(value: bytes, at: datetime = AT) -> DeadLetter:
    return DeadLetter("unknown", "unknown", "bad_sent_record", "sent_topic", "sent", value, "application/json", at)


EVERY_PART = [
    webhook_record(SC, "malformed", SC_RECORD),
    webhook_record(SC, "malformed", SC_RECORD_NO_ID),
    webhook_record(("sendcloud", "ghost"), "malformed", SC_RECORD),
    webhook_body(TX, TX_BODY),
    webhook_body(TX, TX_BODY_TRUNCATED),
    shard_raw(SC2, "unknown_account", RAW_SC2),
    shard_raw(SC, "unknown_raw_version", RAW_V2),
    shard_raw(SC, "malformed", RAW_PAGE),
    sent(SENT_UNI),
    sent(SENT_BAD),
    sent(SENT_DATE_POLLED),
]

# What `_raw` must hold after replaying EVERY_PART: (partition, key, value)
WEBHOOK_SC = (1, b"sendcloud/sc", {
    "v": 1, "kind": "webhook", "provider": "sendcloud", "account": "sc", "received_at": 1793613600000,
    "record": {"event": "deliver", "emailId": "e1$alice@example.com", "recipient": "alice@example.com",
               "timestamp": 1793613600000}})
WEBHOOK_TX = (0, b"tencent_ses/tx", {
    "v": 1, "kind": "webhook", "provider": "tencent_ses", "account": "tx", "received_at": 1793613600000,
    "record": {"event": "delivered", "email": "bob@example.com", "bulkId": "qcloudses-1", "timestamp": 1793613600}})
WEBHOOK_SC2 = (2, b"sendcloud/sc2", {
    "v": 1, "kind": "webhook", "provider": "sendcloud", "account": "sc2", "received_at": 1793610000000,
    "record": {"event": "deliver", "emailId": "e2$dave@example.com", "recipient": "dave@example.com",
               "timestamp": 1793610000000}})
PAGE_SC = (1, b"sendcloud/sc", {
    "v": 1, "kind": "poll_page", "provider": "sendcloud", "account": "sc", "received_at": 1793610000000,
    "query": {"send_date": "2026-11-02", "status": None, "offset": 0, "limit": 100}, "status": 200,
    "headers": {"content-type": "application/json"}, "body": PAGE_BODY})
SENT_TO_UNI = (2, b"unisender/uni", {
    "v": 1, "kind": "sent", "provider": "unisender", "account": "uni", "received_at": 1793613600000,
    "email_id": "11411542320", "recipient": "carol@example.com", "sent_at": "2026-11-02T09:00:00Z"})


async def write_dead_letters(bootstrap: str, prefix: str, letters: list[DeadLetter], partitions: int = 3) -> None:
    """Into `<prefix>._dead_letter`, spread over its partitions, with the headers DeadLetter gives them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, letter in enumerate(letters):
            await producer.send_and_wait(f"{prefix}._dead_letter", letter.body, key=letter.key,
                                         headers=letter.headers, partition=i % partitions)
    finally:
        await producer.stop()


async def fresh_topics(cfg: Config) -> None:
    await ensure_topics(cfg.kafka, with_outputs=False)


async def raw_records(bootstrap: str, prefix: str, expect: int | None = None) -> list[tuple[int, bytes, dict]]:
    records = await read_all(bootstrap, [f"{prefix}._raw"], expect=expect, quiet_secs=1.0, timeout=20)
    return sorted(((r.partition, r.key, orjson.loads(r.value)) for r in records), key=repr)


def counts(summary: Summary) -> tuple[dict, dict, dict, int, int]:
    return (dict(summary.selected), dict(summary.replayed), dict(summary.unusable), summary.not_needed,
            summary.passed_over)


# -- the tests ---------------------------------------------------------------------------------


async def test_every_part_is_replayed_once_to_its_accounts_shard(kafka_bootstrap, topic_prefix):
    cfg = config(kafka_bootstrap, topic_prefix)
    await fresh_topics(cfg)
    await write_dead_letters(kafka_bootstrap, topic_prefix, EVERY_PART)

    job = Replay(cfg, Selection())
    # the default name: sha256 of {"accounts":[],"reasons":[],"from":null,"to":null}, 12 hex digits
    assert job.group == f"{topic_prefix}-g.replay.9f434cd9cd98"
    first = await job.run()
    assert counts(first) == (
        {("malformed", "record"): 3, ("malformed", "body"): 2, ("unknown_account", "raw"): 1,
         ("unknown_raw_version", "raw"): 1, ("malformed", "raw"): 1, ("bad_sent_record", "sent"): 3},
        {"record": 1, "body": 1, "raw": 2, "sent": 1},
        {"malformed": 3, "unknown_account": 1, "unknown_raw_version": 1, "bad_sent_record": 1},
        1, 0)
    assert first.lines(dry_run=False) == [
        "selected: 11  (bad_sent_record/sent 3, malformed/body 2, malformed/raw 1, malformed/record 3, "
        "unknown_account/raw 1, unknown_raw_version/raw 1)",
        "replayed: 5 record(s)  (body 1, raw 2, record 1, sent 1)",
        "still unusable: 6  (bad_sent_record 1, malformed 3, unknown_account 1, unknown_raw_version 1)",
        "not needed: 1",
        "passed over: 0",
    ]
    expected = sorted([WEBHOOK_SC, WEBHOOK_TX, WEBHOOK_SC2, PAGE_SC, SENT_TO_UNI], key=repr)
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=5) == expected
    raw_sc2 = [r for r in await read_all(kafka_bootstrap, [f"{topic_prefix}._raw"], expect=5) if r.partition == 2
               and r.key == b"sendcloud/sc2"]
    assert [r.value for r in raw_sc2] == [RAW_SC2]   # a `raw` dead letter goes back byte for byte

    again = await Replay(cfg, Selection()).run()   # the same selection: resumes at the end
    assert counts(again) == ({}, {}, {}, 0, 0)
    assert await raw_records(kafka_bootstrap, topic_prefix) == expected

    other = await Replay(cfg, Selection(reasons=frozenset({"unknown_account"}))).run()   # another: from the start
    assert counts(other) == ({("unknown_account", "raw"): 1}, {"raw": 1}, {}, 0, 10)
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=6) == sorted([*expected, WEBHOOK_SC2], key=repr)


async def test_selection_dry_run_resume_and_a_new_selection(kafka_bootstrap, topic_prefix):
    cfg = config(kafka_bootstrap, topic_prefix)
    await fresh_topics(cfg)
    await write_dead_letters(kafka_bootstrap, topic_prefix, [
        webhook_record(SC, "malformed", SC_RECORD),                          # selected
        webhook_record(SC, "malformed", SC_RECORD_NO_ID),                    # selected, still unusable
        webhook_record(SC, "malformed", SC_RECORD, at=EARLIER),              # before --from
        webhook_record(SC, "malformed", SC_RECORD, at=LATER),                # at or after --to
        shard_raw(SC, "unknown_raw_version", RAW_V2),                        # another reason
        webhook_body(TX, TX_BODY),                                           # another account
        shard_raw(SC2, "unknown_account", RAW_SC2),                          # both
    ])
    selection = Selection(frozenset({"sc"}), frozenset({"malformed"}), AT.replace(hour=0), LATER)
    # sha256 of {"accounts":["sc"],"reasons":["malformed"],"from":"2026-11-02T00:00:00Z","to":"2026-11-03T08:00:00Z"}
    assert Replay(cfg, selection).name == "97e3eeba6cc8"

    dry = await Replay(cfg, selection, dry_run=True).run()
    assert counts(dry) == ({("malformed", "record"): 2}, {"record": 1}, {"malformed": 1}, 0, 5)
    assert dry.lines(dry_run=True)[1] == "would replay: 1 record(s)  (record 1)"
    assert await raw_records(kafka_bootstrap, topic_prefix) == []   # a dry run writes nothing...
    dry_again = await Replay(cfg, selection, dry_run=True).run()
    assert counts(dry_again) == counts(dry)                         # ...and commits no offsets

    done = await Replay(cfg, selection).run()
    assert counts(done) == ({("malformed", "record"): 2}, {"record": 1}, {"malformed": 1}, 0, 5)
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=1) == [WEBHOOK_SC]

    # a dead letter that arrives later: the same selection resumes and takes only that one
    await write_dead_letters(kafka_bootstrap, topic_prefix, [
        webhook_record(SC, "malformed", SC_RECORD.replace(b"e1$", b"e9$"), at=AT.replace(hour=11))])
    resumed = await Replay(cfg, selection).run()
    assert counts(resumed) == ({("malformed", "record"): 1}, {"record": 1}, {}, 0, 0)
    late = (1, b"sendcloud/sc", {**WEBHOOK_SC[2], "received_at": 1793617200000,
                                 "record": {**WEBHOOK_SC[2]["record"], "emailId": "e9$alice@example.com"}})
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=2) == sorted([WEBHOOK_SC, late], key=repr)
    assert counts(await Replay(cfg, selection, dry_run=True).run()) == ({}, {}, {}, 0, 0)

    # another selection starts from the beginning: everything of its own again
    every_sc = await Replay(cfg, Selection(frozenset({"sc"}))).run()
    assert counts(every_sc) == (
        {("malformed", "record"): 5, ("unknown_raw_version", "raw"): 1}, {"record": 4},
        {"malformed": 1, "unknown_raw_version": 1}, 0, 2)
    early = (1, b"sendcloud/sc", {**WEBHOOK_SC[2], "received_at": 1793534400000})
    later = (1, b"sendcloud/sc", {**WEBHOOK_SC[2], "received_at": 1793692800000})
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=6) == sorted(
        [WEBHOOK_SC, late, WEBHOOK_SC, early, later, late], key=repr)


async def test_an_unknown_account_dead_letter_is_replayed_once_the_account_is_configured(kafka_bootstrap,
                                                                                      topic_prefix):
    rollout = config(kafka_bootstrap, topic_prefix, accounts=(SC, TX, UNI))   # sc2 not added yet
    await fresh_topics(rollout)
    await write_dead_letters(kafka_bootstrap, topic_prefix, [shard_raw(SC2, "unknown_account", RAW_SC2)])
    by_reason = Selection(reasons=frozenset({"unknown_account"}))

    assert usage_problems(rollout, Selection(frozenset({"sc2"})), None) == [
        "--account sc2: not in the configuration (add it first: its dead letters would be still unusable, "
        "and this selection would pass them for good)"]
    before = await Replay(rollout, by_reason, name="before-sc2").run()
    assert counts(before) == ({("unknown_account", "raw"): 1}, {}, {"unknown_account": 1}, 0, 0)
    assert await raw_records(kafka_bootstrap, topic_prefix) == []

    added = config(kafka_bootstrap, topic_prefix)   # sc2 is in the configuration now
    after = await Replay(added, by_reason, name="after-sc2").run()
    assert counts(after) == ({("unknown_account", "raw"): 1}, {"raw": 1}, {}, 0, 0)
    records = await read_all(kafka_bootstrap, [f"{topic_prefix}._raw"], expect=1, quiet_secs=1.0)
    assert [(r.partition, r.key, r.value) for r in records] == [(2, b"sendcloud/sc2", RAW_SC2)]


class LateLetters(Replay):
    """A replay during which more dead letters arrive, right after it took its end offsets."""

    def __init__(self, *args, late: list[DeadLetter], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.late = late

    async def _end_offsets(self, consumer, tps):
        end = await super()._end_offsets(consumer, tps)
        await write_dead_letters(self.config.kafka.bootstrap_servers, self.config.kafka.topic_prefix, self.late,
                                 partitions=1)
        return end


async def test_a_run_stops_at_the_end_offsets_it_saw_at_start(kafka_bootstrap, topic_prefix):
    cfg = config(kafka_bootstrap, topic_prefix)
    await fresh_topics(cfg)
    await write_dead_letters(kafka_bootstrap, topic_prefix, [webhook_record(SC, "malformed", SC_RECORD)], partitions=1)
    late = [webhook_record(TX, "malformed", SC_RECORD), webhook_body(TX, TX_BODY)]   # same partition, after the end

    first = await LateLetters(cfg, Selection(), late=late).run()
    assert counts(first) == ({("malformed", "record"): 1}, {"record": 1}, {}, 0, 0)
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=1) == [WEBHOOK_SC]
    second = await Replay(cfg, Selection()).run()   # the next run of the selection takes them
    assert counts(second) == ({("malformed", "record"): 1, ("malformed", "body"): 1}, {"body": 1},
                              {"malformed": 2}, 0, 0)
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=2) == sorted([WEBHOOK_SC, WEBHOOK_TX], key=repr)


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "replay-dead-letters", *args, cwd=ROOT,
        env={**ENV, "PATH": "/usr/bin:/bin"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_the_command_line(kafka_bootstrap, topic_prefix, tmp_path):
    data = config_data(kafka_bootstrap, topic_prefix)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    await fresh_topics(parse_config(data, ENV))
    await write_dead_letters(kafka_bootstrap, topic_prefix, EVERY_PART[:5])

    code, out, err = await run_cli("--config", str(path), "--account", "sc", "--account", "tx",
                                   "--reason", "malformed", "--name", "ops-1")
    assert code == 0, err
    assert out.splitlines() == [
        f"replay-dead-letters ops-1: {topic_prefix}._dead_letter in group {topic_prefix}-g.replay.ops-1",
        "selected: 4  (malformed/body 2, malformed/record 2)",
        "replayed: 2 record(s)  (body 1, record 1)",
        "still unusable: 3  (malformed 3)",
        "not needed: 0",
        "passed over: 1",
    ]
    assert "100%" in err and "5/5 dead letters" in err, err   # the progress bar, on stderr
    assert await raw_records(kafka_bootstrap, topic_prefix, expect=2) == sorted([WEBHOOK_SC, WEBHOOK_TX], key=repr)

    code, out, err = await run_cli("--config", str(path), "--account", "sc", "--account", "tx",
                                   "--reason", "malformed", "--name", "ops-1", "--dry-run", "--no-progress")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (f"replay-dead-letters ops-1 (dry run: nothing written): "
                                   f"{topic_prefix}._dead_letter in group {topic_prefix}-g.replay.ops-1")
    assert out.splitlines()[1:3] == ["selected: 0", "would replay: 0 record(s)"]

    for args, message in [
        (["--account", "nobody"], "--account nobody: not in the configuration"),
        (["--reason", "bad_luck"], "--reason bad_luck: not an error type"),
        (["--from", "2026-11-03", "--to", "2026-11-02"], "--to must be after --from"),
        (["--from", "yesterday"], "--from/--to: Invalid isoformat string: 'yesterday'"),
        (["--name", "a name"], "--name: 1 to 100 of A-Z a-z 0-9 . _ -"),
    ]:
        code, out, err = await run_cli("--config", str(path), *args)
        assert (code, out) == (2, ""), (args, err)
        assert message in err, (args, err)
    code, _, err = await run_cli("--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err, err
    code, _, err = await run_cli()
    assert code == 2 and "--config" in err, err

    dead = tmp_path / "no-kafka.yaml"
    dead.write_text(yaml.safe_dump(config_data(f"127.0.0.1:{free_port()}", topic_prefix)))
    started = time.monotonic()
    code, out, err = await run_cli("--config", str(dead), "--no-progress")
    assert code == 1, (out, err)
    assert "Kafka failed" in err, err
    assert time.monotonic() - started < 60


async def test_a_record_replayed_twice_becomes_one_event(kafka_bootstrap, topic_prefix):
    """End to end: a running worker, the same dead letter replayed under two names, one event."""
    data = config_data(kafka_bootstrap, topic_prefix, accounts=(SC,))
    now_ms = int(time.time() * 1000) // 1000 * 1000
    received = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    record = orjson.dumps({"event": "deliver", "emailId": "r1$frank@example.com", "recipient": "frank@example.com",
                           "timestamp": now_ms - 60_000})
    async with InProcessWorker(data, ENV) as worker:
        await wait_ready(worker.url)
        cfg = worker.config
        await write_dead_letters(kafka_bootstrap, topic_prefix, [webhook_record(SC, "malformed", record, at=received)])
        for name in ("first", "second"):
            summary = await Replay(cfg, Selection(), name=name).run()
            assert counts(summary) == ({("malformed", "record"): 1}, {"record": 1}, {}, 0, 0)
        raw = await read_all(kafka_bootstrap, [f"{topic_prefix}._raw"], expect=2, quiet_secs=1.0)
        assert [(r.partition, r.key) for r in raw] == [(1, b"sendcloud/sc"), (1, b"sendcloud/sc")]
        events = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1, quiet_secs=3, timeout=30)
    assert len(events) == 1
    event = orjson.loads(events[0].value)
    assert (event["type"], event["provider"], event["account"], event["email_id"], event["recipient"],
            event["source"]) == ("delivered", "sendcloud", "sc", "r1$frank@example.com", "frank@example.com", "webhook")
    assert events[0].key == b"frank@example.com"
