"""A poll runner's way into its shard (worker.poll.sink `PollSink`, answered by worker.shards `Shard`).

A page's observations are decided in the shard's open batch (a page of a spread account through
`Staging.observe_page`, which forwards the other shards' rows); the runner's state changes
(cursors, tracked ids) join the batch, and the future `persist` returns resolves when it commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime

from worker import raw
from worker.config import AccountConfig
from worker.model import Observation, Source
from worker.poll.sink import StateChange
from worker.raw import PollPageRecord
from worker.shards import Shard


class ShardSink:
    """A poll runner's way into its shard (worker.poll.sink.PollSink)."""

    def __init__(self, shard: Shard, account: AccountConfig) -> None:
        self.shard = shard
        self.account = account

    def observe(self, observations: Sequence[Observation], observed_at: datetime,
                page: PollPageRecord | None = None) -> int:
        staging = self.shard.open_staging()
        emitted = (staging.observe(self.account, observations, Source.POLL, observed_at) if page is None
                   else staging.observe_page(self.account, page, observations, observed_at))
        if self.account.poll.gap_driven:
            staging.learn(self.account, observations, observed_at, Source.POLL)   # a swept row may settle a gap
        staging.batch.size += max(1, len(observations))
        return emitted

    def reject(self, page: PollPageRecord, reason: str) -> None:
        self.shard.open_staging().dead_letter(self.account.provider.value, self.account.name, reason,
                                              raw.encode(page), self.shard.clock())

    def persist(self, changes: Sequence[StateChange]) -> Awaitable[None]:
        staging = self.shard.open_staging()
        done = staging.persist(changes)
        # A batch with output (events, dead letters, `_raw` records) commits as soon as the
        # committer is free: consumers wait for it (pages that arrive meanwhile join the next
        # batch). One of state alone (a re-sweep's cursors, checks that found nothing new) waits
        # to fill (QUIET_LINGER_SECS, or `batch_max_records` rows read), so a re-sweep commits ~10
        # pages a transaction, not one: the transaction was most of the CPU of a duplicate row
        # (bench quota, re-sweep). The window's next pages are fetched meanwhile (up to `ahead`).
        self.shard.nudge(now=not staging.batch.quiet)
        return done
