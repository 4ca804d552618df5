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
import sys
import time
from collections.abc import Sequence

import attrs
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError

from worker import logs
from worker.config import Config
from worker.deadletter import UNKNOWN
from worker.emit import Topics, ensure_topics, producer_settings
from worker.errors import ERROR_TYPES, KAFKA, TIMEOUT, TopicLayoutError
from worker.intake import Admitted, RawWriter
from worker.kafka_tls import client_kwargs
from worker.letters import NAME, Letter, Outcome, Selection, Summary, resolve
from worker.progress import Progress

EXIT_FAILED = 1
EXIT_USAGE = 2
BATCH = 500
STALL_SECS = 60.0          # no position moved for this long: the broker is gone, give up (exit 1)


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
        consumer = AIOKafkaConsumer(**client_kwargs(k), group_id=self.group, enable_auto_commit=False,
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
