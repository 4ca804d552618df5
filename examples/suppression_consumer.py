"""A reference consumer: a suppression list built from the status-event topics, exactly once.

    python examples/suppression_consumer.py --bootstrap HOST:PORT --prefix PREFIX --db PATH [--once]
    python examples/suppression_consumer.py --db PATH --show

It reads `<prefix>.{invalid,soft_bounce,complaint,unsubscribed,delivered}` with
isolation_level=read_committed and no consumer group: its offsets live in the SQLite file, written
in the same transaction as the rows they produced, so a crash anywhere replays nothing twice and
loses nothing. The recipe is docs/consumers.md, "Acting on events": `decide()` below is all of it.
Needs only aiokafka; the worker's code is not imported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

TYPES = ("invalid", "soft_bounce", "complaint", "unsubscribed", "delivered")
KINDS = ("invalid", "provider", "complaint", "unsubscribed", "soft_bounce")
ALL = "*"  # the account column of a row that holds for every account
ADDRESS_SCOPES = frozenset({"recipient", "domain"})  # evidence about the address itself
SCHEMA_HEADER = b"status-event/v1"
# Before `scope` existed, `invalid` also carried these reasons, which are not about the address.
OLD_INVALID_SCOPE = {"blocklisted": "provider", "policy_rejected": "policy", "spam_rejected": "content"}

DDL = """
CREATE TABLE IF NOT EXISTS suppression (recipient TEXT, account TEXT, kind TEXT, reason TEXT,
    since TEXT, until TEXT, event_id TEXT, PRIMARY KEY (recipient, account, kind));
CREATE TABLE IF NOT EXISTS soft_bounce (event_id TEXT PRIMARY KEY, recipient TEXT, at TEXT);
CREATE TABLE IF NOT EXISTS delivered (recipient TEXT PRIMARY KEY, at TEXT);
CREATE TABLE IF NOT EXISTS applied (type TEXT PRIMARY KEY, n INTEGER);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT, part INTEGER, next INTEGER, PRIMARY KEY (topic, part));
"""


@dataclass(frozen=True)
class Recipe:
    """Soft bounces: `threshold` counted ones within `window` suppress the address for `suppress_for`."""

    threshold: int = 3
    window: timedelta = timedelta(days=15)
    suppress_for: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Action:
    """`suppress`: a row of `kind` for `account`; `count`: a soft bounce toward the threshold;
    `clear` (a delivery): earlier soft bounces stop counting."""

    verb: str  # suppress | count | clear | ignore
    kind: str | None = None
    account: str = ALL


IGNORE = Action("ignore")


def decide(event: dict[str, Any]) -> Action:
    """The recipe for one event. Events written before `final`/`scope` existed: `final` is true
    except for soft bounces; `scope` is unknown, but an old `invalid` is `recipient` unless its
    reason says otherwise (OLD_INVALID_SCOPE)."""
    type_, account, reason = event["type"], event["account"], event.get("reason") or ""
    final = event.get("final", type_ != "soft_bounce")
    scope = event.get("scope") or (OLD_INVALID_SCOPE.get(reason, "recipient") if type_ == "invalid" else "unknown")
    if type_ == "delivered":
        return Action("clear")
    if type_ == "invalid":
        if scope in ADDRESS_SCOPES:
            return Action("suppress", "invalid")
        if scope == "provider" and reason == "unsubscribed":
            return Action("suppress", "unsubscribed", account)   # SendCloud-family 402: the recipient opted out
        # the provider's own list: mirrored per account, never evidence about the address
        return Action("suppress", "provider", account) if scope == "provider" else IGNORE
    if type_ in ("complaint", "unsubscribed"):
        return Action("suppress", type_, account)  # the recipient's wish, for what this account sends
    if type_ == "soft_bounce" and final and scope in ADDRESS_SCOPES:
        return Action("count")
    return IGNORE  # interim soft bounces (the provider retries) and sender/content/policy/provider/unknown


def soft_verdict(bounces: list[datetime], delivered: datetime | None,
                 recipe: Recipe) -> tuple[datetime, datetime] | None:
    """(since, until) of a time-boxed suppression, or None: the latest `threshold` counted soft
    bounces within `window`, counting only those after the last delivery. A function of the set,
    so the order the events arrive in does not matter."""
    counted = sorted(t for t in bounces if delivered is None or t > delivered)
    hits = [last for first, last in zip(counted, counted[recipe.threshold - 1:], strict=False)
            if last - first <= recipe.window]
    return (hits[-1], hits[-1] + recipe.suppress_for) if hits else None


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit: BEGIN ... COMMIT
    db.executescript(DDL)
    return db


def apply(db: sqlite3.Connection, event: dict[str, Any], recipe: Recipe) -> None:
    """One event, inside the caller's transaction."""
    action, recipient, at = decide(event), event["recipient"], iso(parse(event["occurred_at"]))
    db.execute("INSERT INTO applied VALUES (?, 1) ON CONFLICT DO UPDATE SET n = n + 1", (event["type"],))
    if action.verb == "suppress":  # permanent; the earliest evidence is kept
        db.execute("INSERT INTO suppression VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT DO UPDATE SET"
                   " reason = excluded.reason, since = excluded.since, event_id = excluded.event_id"
                   " WHERE excluded.since < suppression.since",
                   (recipient, action.account, action.kind, event.get("reason"), at, event["event_id"]))
        return
    if action.verb == "count":
        db.execute("INSERT OR IGNORE INTO soft_bounce VALUES (?, ?, ?)", (event["event_id"], recipient, at))
    elif action.verb == "clear":
        db.execute("INSERT INTO delivered VALUES (?, ?) ON CONFLICT DO UPDATE SET at = max(at, excluded.at)",
                   (recipient, at))
    else:
        return
    row = db.execute("SELECT at FROM delivered WHERE recipient = ?", (recipient,)).fetchone()
    bounces = [parse(r[0]) for r in db.execute("SELECT at FROM soft_bounce WHERE recipient = ?", (recipient,))]
    verdict = soft_verdict(bounces, parse(row[0]) if row else None, recipe)
    if verdict is None:
        db.execute("DELETE FROM suppression WHERE recipient = ? AND kind = 'soft_bounce'", (recipient,))
    else:
        db.execute("INSERT OR REPLACE INTO suppression VALUES (?, ?, 'soft_bounce', NULL, ?, ?, NULL)",
                   (recipient, ALL, iso(verdict[0]), iso(verdict[1])))


