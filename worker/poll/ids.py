"""Id-based polling (UniSender, which has no date query): which ids to check next.

Ids arrive from the sent-message topic and from webhooks. They are checked in batches, soonest
due first, until their status is final or they are `max_age` old; each check that changes
nothing doubles that id's wait (1 min up to 6 h). checkEmail reports no times and no addresses,
so the tracker remembers each id's recipient and last status and turns a poll into an observation
only when the status changed: repeating an unchanged soft bounce every few minutes would
otherwise look like a new attempt. Final ids are remembered, unscheduled, until they age out, so
a sent record or webhook arriving after the final status cannot start the id over.
Pure: `now` is passed in, and plans are applied after their commit.

Persisted in `_state` (worker.state): recipient, sent time, last status and finality; due times
are not persisted (a restored id is simply due again), which keeps writes to changes.
"""

from __future__ import annotations

import heapq

import attrs

from worker.config import AccountConfig
from worker.providers import get_module
from worker.providers.base import PollPage

BASE_BACKOFF_SECS = 60.0
MAX_BACKOFF_SECS = 6 * 3600.0


@attrs.define(slots=True)
class Tracked:
    recipient: str
    sent_at: float
    status: str | None = None
    final: bool = False
    # scheduling only, neither persisted nor part of equality
    attempts: int = attrs.field(default=0, eq=False)
    due_at: float = attrs.field(default=0.0, eq=False)


@attrs.frozen
class IdPlan:
    """What one checkEmail answer changes: observations to submit and state writes (None = drop)."""

    observations: tuple
    writes: dict[str, Tracked | None]
    checked: tuple[str, ...]


@attrs.define
class IdTracker:
    max_age_secs: float
    batch: int
    ids: dict[str, Tracked] = attrs.field(factory=dict)
    _heap: list[tuple[float, str]] = attrs.field(factory=list)

    @classmethod
    def for_account(cls, account: AccountConfig, restored: dict[str, Tracked], now: float) -> IdTracker:
        """The tracker of an id-polled account, holding its restored ids, every one due now."""
        tracker = cls(account.poll.id_max_age_days * 86400.0, get_module(account.provider).DEFAULTS.id_batch or 500)
        for email_id, tracked in restored.items():
            tracker.restore(email_id, tracked, now)
        return tracker

    def _schedule(self, email_id: str, due_at: float) -> None:
        tracked = self.ids[email_id]
        if tracked.final:
            tracked.due_at = float("inf")
            return
        tracked.due_at = due_at
        heapq.heappush(self._heap, (due_at, email_id))

    def restore(self, email_id: str, tracked: Tracked, now: float) -> None:
        self.ids[email_id] = tracked
        self._schedule(email_id, now)

    def learn(self, email_id: str, recipient: str, sent_at: float, status: str | None,
              final: bool, now: float) -> Tracked | bool:
        """An id seen in the sent topic or a webhook: the state to persist, or False when nothing
        changed."""
        known = self.ids.get(email_id)
        if known is None:
            if now - sent_at > self.max_age_secs:
                return False
            return Tracked(recipient=recipient, sent_at=sent_at, status=status, final=final)
        if known.final:
            return False
        if final or (status is not None and status != known.status):
            return attrs.evolve(known, status=status if status is not None else known.status, final=final,
                                recipient=known.recipient or recipient)
        if not known.recipient and recipient:
            return attrs.evolve(known, recipient=recipient)
        return False

    def apply_write(self, email_id: str, tracked: Tracked | None, now: float) -> None:
        if tracked is None:
            self.ids.pop(email_id, None)
            return
        previous = self.ids.get(email_id)
        self.ids[email_id] = tracked
        if previous is None:
            self._schedule(email_id, now)
        elif tracked.status != previous.status or tracked.final:
            self._schedule(email_id, now + BASE_BACKOFF_SECS)
        else:
            tracked.due_at = previous.due_at

    def due(self, now: float) -> list[str]:
        """Up to `batch` ids whose check is due, soonest first."""
        out: list[str] = []
        seen: set[str] = set()
        while self._heap and len(out) < self.batch and self._heap[0][0] <= now:
            due_at, email_id = heapq.heappop(self._heap)
            tracked = self.ids.get(email_id)
            if tracked is None or tracked.due_at != due_at or email_id in seen:
                continue  # a stale heap entry
            seen.add(email_id)
            out.append(email_id)
        for email_id in out:  # back in the heap until the plan is applied
            heapq.heappush(self._heap, (self.ids[email_id].due_at, email_id))
        return out

    def next_due_in(self, now: float) -> float:
        while self._heap:
            due_at, email_id = self._heap[0]
            tracked = self.ids.get(email_id)
            if tracked is None or tracked.due_at != due_at:
                heapq.heappop(self._heap)
                continue
            return max(0.0, due_at - now)
        return float("inf")

    def plan(self, asked: list[str], page: PollPage, now: float) -> IdPlan:
        observations = []
        writes: dict[str, Tracked | None] = {}
        for obs in page.observations:
            tracked = self.ids.get(obs.email_id)
            if tracked is None or tracked.final:
                continue
            if obs.provider_status != tracked.status:
                observations.append(attrs.evolve(obs, recipient=tracked.recipient))
                writes[obs.email_id] = attrs.evolve(tracked, status=obs.provider_status, final=obs.final, attempts=0)
            elif obs.final:
                writes[obs.email_id] = attrs.evolve(tracked, final=True)
        for email_id in page.unknown_ids:
            if email_id in self.ids:
                writes[email_id] = None  # the provider does not know it (or no longer): give up
        for email_id in asked:
            tracked = self.ids.get(email_id)
            if tracked is not None and email_id not in writes and now - tracked.sent_at > self.max_age_secs:
                writes[email_id] = None
        return IdPlan(tuple(observations), writes, tuple(asked))

    def apply(self, plan: IdPlan, now: float) -> None:
        for email_id, tracked in plan.writes.items():
            if tracked is None:
                self.ids.pop(email_id, None)
            else:
                self.ids[email_id] = tracked
        for email_id in plan.checked:
            tracked = self.ids.get(email_id)
            if tracked is None:
                continue
            if email_id not in plan.writes:
                tracked.attempts += 1
            self._schedule(email_id, now + min(MAX_BACKOFF_SECS, BASE_BACKOFF_SECS * 2 ** tracked.attempts))

    def failed(self, asked: list[str], now: float, backoff_secs: float) -> None:
        for email_id in asked:
            if email_id in self.ids:
                self._schedule(email_id, now + backoff_secs)

    def expired(self, now: float) -> list[str]:
        """Ids older than max_age, final or not: the caller tombstones them."""
        return [email_id for email_id, t in self.ids.items() if now - t.sent_at > self.max_age_secs]

    def __len__(self) -> int:
        return len(self.ids)
