"""`email-status-worker replay-dead-letters`: put dead letters back on the normal path, exactly once.

A dead letter goes back into `_raw` through the one writer (worker.intake), so the shard that owns
its account parses and de-duplicates it like any other record: replaying can never emit twice. By
its `part` header (worker.deadletter): `raw` is decoded and written back unchanged; `record` (one
split webhook record) and `body` (a whole verified body, split again here) become WebhookRecords
received at the dead letter's `received_at`; `sent` becomes a SentMessage. What the code of this
release still cannot read, and what names an account the configuration lacks, is counted as still
unusable and left where it is; the checks are the webhook receiver's (and the shard's parse for a
poll page), so a replay does not dead-letter the same input again.

Exactly once on the Kafka side too: the command reads `<prefix>._dead_letter` (read_committed) in
its own consumer group, `<group_id>.replay.<name>`, and commits that group's offsets in the same
transaction as the `_raw` records they produced, one transaction per batch. The name defaults to a
hash of the selection, so running the same selection again resumes where it stopped, and a
different selection starts from the beginning of the topic. The transactional id
`<group_id>-replay-<name>` fences an earlier run of the same name before the group's offsets are
read, so two runs of one name cannot both write a batch. Reading stops at the end offsets seen at
start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from worker import logs, raw
from worker.config import AccountConfig, Config
from worker.deadletter import UNKNOWN
from worker.emit import Topics, ensure_topics, producer_settings
from worker.errors import ERROR_TYPES, KAFKA, TIMEOUT, MalformedPayload, TopicLayoutError, UnknownAccount, WorkerError
from worker.intake import Admitted, RawWriter, admit, check_fields
from worker.model import Provider, rfc3339
from worker.progress import Progress
from worker.providers import get_module
from worker.providers.base import WebhookRequest

EXIT_FAILED = 1
EXIT_USAGE = 2
BATCH = 500
STALL_SECS = 60.0          # no position moved for this long: the broker is gone, give up (exit 1)
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
PARTS = ("raw", "record", "body", "sent")


@attrs.frozen
class Selection:
    """Which dead letters to replay: any of `accounts` and of `reasons` (empty: all), received in
    [since, until)."""

    accounts: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def default_name(self) -> str:
        """A short hash of the selection, stable across runs: the same selection resumes."""
        canonical = orjson.dumps({"accounts": sorted(self.accounts), "reasons": sorted(self.reasons),
                                  "from": rfc3339(self.since) if self.since else None,
                                  "to": rfc3339(self.until) if self.until else None})
        return hashlib.sha256(canonical).hexdigest()[:12]

    def matches(self, letter: Letter) -> bool:
        return ((not self.accounts or letter.account in self.accounts)
                and (not self.reasons or letter.reason in self.reasons)
                and (self.since is None or letter.received_at >= self.since)
                and (self.until is None or letter.received_at < self.until))


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC (a date alone: its 00:00 UTC)."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@attrs.frozen
class Letter:
    """A dead letter as read back: its value and the headers worker.deadletter wrote."""

    provider: str
    account: str
    reason: str
    part: str
    content_type: str
    received_at: datetime
    request_headers: dict[str, str]
    value: bytes

    @classmethod
    def from_record(cls, record: Any) -> Letter:
        headers = {name: value or b"" for name, value in record.headers or ()}

        def text(name: str) -> str:
            return headers.get(name, b"").decode("utf-8", "replace")

        try:
            received_at = parse_time(text("received_at"))
        except ValueError:   # not one of ours: the broker's timestamp is the best we know
            received_at = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        return cls(provider=text("provider"), account=text("account"), reason=text("reason"), part=text("part"),
                   content_type=text("content-type"), received_at=received_at,
                   request_headers={name.removeprefix("request-"): value.decode("utf-8", "surrogateescape")
                                    for name, value in headers.items() if name.startswith("request-")},
                   value=record.value or b"")


@attrs.frozen
class Outcome:
    """What one dead letter becomes: records for `_raw`, and the error types of what is still unusable."""

    records: tuple[Admitted, ...] = ()
    unusable: tuple[str, ...] = ()
    not_needed: bool = False


def resolve(config: Config, letter: Letter) -> Outcome:
    """The normal path, without the network: decode, split and check what a dead letter holds."""
    try:
        if letter.part == "raw":
            record = raw.decode(letter.value)
            _check(_account(config, record.provider, record.account), record)
            return Outcome((admit(record),))
        if letter.part == "sent":
            sent = raw.SentMessage.from_feed(letter.value, letter.received_at)
            account = _account(config, sent.provider, sent.account)
            if get_module(account.provider).DEFAULTS.polling != "ids":
                return Outcome(not_needed=True)   # as the sent-message feed: only id-polled accounts need it
            return Outcome((admit(sent),))
        if letter.part not in PARTS:
            raise MalformedPayload(f"not a dead letter of ours (part {letter.part!r})")
        account = _account(config, letter.provider, letter.account)
        if letter.part == "record":
            record = orjson.loads(letter.value)
            if not isinstance(record, dict):
                raise MalformedPayload("a record dead letter that is not a JSON object")
            return _webhook(account, [record], letter.received_at)
        # a whole body; it was verified when received (its headers are gone, the signed ones kept)
        req = WebhookRequest(body=letter.value, content_type=letter.content_type, headers=letter.request_headers)
        return _webhook(account, get_module(account.provider).split_webhook(req), letter.received_at)
    except WorkerError as exc:
        return Outcome(unusable=(exc.error_type,))
    except (KeyError, TypeError, ValueError):   # orjson's JSONDecodeError, or a provider module's bug
        return Outcome(unusable=(MalformedPayload.error_type,))


def _account(config: Config, provider: Provider | str, name: str) -> AccountConfig:
    try:
        account = config.account(provider, name)
    except ValueError:   # "unknown", or a provider this release does not have
        account = None
    if account is None:
        raise UnknownAccount(f"no account {provider}/{name} in the configuration")
    return account


def _check(account: AccountConfig, record: raw.RawRecord) -> None:
    """Raise what the shard would dead-letter the record for."""
    module = get_module(account.provider)
    if isinstance(record, raw.WebhookRecord):
        check_fields(module.webhook_observations(account.context, dict(record.record)))
    elif isinstance(record, raw.PollPageRecord):
        module.parse_poll_response(account.context, record.query, record.status, record.headers, record.body,
                                   record.received_at)


def _webhook(account: AccountConfig, split: Sequence[dict[str, Any]], received_at: datetime) -> Outcome:
    """Split webhook records as the receiver keeps them: those the provider module reads now."""
    module = get_module(account.provider)
    records: list[Admitted] = []
    unusable: list[str] = []
    for record in split:
        try:
            check_fields(module.webhook_observations(account.context, record))
            records.append(admit(raw.WebhookRecord(account.provider, account.name, received_at, record)))
        except WorkerError as exc:
            unusable.append(exc.error_type)
        except (KeyError, TypeError, ValueError):
            unusable.append(MalformedPayload.error_type)
    return Outcome(tuple(records), tuple(unusable))


@attrs.define
class Summary:
    selected: Counter[tuple[str, str]] = attrs.field(factory=Counter)   # (reason, part) of the dead letters
    replayed: Counter[str] = attrs.field(factory=Counter)               # records written to _raw, by part
    unusable: Counter[str] = attrs.field(factory=Counter)               # still unusable, by error type now
    not_needed: int = 0
    passed_over: int = 0

    def add(self, letter: Letter, outcome: Outcome | None) -> None:
        if outcome is None:
            self.passed_over += 1
            return
        self.selected[(letter.reason, letter.part)] += 1
        if outcome.records:
            self.replayed[letter.part] += len(outcome.records)
        self.unusable.update(outcome.unusable)
        self.not_needed += outcome.not_needed

    def merge(self, other: Summary) -> None:
        self.selected.update(other.selected)
        self.replayed.update(other.replayed)
        self.unusable.update(other.unusable)
        self.not_needed += other.not_needed
        self.passed_over += other.passed_over

    def lines(self, dry_run: bool) -> list[str]:
        def counts(counter: Counter[Any]) -> str:
            items = sorted(("/".join(k) if isinstance(k, tuple) else k, n) for k, n in counter.items() if n)
            return f"  ({', '.join(f'{k} {n}' for k, n in items)})" if items else ""

        return [f"selected: {sum(self.selected.values())}{counts(self.selected)}",
                f"{'would replay' if dry_run else 'replayed'}: {sum(self.replayed.values())} record(s)"
                f"{counts(self.replayed)}",
                f"still unusable: {sum(self.unusable.values())}{counts(self.unusable)}",
                f"not needed: {self.not_needed}",
                f"passed over: {self.passed_over}"]


class OffsetProgress:
    """The replay's counts, drawn as one progress bar: dead letters read of those there were at start."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress(enabled)
        self.total = 0
        self.read = 0
        self.replayed = 0

    def draw(self, final: bool = False) -> None:
        self.bar.draw(self.read / self.total if self.total else 1.0,
                      f"{self.read}/{self.total} dead letters  {self.replayed} records replayed", final)