def commit_batch(db: sqlite3.Connection, batch: dict[TopicPartition, list[Any]], recipe: Recipe) -> None:
    """The batch's rows and its offsets: one SQLite transaction, all or nothing."""
    stored = stored_offsets(db)
    db.execute("BEGIN")
    try:
        for tp, records in batch.items():
            fresh = [r for r in records if r.offset >= stored.get(tp, 0)]  # already applied: skip
            for r in fresh:
                if dict(r.headers or ()).get("schema", SCHEMA_HEADER) == SCHEMA_HEADER:
                    apply(db, json.loads(r.value), recipe)
            if fresh:
                db.execute("INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                           (tp.topic, tp.partition, fresh[-1].offset + 1))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def stored_offsets(db: sqlite3.Connection) -> dict[TopicPartition, int]:
    return {TopicPartition(t, p): n for t, p, n in db.execute("SELECT topic, part, next FROM offsets")}


async def _seek_new(consumer: AIOKafkaConsumer, db: sqlite3.Connection, known: set[TopicPartition]) -> None:
    """Partitions assigned since the last look start where the database says (or at the beginning)."""
    stored = stored_offsets(db)
    for tp in consumer.assignment() - known:
        consumer.seek(tp, stored[tp]) if tp in stored else await consumer.seek_to_beginning(tp)
        known.add(tp)


async def consume(bootstrap: str, prefix: str, db_path: str, *, once: bool = False,
                  stop: asyncio.Event | None = None, recipe: Recipe = Recipe(), max_records: int = 500,
                  **client: Any) -> None:
    """Follow the topics until `stop` is set (or, with `once`, until caught up with the topics that exist)."""
    db = open_db(db_path)
    topics = [f"{prefix}.{t}" for t in TYPES]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=max_records, metadata_max_age_ms=5000, **client)
    await consumer.start()
    try:
        consumer.subscribe(topics)  # without a group: every partition, new ones as they appear
        known: set[TopicPartition] = set()
        end: dict[TopicPartition, int] | None = None
        if once:
            existing = set(topics) & await consumer.topics()
            for _ in range(300):  # the assignment follows the first metadata answer
                if {tp.topic for tp in consumer.assignment()} >= existing:
                    break
                await asyncio.sleep(0.1)
            end = await consumer.end_offsets(list(consumer.assignment()))
        while stop is None or not stop.is_set():
            await _seek_new(consumer, db, known)
            if end is not None and all([await consumer.position(tp) >= n for tp, n in end.items()]):
                break
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                commit_batch(db, batch, recipe)
    finally:
        await consumer.stop()
        db.close()


def summary(db_path: str, now: datetime | None = None) -> dict[str, int]:
    """Rows in force per kind."""
    with closing(sqlite3.connect(db_path)) as db:
        db.executescript(DDL)
        rows = db.execute("SELECT kind, count(*) FROM suppression WHERE until IS NULL OR until > ? GROUP BY kind",
                          (iso(now or datetime.now(UTC)),)).fetchall()
    return {kind: dict(rows).get(kind, 0) for kind in KINDS}


def show(db_path: str) -> None:
    now = iso(datetime.now(UTC))
    with closing(sqlite3.connect(db_path)) as db:
        db.executescript(DDL)
        rows = db.execute("SELECT recipient, account, kind, reason, since, until FROM suppression"
                          " WHERE until IS NULL OR until > ? ORDER BY recipient, account, kind", (now,)).fetchall()
        applied = dict(db.execute("SELECT type, n FROM applied").fetchall())
    print(f"{'recipient':<36}{'account':<20}{'kind':<14}{'reason':<18}{'since':<22}until")
    for recipient, account, kind, reason, since, until in rows:
        print(f"{recipient:<36}{account:<20}{kind:<14}{reason or '-':<18}{since:<22}{until or 'permanent'}")
    print(f"{len(rows)} rows in force; events read: " + ", ".join(f"{t} {applied.get(t, 0)}" for t in TYPES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--prefix", help="the worker's kafka.topic_prefix")
    parser.add_argument("--db", required=True, help="the SQLite file (the list and the offsets)")
    parser.add_argument("--once", action="store_true", help="stop when caught up instead of following")
    parser.add_argument("--show", action="store_true", help="print the rows in force and exit")
    args = parser.parse_args(argv)
    if args.show:
        show(args.db)
        return 0
    if not (args.bootstrap and args.prefix):
        parser.error("--bootstrap and --prefix are required unless --show")
    try:
        asyncio.run(consume(args.bootstrap, args.prefix, args.db, once=args.once))
    except KeyboardInterrupt:
        pass  # nothing half-done: an open batch's transaction was rolled back
    return 0


if __name__ == "__main__":
    sys.exit(main())
