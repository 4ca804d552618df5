"""What a poll runner hands to the shard that owns its account, and the values it hands over.

The runner never sees the shard. It stages what a page found and the state that page moves into
the shard's open batch through a `PollSink`, and learns the outcome from an awaitable:

    emitted = sink.observe(observations, observed_at)    # staged; how many become events
    done = sink.persist([CursorChange(...) or IdChange(...)])
    await done                                            # committed with those events, or raised

`observe` and `persist` called one after the other, with no await between them, land in the same
batch, so a cursor never commits without the events of its page, nor the events without it.
A date window's page comes with its record (`page`): a spread account's rows of other shards are
forwarded to them in the same batch. A page with rows that could not be read is handed to `reject` (before `observe`, in the same
batch): it goes whole to the dead-letter topic, replayable, while its readable rows are emitted and
the cursor moves on. `persist`'s awaitable raises CommitFailed (nothing of the batch committed: try the page again
later, nothing advanced) or ShardClosed (the shard left this replica: stop). The shard encodes
these values for `_state` (worker.state); poll/ never imports the shard, the staging or the codec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Protocol

import attrs

from worker.model import Observation
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.raw import PollPageRecord


@attrs.frozen
class CursorChange:
    """A date window's cursor after a committed page; None: the window left the lookback."""

    account: str
    window: str
    cursor: Cursor | None


@attrs.frozen
class IdChange:
    """A tracked id's persisted state after a committed check or sighting; None: forget it."""

    account: str
    email_id: str
    tracked: Tracked | None


StateChange = CursorChange | IdChange


class PollSink(Protocol):
    def observe(self, observations: Sequence[Observation], observed_at: datetime,
                page: PollPageRecord | None = None) -> int: ...

    def persist(self, changes: Sequence[StateChange]) -> Awaitable[None]: ...

    def reject(self, page: PollPageRecord, reason: str) -> None: ...
