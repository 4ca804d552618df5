"""examples/suppression_consumer.py against the real broker: hand-written events in, the exact
suppression rows out; read_committed; exactly once across a crash and a restart."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support import validate_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "suppression_consumer.py"
_spec = importlib.util.spec_from_file_location("suppression_consumer", SCRIPT)
sc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("suppression_consumer", sc)
_spec.loader.exec_module(sc)

SC, UNI, TC = ("sendcloud", "sendcloud-1"), ("unisender", "unisender-1"), ("tencent_ses", "tencent-1")
NEW_FIELDS = ("final", "scope", "attempt")


def ev(type_: str, who: tuple[str, str], recipient: str, at: str, *, reason: str | None, scope: str | None,
       final: bool, status: str, sub: str | None = None, message: str | None = None, old: bool = False) -> dict:
    """One status-event/v1 record as the worker writes it; `old`: as written before final/scope/attempt."""
    provider, account = who
    event = {
        "schema_version": 1,
        "event_id": hashlib.md5(f"{provider}|{account}|{recipient}|{type_}|{at}".encode()).hexdigest(),
        "type": type_, "provider": provider, "account": account,
        "email_id": f"{recipient}-{at}", "message_id": None, "recipient": recipient,
        "occurred_at": at, "sent_at": None, "observed_at": at, "source": "webhook",
        "permanent": type_ in ("invalid", "complaint", "unsubscribed"),
        "reason": reason, "provider_status": status, "provider_sub_status": sub, "provider_message": message,
        "smtp": None, "raw": None, "final": final, "scope": scope, "attempt": None,
    }
    if old:
        for field in NEW_FIELDS:
            del event[field]
    return event


def day(d: int, hour: int = 10) -> str:
    return f"2030-03-{d:02d}T{hour:02d}:00:00Z"


EVENTS = [
    ev("invalid", SC, "a@example.com", day(1), reason="unknown_user", scope="recipient", final=True,
       status="4", sub="406", message="550 5.1.1 user unknown"),
    ev("invalid", UNI, "a@example.com", day(2), reason="unknown_user", scope="recipient", final=True,
       status="err_user_unknown"),                                        # later evidence: the first row stays
    ev("invalid", SC, "b@example.com", day(1), reason="suppressed", scope="provider", final=True,
       status="4", sub="401"),                                            # the provider's list: mirrored only
    ev("invalid", UNI, "c@example.com", day(1), reason="unknown_user", scope=None, final=True,
       status="err_user_unknown", old=True),                              # before the new fields: recipient
    ev("invalid", SC, "p@example.com", day(1), reason="blocklisted", scope=None, final=True,
       status="4", sub="401", old=True),                                  # ... but 401 was the provider's list
    ev("complaint", TC, "d@example.com", day(1), reason=None, scope="recipient", final=True, status="spamreport"),
    ev("unsubscribed", UNI, "e@example.com", day(1), reason="unsubscribed", scope="recipient", final=True,
       status="ok_unsubscribed"),
    # f: three final recipient soft bounces within 15 days -> 30 days from the third
    *[ev("soft_bounce", UNI, "f@example.com", day(d), reason="mailbox_full", scope="recipient", final=True,
         status="err_mailbox_full") for d in (1, 5, 9)],
    # g: two final ones and an interim one (the provider still retries): no row
    *[ev("soft_bounce", SC, "g@example.com", day(d), reason="unknown_user", scope="recipient", final=True,
         status="5", sub="506", message="450 4.1.1 mailbox unavailable") for d in (1, 2)],
    ev("soft_bounce", TC, "g@example.com", day(3), reason="mailbox_full", scope="recipient", final=False,
       status="deferred", message="452 4.2.2 mailbox full"),
    # h: five final soft bounces about us, the content, a policy, the provider, nobody knows: no row
    ev("soft_bounce", SC, "h@example.com", day(1), reason="sender_rejected", scope="sender", final=True,
       status="5", sub="505"),
    ev("soft_bounce", SC, "h@example.com", day(2), reason="spam_rejected", scope="content", final=True,
       status="5", sub="507"),
    ev("soft_bounce", SC, "h@example.com", day(3), reason="policy_rejected", scope="policy", final=True,
       status="4", sub="405", message="554 5.7.1 client host blocked"),
    ev("soft_bounce", TC, "h@example.com", day(4), reason="suppressed", scope="provider", final=True,
       status="dropped"),
    ev("soft_bounce", SC, "h@example.com", day(5), reason="other", scope="unknown", final=True,
       status="4", sub="409", message="Other(scheduler: deleted)"),
    # i: three final ones, but 19 days from first to third: no row
    *[ev("soft_bounce", UNI, "i@example.com", day(d), reason="mailbox_full", scope="recipient", final=True,
         status="err_mailbox_full") for d in (1, 10, 20)],
    # j: two, a delivery, one more: no row
    *[ev("soft_bounce", UNI, "j@example.com", day(d), reason="mailbox_full", scope="recipient", final=True,
         status="err_mailbox_full") for d in (1, 2, 4)],
    ev("delivered", UNI, "j@example.com", day(3), reason=None, scope=None, final=True, status="ok_delivered"),
    # k: three soft bounces written before `final` existed: they may have been interim, so they never count
    *[ev("soft_bounce", UNI, "k@example.com", day(d), reason="mailbox_full", scope=None, final=False,
         status="err_mailbox_full", old=True) for d in (1, 2, 3)],
    ev("unsubscribed", UNI, "m@example.com", day(1), reason="unsubscribed", scope="provider", final=True,
       status="err_unsubscribed"),
    ev("invalid", UNI, "n@example.com", day(1), reason="domain_invalid", scope="domain", final=True,
       status="err_no_dns"),
    ev("delivered", TC, "o@example.com", day(1), reason=None, scope=None, final=True, status="1"),
]
# In a transaction that is aborted: a read_committed reader never sees it (it would make g three).
ABORTED = [ev("soft_bounce", SC, "g@example.com", day(4), reason="unknown_user", scope="recipient", final=True,
              status="5", sub="506")]

# (recipient, account, kind, reason, since, until), written by hand from the recipe
EXPECTED = [
    ("a@example.com", "*", "invalid", "unknown_user", "2030-03-01T10:00:00Z", None),
    ("b@example.com", "sendcloud-1", "provider", "suppressed", "2030-03-01T10:00:00Z", None),
    ("c@example.com", "*", "invalid", "unknown_user", "2030-03-01T10:00:00Z", None),
    ("d@example.com", "tencent-1", "complaint", None, "2030-03-01T10:00:00Z", None),
    ("e@example.com", "unisender-1", "unsubscribed", "unsubscribed", "2030-03-01T10:00:00Z", None),
    ("f@example.com", "*", "soft_bounce", None, "2030-03-09T10:00:00Z", "2030-04-08T10:00:00Z"),
    ("m@example.com", "unisender-1", "unsubscribed", "unsubscribed", "2030-03-01T10:00:00Z", None),
    ("n@example.com", "*", "invalid", "domain_invalid", "2030-03-01T10:00:00Z", None),
    ("p@example.com", "sendcloud-1", "provider", "blocklisted", "2030-03-01T10:00:00Z", None),
]
APPLIED = {"invalid": 6, "soft_bounce": 20, "complaint": 1, "unsubscribed": 2, "delivered": 2}
COUNTED_SOFT_BOUNCES = 3 + 2 + 3 + 3  # f, g, i, j: the final recipient/domain ones


def test_the_events_are_status_events():
    """Every hand-written event is valid status-event/v1, the old-format ones included."""
    for event in EVENTS + ABORTED:
        validate_event(event)
    assert sum(APPLIED.values()) == len(EVENTS)


async def publish(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}.{t}", 2, 1) for t in sc.TYPES])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{prefix}-events")
    await producer.start()
    try:
        for events, commit in ((EVENTS[:14], True), (ABORTED, False), (EVENTS[14:], True)):
            await producer.begin_transaction()
            for e in events:
                headers = [("event_type", e["type"].encode()), ("provider", e["provider"].encode()),
                           ("event_id", e["event_id"].encode()), ("schema", b"status-event/v1"),
                           ("content-type", b"application/json")]
                await producer.send(f"{prefix}.{e['type']}", json.dumps(e).encode(),
                                    key=e["recipient"].encode(), headers=headers)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


def read_db(path: Path) -> tuple[list[tuple], dict[str, int], int]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT recipient, account, kind, reason, since, until FROM suppression"
                          " ORDER BY recipient, account, kind").fetchall()
        applied = dict(db.execute("SELECT type, n FROM applied").fetchall())
        (bounces,) = db.execute("SELECT count(*) FROM soft_bounce").fetchone()
    return rows, applied, bounces


async def test_builds_the_expected_list(kafka_bootstrap, topic_prefix, tmp_path):
    await publish(kafka_bootstrap, topic_prefix)
    db = tmp_path / "list.db"
    await asyncio.wait_for(sc.consume(kafka_bootstrap, topic_prefix, str(db), once=True), 120)
    assert read_db(db) == (EXPECTED, APPLIED, COUNTED_SOFT_BOUNCES)


async def test_exactly_once_across_a_crash(kafka_bootstrap, topic_prefix, tmp_path, monkeypatch):
    """Crash in the middle of a batch, after earlier batches committed; restart; nothing counted twice."""
    await publish(kafka_bootstrap, topic_prefix)
    db = tmp_path / "list.db"
    calls = 0
    real_apply = sc.apply

    def crashing_apply(*args, **kw):
        nonlocal calls
        calls += 1
        if calls == 14:
            raise RuntimeError("simulated crash")
        real_apply(*args, **kw)

    monkeypatch.setattr(sc, "apply", crashing_apply)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(sc.consume(kafka_bootstrap, topic_prefix, str(db), once=True, max_records=3), 120)
    monkeypatch.setattr(sc, "apply", real_apply)
    _, applied, _ = read_db(db)
    assert 0 < sum(applied.values()) < 14  # whole batches committed, the crashed one left nothing

    # the restart as an operator runs it: the command line, twice (the second finds nothing new)
    for _ in range(2):
        done = subprocess.run([sys.executable, str(SCRIPT), "--bootstrap", kafka_bootstrap, "--prefix", topic_prefix,
                               "--db", str(db), "--once"], cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert read_db(db) == (EXPECTED, APPLIED, COUNTED_SOFT_BOUNCES)

    shown = subprocess.run([sys.executable, str(SCRIPT), "--db", str(db), "--show"], capture_output=True, text=True,
                           timeout=60, check=True).stdout.splitlines()
    assert [line.split()[:3] for line in shown[1:-1]] == [list(row[:3]) for row in EXPECTED]
    assert shown[-1] == ("9 rows in force; events read: invalid 6, soft_bounce 20, complaint 1, unsubscribed 2,"
                         " delivered 2")
