"""A shard transaction's unit: the `Batch` of writes staging builds (worker.staging) and the shard
commits (worker.transaction), and the helpers of its commit protocol.

A batch holds what one transaction writes (events, `_state` records, dead letters, copies of a
spread account's polled pages for its other shards' `_raw` partitions, the `_raw` offset) and what memory changes once it commits (dedup and replay words in its overlays, the id
changes it learned, its tally); futures waiting for it resolve then, or fail with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import attrs

from worker.deadletter import DeadLetter
from worker.metrics import Tally
from worker.poll.sink import IdChange
from worker.state import StateWrite

EventRecord = tuple[str, bytes, bytes, list[tuple[str, bytes]]]


@attrs.frozen
class Expired:
    """What one expiry pass found: dedup keys, tracked ids and replay keys to tombstone, and per
    account the keys of final ids kept by hash only (dropped without a tombstone)."""

    keys: list[int]
    ids: list[IdChange]
    replays: list[int]
    hashed: dict[str, list[int]]


@attrs.define
class Batch:
    events: list[EventRecord] = attrs.field(factory=list)
    state: list[StateWrite] = attrs.field(factory=list)
    dead: list[DeadLetter] = attrs.field(factory=list)
    forwarded: list[tuple[int, bytes, bytes]] = attrs.field(factory=list)  # `_raw` (shard, key, value): page copies
    overlay: dict[int, int | None] = attrs.field(factory=dict)    # dedup words decided here; None: deleted
    replays: dict[int, int | None] = attrs.field(factory=dict)    # replay words (worker.replays); None: deleted
    learned: dict[tuple[str, str], IdChange] = attrs.field(factory=dict)  # by (account, id): applied after the commit
    raw_offset: int | None = None                                  # `_raw` position after this batch
    waiters: list[asyncio.Future] = attrs.field(factory=list)
    tally: Tally = attrs.field(factory=Tally)
    size: int = 0

    @property
    def quiet(self) -> bool:
        """Whether nobody downstream waits for this batch: no events, dead letters or `_raw` records
        (read or forwarded)."""
        return not (self.events or self.dead or self.forwarded) and self.raw_offset is None

    @property
    def empty(self) -> bool:
        return not (self.events or self.state or self.dead or self.forwarded or self.raw_offset is not None
                    or self.waiters)


def fail_waiters(batch: Batch, exc: Exception) -> None:
    for fut in batch.waiters:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: a poller that already left must not warn


def merge_off_loop(build: Callable[[], Callable[[], None]]) -> asyncio.Future:
    """A table merge (worker.dedup `merge_job`) with its copying in a thread, where numpy lets go of
    the GIL: the event loop is held only to install the new columns (bench `dedup`: the longest
    stall of a merge at 10M entries, on the loop and off it)."""
    future = asyncio.get_running_loop().run_in_executor(None, build)
    future.add_done_callback(lambda done: None if done.cancelled() else done.result()())
    return future