@attrs.define
class _Batch:
    """What one transaction carries: the records, the group's offsets past their dead letters, the counts."""

    records: list[Admitted] = attrs.field(factory=list)
    offsets: dict[TopicPartition, int] = attrs.field(factory=dict)
    summary: Summary = attrs.field(factory=Summary)

    def add(self, tp: TopicPartition, offset: int, letter: Letter, outcome: Outcome | None) -> None:
        self.summary.add(letter, outcome)
        if outcome is not None:
            self.records += outcome.records
        self.offsets[tp] = offset + 1


class Replay:
    """One run of the command over one selection (`run` raises KafkaError when Kafka fails)."""

    def __init__(self, config: Config, selection: Selection, *, name: str | None = None, dry_run: bool = False,
                 progress: bool = False, batch_size: int = BATCH) -> None:
        k = config.kafka
        self.config = config
        self.selection = selection
        self.name = name or selection.default_name()
        self.group = f"{k.group_id}.replay.{self.name}"
        self.transactional_id = f"{k.group_id}-replay-{self.name}"
        self.topics = Topics.from_config(k)
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.summary = Summary()
        self.progress = OffsetProgress(progress)

    async def run(self) -> Summary:
        k = self.config.kafka
        await ensure_topics(k, with_outputs=False)   # and refuses a _raw whose shards differ from kafka.shards
        producer = None
        if not self.dry_run:
            # Started first: it fences an earlier run of this name and aborts its open transaction,
            # so the offsets read next are final.
            producer = AIOKafkaProducer(**producer_settings(
                k, transactional_id=self.transactional_id,
                transaction_timeout_ms=int(k.transaction_timeout_secs * 1000), linger_ms=0))
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(KafkaError):
                    await producer.stop()
                raise
        consumer = AIOKafkaConsumer(**k.client_kwargs(), group_id=self.group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", isolation_level="read_committed")
        try:
            await consumer.start()
            await self._consume(consumer, producer)
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            if producer is not None:
                with contextlib.suppress(KafkaError):
                    await producer.stop()
            self.progress.draw(final=True)
        return self.summary

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None) -> None:
        tps = await self._partitions(consumer)
        consumer.assign(tps)
        end = await self._end_offsets(consumer, tps)
        position = {tp: await consumer.position(tp) for tp in tps}   # the group's offsets, else the beginning
        start = dict(position)
        self.progress.total = sum(max(0, end[tp] - start[tp]) for tp in tps)
        self.progress.draw()
        writer = RawWriter(self.config.kafka, producer) if producer is not None else None
        active = [tp for tp in tps if position[tp] < end[tp]]
        moved = time.monotonic()
        while active:
            fetched = await consumer.getmany(*active, timeout_ms=500, max_records=self.batch_size)
            batch = _Batch()
            for tp, messages in fetched.items():
                for message in messages:
                    if message.offset >= end[tp]:
                        break   # written after the start: not this run's
                    letter = Letter.from_record(message)
                    outcome = resolve(self.config, letter) if self.selection.matches(letter) else None
                    batch.add(tp, message.offset, letter, outcome)
                    if len(batch.records) >= self.batch_size:   # a body may split into many records
                        await self._flush(producer, writer, batch)
                        batch = _Batch()
            await self._flush(producer, writer, batch)
            before = sum(position.values())
            for tp in active:
                position[tp] = await consumer.position(tp)   # also past transaction markers and aborted records
            active = [tp for tp in active if position[tp] < end[tp]]
            self.progress.read = sum(min(position[tp], end[tp]) - start[tp] for tp in tps)
            self.progress.draw()
            if sum(position.values()) != before:
                moved = time.monotonic()
            elif time.monotonic() - moved > STALL_SECS:
                raise KafkaTimeoutError(f"{self.topics.dead_letter}: no progress for {STALL_SECS:g} s")

    async def _flush(self, producer: AIOKafkaProducer | None, writer: RawWriter | None, batch: _Batch) -> None:
        """Commit a batch (nothing in a dry run), then count it."""
        if not batch.offsets:
            return
        if producer is not None and writer is not None:
            await self._commit(producer, writer, batch.records, batch.offsets)
        self.summary.merge(batch.summary)
        self.progress.replayed += len(batch.records)

    async def _end_offsets(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where this run stops: the end (last stable) offsets when it starts."""
        return await consumer.end_offsets(tps)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.topics.dead_letter
        for attempt in range(50):   # a topic ensure_topics just created takes a moment to show
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                return [TopicPartition(topic, p) for p in sorted(partitions)]
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1 * min(attempt + 1, 5))
        raise KafkaTimeoutError(f"{topic}: no partitions in the metadata")

    async def _commit(self, producer: AIOKafkaProducer, writer: RawWriter, records: Sequence[Admitted],
                      offsets: dict[TopicPartition, int]) -> None:
        """The records and the group's offsets past them, in one transaction."""
        await producer.begin_transaction()
        try:
            await writer.write(records)
            await producer.send_offsets_to_transaction(offsets, self.group)
            await asyncio.wait_for(producer.commit_transaction(), self.config.kafka.produce_timeout_secs * 3)
        except BaseException:
            # Abort now rather than at the transaction timeout: an open transaction holds back
            # every shard reading the `_raw` partitions it wrote to. (The next run of this name
            # aborts it anyway, when its producer starts.)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), self.config.kafka.produce_timeout_secs)
            raise


def usage_problems(config: Config, selection: Selection, name: str | None) -> list[str]:
    """What makes a selection unusable before anything is read (exit 2)."""
    problems = []
    known = {a.name for a in config.accounts} | {UNKNOWN}
    for account in sorted(selection.accounts - known):
        problems.append(f"--account {account}: not in the configuration (add it first: its dead letters "
                        f"would be still unusable, and this selection would pass them for good)")
    for reason in sorted(selection.reasons - ERROR_TYPES):
        problems.append(f"--reason {reason}: not an error type (docs/metrics.md#error-types)")
    if selection.since and selection.until and selection.until <= selection.since:
        problems.append("--to must be after --from")
    if name is not None and not NAME.fullmatch(name):
        problems.append("--name: 1 to 100 of A-Z a-z 0-9 . _ -")
    return problems


def run_replay(config: Config, selection: Selection, *, name: str | None = None, dry_run: bool = False,
               progress: bool = True) -> int:
    logs.setup("WARNING")
    problems = usage_problems(config, selection, name)
    if problems:
        for problem in problems:
            print(f"replay-dead-letters: {problem}", file=sys.stderr)
        return EXIT_USAGE
    job = Replay(config, selection, name=name, dry_run=dry_run, progress=progress)
    status, failure = 0, None
    try:
        asyncio.run(job.run())
    except TopicLayoutError as exc:
        print(f"replay-dead-letters: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KafkaError, TimeoutError) as exc:
        status, failure = EXIT_FAILED, TIMEOUT if isinstance(exc, (KafkaTimeoutError, TimeoutError)) else KAFKA
    head = (f"replay-dead-letters {job.name}{' (dry run: nothing written)' if dry_run else ''}: "
            f"{job.topics.dead_letter} in group {job.group}")
    print("\n".join([head, *job.summary.lines(dry_run)]))
    if failure is not None:
        print(f"replay-dead-letters: Kafka failed ({failure}); what is counted above is committed, the rest is "
              f"not: run the same command again to resume", file=sys.stderr)
    return status
