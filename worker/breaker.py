"""The shard's breaker: no single `_raw` record can stop a shard.

A batch can fail to commit for a reason that lies in one of its records (Kafka refuses a record as
too large or corrupt, or building it raises): replaying the batch fails the same way, for ever,
and every account on the shard stops. The breaker counts such failures at one `_raw` position:

1. after `limit` failures in a row of batches starting at the same offset, the shard processes
   the records from there up to the end of that batch one per transaction (isolation);
2. a record whose own transaction fails `limit` times is set aside: it goes to the dead-letter
   topic (reason `poison_record`, the value untouched, replayable) and the shard goes on.

Failures that are not about a record (the broker down, a timeout, fencing) are never counted: an
outage must not push data into the dead-letter topic. Pure: the shard reports, the breaker decides.
"""

from __future__ import annotations

import attrs


@attrs.define
class Breaker:
    limit: int = 3
    at: int | None = None                # where the failing batches start
    fails: int = 0
    isolate_until: int | None = None     # records before this offset go one per transaction

    @property
    def isolating(self) -> bool:
        return self.isolate_until is not None

    def failed(self, first: int | None, end: int | None) -> None:
        """A batch holding `_raw` records [first, end) failed for a reason in its records."""
        if first is None or end is None:
            return
        if first != self.at:
            self.at, self.fails = first, 0
        self.fails += 1
        if self.fails >= self.limit and not self.isolating:
            self.isolate_until, self.fails = end, 0

    def committed(self, end: int | None) -> None:
        """A batch committed up to `end` (exclusive)."""
        if end is None:
            return
        if self.at is not None and end > self.at:
            self.at, self.fails = None, 0
        if self.isolate_until is not None and end >= self.isolate_until:
            self.isolate_until = None

    def poison(self, offset: int) -> bool:
        """Whether the record at `offset` failed alone often enough to be set aside."""
        return self.isolating and offset == self.at and self.fails >= self.limit
