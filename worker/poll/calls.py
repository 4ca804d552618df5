"""What every call of an account's poll runner shares: the call itself, its failure, its commit.

`Calls` is the base of the runner (worker.poll.runner, the loop and the date windows) and of its
id channel (worker.poll.idcalls). It holds the account's state as /status shows it (`state`, the
last error and the provider's reason for it, the last success) and the three steps every piece of
work takes:
- `_fetch`: one call through the `Fetcher` (limiter, timeout, typed errors); a failure reschedules
  what was asked through the caller's `retry(secs)` and never advances anything.
- `_failure`: a failure's wait. A throttle waits on the limiter (its AIMD already slowed down), a
  misconfigured account pauses whole for FATAL_BACKOFF_SECS, a bad request waits the longest
  interval, anything else the account's retry bound.
- `_persist`: state changes committed with the shard's open batch. A failed commit calls the
  caller's `failed()` (its work is asked again: nothing moved); a closed shard stops the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aiohttp
import attrs

from worker.config import AccountConfig
from worker.errors import BadRequest, CommitFailed, FatalConfig, PollError, ShardClosed, Throttled
from worker.poll.fetch import Fetched, Fetcher, failure_reason, fetch_error_type
from worker.poll.sink import PollSink, StateChange
from worker.providers.base import PollQuery
from worker.raw import PollPageRecord

log = logging.getLogger("worker.poll")

FATAL_BACKOFF_SECS = 300.0
UNEXPECTED_BACKOFF_SECS = 30.0
COMMIT_RETRY_SECS = 5.0   # ids whose check did not commit are due again after this
FAILURES = (PollError, aiohttp.ClientError, asyncio.TimeoutError)


@attrs.frozen
class Call:
    """A call's question, its answer and when it was answered."""

    query: PollQuery
    fetched: Fetched
    at: datetime


class Calls:
    def __init__(self, account: AccountConfig, fetcher: Fetcher, sink: PollSink,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.account = account
        self.fetcher = fetcher
        self.sink = sink
        self.clock = clock
        self._sleep = sleep
        self.labels = (account.provider.value, account.name)
        self.state = "starting"
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.last_reason: str | None = None   # the provider's answer to the last failed call
        self._failed_at: datetime | None = None   # when that call failed
        self.pages = 0
        self._closed: ShardClosed | None = None
        self._paused = False
        self._tasks: set[asyncio.Task] = set()              # calls in flight
        self._commits: set[asyncio.Task] = set()            # commits outstanding
        self._wake = asyncio.Event()                        # set when a call or a commit ends

    async def _fetch(self, query: PollQuery, retry: Callable[[float], None], refused: bool = False) -> Fetched | None:
        """The answer, or None after a failure: `retry(secs)` reschedules what failed, nothing
        advances. With `refused`, a bad request is raised for the caller to take apart."""
        self.state = "polling"
        try:
            return await self.fetcher.fetch(query)
        except FAILURES as exc:
            if refused and isinstance(exc, BadRequest):
                raise
            await self._failure(exc, retry)
            return None
        except BaseException:
            retry(UNEXPECTED_BACKOFF_SECS)
            raise

    async def _persist(self, changes: Sequence[StateChange], failed: Callable[[], None]) -> bool:
        """Commit `changes` with the shard's open batch; whether they committed. A failed commit
        calls `failed()` (the shard backs off; what was asked is asked again); a closed shard stops
        the runner (its next owner starts from `_state`)."""
        try:
            await self.sink.persist(changes)
        except CommitFailed:
            failed()
            return False
        except ShardClosed as exc:
            self._closed = exc
            return False
        return True

    def _record(self, call: Call) -> PollPageRecord:
        f = call.fetched
        return PollPageRecord(self.account.provider, self.account.name, call.at, call.query, f.status, f.headers,
                              f.body)

    def _reject(self, call: Call) -> None:
        """A page with unreadable rows goes whole to the dead-letter topic, in the batch of its
        readable rows."""
        if call.fetched.page.rejected:
            self.sink.reject(self._record(call), call.fetched.page.rejected[0].reason)

    async def _failure(self, exc: BaseException, retry: Callable[[float], None]) -> None:
        self.last_error, self.last_reason = fetch_error_type(exc), failure_reason(exc)
        self._failed_at = self.clock()
        said = {"provider": self.labels[0], "account": self.labels[1], "error_type": self.last_error,
                "reason": self.last_reason}
        if isinstance(exc, Throttled):
            retry(0.0)  # the fetcher slowed the limiter down; its pause is the wait
            self.state = "throttled"
        elif isinstance(exc, FatalConfig):
            self.state = "fatal_config"
            log.error("account misconfigured; polling paused", extra=said)
            self._paused = True   # the whole account waits, not only this call
            try:
                await self._sleep(FATAL_BACKOFF_SECS)
            finally:
                self._paused = False
                retry(0.0)
        elif isinstance(exc, BadRequest):
            self.state = "bad_request"
            log.error("provider rejected a request", extra=said)
            retry(self.account.poll.interval_max_secs)
        else:
            self.state = "retrying"
            retry(min(60.0, self.account.poll.retry_max_secs))

    def _succeeded(self, answered: datetime) -> None:
        """A page committed; `answered`: when its call returned. A call answered before the last
        failure, committed after it, does not clear that failure's reason (polling audit of
        2026-12-06: /status showed `fatal_config` with no reason, cleared by an earlier page)."""
        self.pages += 1
        self.last_success = self.clock()
        if self._failed_at is None or answered >= self._failed_at:
            self.last_error = self.last_reason = None

    def _start_commit(self, work: Awaitable[None]) -> None:
        """A commit beside the calls: a call slot is never held by a commit."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda _t: self._wake.set())
        self._commits.add(task)
