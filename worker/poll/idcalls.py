"""An account's calls by email id: a batch of ids asked, its answer committed, a refusal taken apart.

The runner (worker.poll.runner) claims id batches from an `IdTracker` (worker.poll.ids): UniSender's
tracked ids, or a gap-driven account's emails whose webhook is overdue. A batch's answer is planned
by the tracker (which ids settle, which stay open and when they are due again), observed into the
shard's open batch and committed with the ids' new state; batches commit independently (their ids
are disjoint). A batch the provider refuses as a request is taken apart (worker.poll.isolate): ids
the worker itself would not send are dropped at once, ids refused alone are dropped when others of
the batch were answered, and a refusal of every part is the request's, which waits as any bad
request does.
"""

from __future__ import annotations

import logging
from datetime import datetime

from worker import metrics
from worker.errors import BadRequest, ShardClosed
from worker.poll.calls import COMMIT_RETRY_SECS, FAILURES, UNEXPECTED_BACKOFF_SECS, Call, Calls
from worker.poll.fetch import Fetched
from worker.poll.ids import IdPlan, IdTracker
from worker.poll.isolate import COOLDOWN_SECS as ISOLATE_COOLDOWN_SECS
from worker.poll.isolate import refused_alone, unsendable
from worker.poll.sink import IdChange
from worker.providers import get_module
from worker.providers.base import PollQuery

log = logging.getLogger("worker.poll")


class IdCalls(Calls):
    _isolate_after = 0.0   # refused id batches are not taken apart before (isolate.COOLDOWN_SECS)

    async def _ids_call(self, tracker: IdTracker, asked: list[str]) -> None:
        query = self._id_query(tracker, asked)
        try:
            fetched = await self._fetch(query, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs),
                                        refused=True)
        except BadRequest as exc:   # a batch refused as a request: find the ids it cannot take
            await self._refused(tracker, asked, exc)
            return
        if fetched is None:
            return
        self._start_commit(self._commit_ids(tracker, asked, query, fetched, self.clock()))

    async def _refused(self, tracker: IdTracker, asked: list[str], exc: BadRequest) -> None:
        """A batch of ids refused as a request (worker.poll.isolate). Ids the worker itself would
        not send are dropped at once and the rest is due again. Else a batch of several is asked
        again in parts, unless one was in vain within the cooldown: the ids refused alone are
        dropped when others were answered; when none was, the refusal was the request's, and the
        batch waits as any bad request does."""
        now = self.clock()
        own = [i for i in asked if unsendable(self.account, self._id_query(tracker, [i]), now)]
        if own:
            rest = [i for i in asked if i not in own]
            if rest:
                tracker.failed(rest, now.timestamp(), 0.0)
            await self._drop(tracker, own)
            return
        if len(asked) == 1 or now.timestamp() < self._isolate_after:
            await self._failure(exc, lambda secs: tracker.failed(asked, self.clock().timestamp(), secs))
            return
        done: set[str] = set()

        async def ask(part: list[str]) -> bool:
            query = self._id_query(tracker, part)
            try:
                fetched = await self.fetcher.fetch(query)
            except BadRequest:
                return False
            await self._commit_ids(tracker, part, query, fetched, self.clock())
            done.update(part)
            if self._closed is not None:
                raise self._closed
            return True

        def later(secs: float) -> None:
            tracker.failed([i for i in asked if i not in done], self.clock().timestamp(), secs)

        try:
            refused, answered = await refused_alone(asked, ask)
        except ShardClosed:
            return   # the runner stops (`_closed`); the shard's next owner starts from `_state`
        except FAILURES as failure:   # a throttle or an outage meanwhile: what was not answered waits
            await self._failure(failure, later)
            return
        except BaseException:
            later(UNEXPECTED_BACKOFF_SECS)
            raise
        if not answered:   # the request's fault, not an id's: the batch waits as any bad request does
            self._isolate_after = self.clock().timestamp() + ISOLATE_COOLDOWN_SECS
            await self._failure(exc, later)
            return
        if refused:
            await self._drop(tracker, refused)

    async def _drop(self, tracker: IdTracker, ids: list[str]) -> None:
        """Tombstone ids the provider cannot take; once committed, forget them."""
        log.warning("the provider refuses ids alone: dropped from id polling",
                    extra={"provider": self.labels[0], "account": self.labels[1], "ids": len(ids),
                           "error_type": BadRequest.error_type})
        metrics.error("poll", BadRequest.error_type)
        if await self._persist([IdChange(self.account.name, email_id, None) for email_id in ids],
                               lambda: tracker.failed(ids, self.clock().timestamp(), COMMIT_RETRY_SECS)):
            tracker.apply(IdPlan((), dict.fromkeys(ids), ()), self.clock().timestamp())

    def _id_query(self, tracker: IdTracker, asked: list[str]) -> PollQuery:
        if not tracker.gap_driven:
            return PollQuery(email_ids=tuple(asked), limit=len(asked))
        limit = get_module(self.account.provider).DEFAULTS.page_limit
        return PollQuery(send_date=tracker.send_date(tracker.ids[asked[0]]), email_ids=tuple(asked), limit=limit)

    async def _commit_ids(self, tracker: IdTracker, asked: list[str], query: PollQuery, fetched: Fetched,
                          answered: datetime) -> None:
        observed = self.clock()
        try:
            self._reject(Call(query, fetched, observed))
            plan = tracker.plan(asked, fetched.page, observed.timestamp())
            self.sink.observe(plan.observations, observed)
            committed = await self._persist(
                [IdChange(self.account.name, eid, t) for eid, t in plan.writes.items()],
                lambda: tracker.failed(asked, self.clock().timestamp(), COMMIT_RETRY_SECS))
        except ShardClosed as exc:   # the shard closed before the answer was staged (Shard.open_staging)
            self._closed = exc
            return
        except BaseException:
            tracker.failed(asked, self.clock().timestamp(), UNEXPECTED_BACKOFF_SECS)
            raise
        if committed:
            tracker.apply(plan, self.clock().timestamp())
            self._succeeded(answered)
