"""Polling by email id: which ids to check next.

Two uses, one tracker:
- **Id polling** (UniSender, which has no date query): every id is checked until its status is
  final or it is `max_age` old. Ids arrive from the sent-message topic and from webhooks. A
  delivered status is not final at UniSender (the letter may still be reported as spam or
  unsubscribed), but watching it for a month kept ~80 % of the ids as full records (bench soak):
  a delivered id settles at its first check `delivered_watch` after sending (24 h by default,
  `poll.id_delivered_watch_hours`); a complaint or unsubscribe after that comes by webhook only.
- **Gap-driven polling** (date-window providers whose status API takes ids, with a sent feed,
  `poll.gap_driven`): an email sent `gap_after` ago whose final status has not arrived (no webhook,
  no sweep found it) is checked by id; the date sweeps go on, slower, as a safety net. Webhooks and
  sweeps make ids final; most never need a call.

Freshness: after a check that changed nothing an id is due again after a fraction of its age
(`AGE_FRACTION`, within [floor, 6 h]); after a check that found a change, after the floor (a status
that just moved is the likeliest to move again). So young ids are checked most, and when quota is
short the oldest wait longest. Spare quota goes further (`claim(..., early=True)`): id polling
re-checks ids before they are due, least recently checked first, but never one checked less than
`min_recheck` ago. Gap-driven polling never spends a call early (saving calls is its point): an
unchanged id waits a larger fraction of its age (`GAP_AGE_FRACTION`: an email still soft-bounced
after its first checks is likelier to stay so, and the safety sweeps cover it too), a part batch
waits up to `linger` for more overdue ids of its send date, and a batch that goes anyway is topped
up with ids of its send date that have waited `GAP_TOP_UP_FRACTION` of their wait: re-checks (never
one checked within `min_recheck`), and ids never asked that are past that share of their gap (their
webhook is late, and likely lost): the call costs one token whatever it carries, and each id it
takes early is one that would have needed a call of its own later.

checkEmail reports no times and no addresses, so the tracker remembers each id's recipient and last
status and turns a poll into an observation only when the status changed: repeating an unchanged
soft bounce every few minutes would otherwise look like a new attempt. Only ids that can still
change are `Tracked` objects in `ids`; a final id moves to `settled` (worker.poll.settled: its send
time alone, 16 B for a numeric id), remembered until it ages out so that a sent record or webhook
arriving after the final status cannot start it over. Pure: `now` is passed in, and plans are
applied after their commit.

What a webhook teaches reaches `ids` only when its batch commits, but a poll answer may be planned
in between: `plan` compares a polled status with the id as it will be once everything staged so far
commits (`staged`, given by the shard's staging), so a status a webhook has just reported is not
emitted a second time by the poll that follows it.

Persisted in `_state` (worker.state): recipient, sent time, last status and finality; due times
are not persisted (a restored id is simply due again), which keeps writes to changes. A gap-driven
id that settles is tombstoned instead (`record`): remembered in memory, not across a restart.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo

import attrs

from worker.config import AccountConfig
from worker.model import EventType
from worker.poll.settled import SettledIds
from worker.providers import get_module
from worker.providers.base import PollPage

BASE_BACKOFF_SECS = 60.0        # a learned status change (webhook, sent feed): checked again after this
MAX_BACKOFF_SECS = 6 * 3600.0
AGE_FRACTION = 0.05             # an unchanged id is due again after this fraction of its age
GAP_AGE_FRACTION = 0.5          # ... a gap-driven one after this fraction
GAP_TOP_UP_FRACTION = 0.5       # a gap batch takes re-checks that waited this share of their wait
IN_FLIGHT = float("inf")        # the due time of a claimed id: not in the heap
GAP_LINGER_FRACTION = 0.1       # a part batch of gap ids waits this fraction of gap_after to fill...
GAP_LINGER_MAX_SECS = 60.0      # ...at most this long


@attrs.define(slots=True)
class Tracked:
    recipient: str
    sent_at: float
    status: str | None = None
    final: bool = False
    # scheduling only, neither persisted nor part of equality
    checked_at: float = attrs.field(default=float("-inf"), eq=False)
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
    floor_secs: float = BASE_BACKOFF_SECS      # the shortest wait after a check that changed nothing
    min_recheck_secs: float = 30.0             # early checks: never sooner than this after the last
    gap_after_secs: float | None = None        # gap-driven: a sent email is due this long after sending
    delivered_watch_secs: float = float("inf")  # id polling: a delivered id settles this long after sending
    tz: tzinfo | None = None                   # gap-driven: batches share one send date in this zone
    ids: dict[str, Tracked] = attrs.field(factory=dict)              # ids that can still change
    settled: SettledIds = attrs.field(factory=SettledIds)           # final ids, until they age out
    _heap: list[tuple[float, str]] = attrs.field(factory=list)          # (due_at, id)
    _by_check: list[tuple[float, str]] = attrs.field(factory=list)      # (checked_at, id): early re-checks
    fed: bool = False      # a sent record reached this tracker (since the process started)
    # an id as it will be once everything staged commits (None: unknown or its deletion is staged);
    # set by worker.staging, which owns the batches; unset, the committed `ids` are all there is
    staged: Callable[[str], Tracked | None] | None = None

    @classmethod
    def for_account(cls, account: AccountConfig, restored: dict[str, Tracked], now: float,
                    settled: SettledIds | None = None) -> IdTracker:
        """The tracker of an id-polled or gap-driven account, holding its restored ids, every
        unsettled one due now (gap-driven: once its gap has passed), and its restored final ids
        (`settled`, as the restore built them)."""
        p, d = account.poll, get_module(account.provider).DEFAULTS
        if d.polling == "ids":
            tracker = cls(p.id_max_age_days * 86400.0, d.id_batch or 500, floor_secs=p.id_min_recheck_secs,
                          min_recheck_secs=p.id_min_recheck_secs,
                          delivered_watch_secs=p.id_delivered_watch_hours * 3600.0)
        else:
            # Never an id again within the provider's result cache (a re-check riding in a batch
            # early, `_may_join`, included); ids age out with the lookback, as the date windows do
            # (dedup keeps its entries that long: worker.staging).
            floor = max(p.gap_after_secs, p.cache_ttl_secs)
            tracker = cls((p.lookback_days + 1) * 86400.0, d.id_batch, floor_secs=floor,
                          min_recheck_secs=p.cache_ttl_secs,
                          gap_after_secs=p.gap_after_secs, tz=d.tz)
        if settled is not None:
            tracker.settled = settled
        for email_id, tracked in restored.items():
            tracker.restore(email_id, tracked, now)
        return tracker

    @property
    def gap_driven(self) -> bool:
        return self.gap_after_secs is not None

    def _schedule(self, email_id: str, due_at: float) -> None:
        tracked = self.ids[email_id]
        tracked.due_at = due_at
        heapq.heappush(self._heap, (due_at, email_id))

    def _first_due(self, tracked: Tracked, now: float) -> float:
        return now if self.gap_after_secs is None else max(now, tracked.sent_at + self.gap_after_secs)

    def interval(self, tracked: Tracked, now: float) -> float:
        """The wait after a check that changed nothing: a fraction of the id's age."""
        fraction = AGE_FRACTION if self.gap_after_secs is None else GAP_AGE_FRACTION
        return min(MAX_BACKOFF_SECS, max(self.floor_secs, fraction * (now - tracked.sent_at)))

    def _may_join(self, tracked: Tracked, now: float) -> bool:
        """Gap-driven: may an id not due yet ride in a batch that goes now? Once it has waited
        `GAP_TOP_UP_FRACTION` of its wait: since its last check (never within `min_recheck`), or,
        never asked yet, since it was sent (its webhook is late by then, and likely lost)."""
        checked = tracked.checked_at
        if checked == float("-inf"):
            start = tracked.sent_at
        elif checked + self.min_recheck_secs > now:
            return False
        else:
            start = checked
        return tracked.due_at - now <= GAP_TOP_UP_FRACTION * (tracked.due_at - start)

    def _settle(self, email_id: str, tracked: Tracked) -> None:
        """A final id leaves the schedule (its heap entries go stale) for `settled`."""
        self.ids.pop(email_id, None)
        self.settled.add(email_id, tracked.sent_at, persisted=not self.gap_driven)

    def record(self, tracked: Tracked) -> Tracked | None:
        """What `_state` keeps of a learned change. Gap-driven: a final id nothing (a tombstone; it
        is remembered by hash in memory, worker.poll.settled), since an answer of a date-window
        provider carries its times and dedup catches a repeat; id polling keeps every final id for
        `max_age`, as checkEmail's answers have no times to tell a repeat by."""
        return None if tracked.final and self.gap_driven else tracked

    def _drop(self, email_id: str) -> None:
        self.ids.pop(email_id, None)
        self.settled.discard(email_id)

    def restore(self, email_id: str, tracked: Tracked, now: float) -> None:
        if tracked.final:   # its record is in `_state` (a release before this one wrote it): kept by it
            self.settled.add(email_id, tracked.sent_at)
            return
        self.ids[email_id] = tracked
        self._schedule(email_id, self._first_due(tracked, now))
        if not self.gap_driven:
            heapq.heappush(self._by_check, (tracked.checked_at, email_id))

    def learn(self, email_id: str, recipient: str, sent_at: float, status: str | None,
              final: bool, now: float) -> Tracked | bool:
        """An id seen in the sent topic, a webhook or a sweep: the state to persist, or False when
        nothing changed. Compared with the id as staged (`staged`): a sent record staged after a
        final webhook of the same batch must not open the id again."""
        known = self.ids.get(email_id) if self.staged is None else self.staged(email_id)
        if known is not None and known.final:
            return False    # final once its batch commits: it leaves for `settled` then
        if known is None:
            if now - sent_at > self.max_age_secs or email_id in self.settled:
                return False
            return Tracked(recipient=recipient, sent_at=sent_at, status=status, final=final)
        if final or (status is not None and status != known.status):
            return attrs.evolve(known, status=status if status is not None else known.status, final=final,
                                recipient=known.recipient or recipient)
        if not known.recipient and recipient:
            return attrs.evolve(known, recipient=recipient)
        return False

    def apply_write(self, email_id: str, tracked: Tracked | None, now: float) -> None:
        if tracked is None:
            self._drop(email_id)
            return
        if tracked.final:
            self._settle(email_id, tracked)
            return
        previous = self.ids.get(email_id)
        self.ids[email_id] = tracked
        if previous is None:
            self._schedule(email_id, self._first_due(tracked, now))
            if not self.gap_driven:
                heapq.heappush(self._by_check, (tracked.checked_at, email_id))
        elif tracked.status != previous.status and previous.due_at != IN_FLIGHT:
            self._schedule(email_id, self._first_due(tracked, now + BASE_BACKOFF_SECS))
        else:
            tracked.due_at, tracked.checked_at = previous.due_at, previous.checked_at

    def claim(self, now: float, early: bool = False, top_up: bool = True) -> list[str]:
        """Up to `batch` ids whose check is due, soonest first; claimed (out of the schedule) until
        `apply` or `failed` puts them back. Gap-driven batches share one send date (the status APIs
        take one date per call) and wait to fill: a part batch goes only once its first id has
        waited `linger`. `early`: spare quota, ids not due yet, least recently checked first and
        none checked within `min_recheck` (never for gap-driven polling). A batch of due ids that
        is not full is topped up the same way (gap-driven: by re-checks of its date that may join,
        `_may_join`): the call costs one token whatever it carries."""
        if early:
            return [] if self.gap_driven else self._claim_early(now)
        out: list[str] = []
        held: list[tuple[float, str]] = []
        day: date | None = None
        first_due = None
        seen: set[str] = set()
        reach = now + GAP_TOP_UP_FRACTION * MAX_BACKOFF_SECS if self.gap_driven and top_up else now
        # ids not due yet are looked at only once a due one goes (riders, gap-driven)
        while self._heap and len(out) < self.batch and self._heap[0][0] <= (now if first_due is None else reach):
            due_at, email_id = heapq.heappop(self._heap)
            tracked = self.ids.get(email_id)
            if tracked is None or tracked.due_at != due_at or email_id in seen:
                continue  # a stale heap entry
            seen.add(email_id)
            if due_at > now and not self._may_join(tracked, now):
                held.append((due_at, email_id))
                if len(held) > 4 * self.batch:
                    break
                continue
            first_due = due_at if first_due is None else first_due
            if self.tz is not None:
                sent = self.send_date(tracked)
                if day is not None and sent != day:
                    held.append((due_at, email_id))
                    if len(held) > 4 * self.batch:
                        break
                    continue
                day = sent
            out.append(email_id)
        if self.gap_driven and out and len(out) < self.batch and first_due is not None \
                and now - first_due < self.linger_secs:
            held += [(self.ids[e].due_at, e) for e in out]   # not full yet: let it fill
            out = []
        for email_id in out:
            self.ids[email_id].due_at = IN_FLIGHT
        for entry in held:
            heapq.heappush(self._heap, entry)
        if out and top_up and not self.gap_driven and len(out) < self.batch:
            out += self._claim_early(now, self.batch - len(out))
        return out

    @property
    def linger_secs(self) -> float:
        return min(GAP_LINGER_MAX_SECS, GAP_LINGER_FRACTION * (self.gap_after_secs or 0.0))

    def _claim_early(self, now: float, most: int | None = None) -> list[str]:
        out: list[str] = []
        most = self.batch if most is None else most
        while self._by_check and len(out) < most and self._by_check[0][0] + self.min_recheck_secs <= now:
            checked_at, email_id = heapq.heappop(self._by_check)
            tracked = self.ids.get(email_id)
            if tracked is None or tracked.checked_at != checked_at or tracked.due_at == IN_FLIGHT:
                continue  # stale, settled or claimed already
            tracked.due_at = IN_FLIGHT   # its entry in the due heap is stale from now on
            out.append(email_id)
        return out

    def _checked(self, email_id: str, tracked: Tracked, at: float) -> None:
        tracked.checked_at = at
        if self.gap_driven:
            return
        heapq.heappush(self._by_check, (at, email_id))
        if len(self._by_check) > 2 * len(self.ids) + 1024:   # drop the stale entries
            self._by_check = [(t.checked_at, e) for e, t in self.ids.items()]
            heapq.heapify(self._by_check)

    def due(self, now: float) -> list[str]:
        """The ids `claim` would take now, left in the schedule (a look, for tests and status)."""
        out = self.claim(now, top_up=False)
        for email_id in out:
            self._schedule(email_id, now)
        return out

    def send_date(self, tracked: Tracked) -> date:
        return datetime.fromtimestamp(tracked.sent_at, self.tz or UTC).date()

    def next_due_in(self, now: float) -> float:
        """Seconds until `claim` may return ids (a gap-driven part batch: once it has lingered)."""
        while self._heap:
            due_at, email_id = self._heap[0]
            tracked = self.ids.get(email_id)
            if tracked is None or tracked.due_at != due_at:
                heapq.heappop(self._heap)
                continue
            return max(0.0, due_at + (self.linger_secs if self.gap_driven else 0.0) - now)
        return float("inf")

    def staleness(self, now: float) -> float:
        """Seconds the id due longest has waited (0 when none is due)."""
        self.next_due_in(now)   # drops stale entries from the top
        return max(0.0, now - self._heap[0][0]) if self._heap else 0.0

    def plan(self, asked: list[str], page: PollPage, now: float) -> IdPlan:
        """What an answer changes. Id polling emits a row only when its status differs from the id's
        as staged (checkEmail has no times); gap-driven answers carry their times, so every row goes on (dedup drops
        what was seen) and the tracker learns from them as from any polled row (worker.staging)."""
        observations = []
        writes: dict[str, Tracked | None] = {}
        latest = self.ids.get if self.staged is None else self.staged
        for obs in page.observations:
            if self.gap_driven:
                observations.append(obs)   # the shard learns statuses from every polled row
                continue
            tracked = latest(obs.email_id)
            if tracked is None:
                continue
            final = obs.final or (obs.type is EventType.DELIVERED
                                  and now - tracked.sent_at >= self.delivered_watch_secs)
            if obs.provider_status != tracked.status:
                observations.append(attrs.evolve(obs, recipient=tracked.recipient))
                writes[obs.email_id] = attrs.evolve(tracked, status=obs.provider_status, final=final)
            elif final:
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
                self._drop(email_id)
            elif tracked.final:
                self._settle(email_id, tracked)
            else:
                self.ids[email_id] = tracked
        for email_id in plan.checked:
            tracked = self.ids.get(email_id)
            if tracked is None:
                continue
            self._checked(email_id, tracked, now)
            # a status that just changed is the likeliest to change again: the shortest wait
            wait = self.floor_secs if email_id in plan.writes else self.interval(tracked, now)
            self._schedule(email_id, now + wait)

    def failed(self, asked: list[str], now: float, backoff_secs: float) -> None:
        for email_id in asked:
            if email_id in self.ids:
                self._schedule(email_id, now + backoff_secs)

    def expiry_job(self, now: float) -> Callable[[], tuple[list[str], list[int]]]:
        """Ids older than max_age, final or not, found mostly off the event loop: called on the
        owner's thread it judges the open ids (a pass over `ids`) and takes the final ids'
        snapshots (worker.poll.settled `expiry_job`); the function it returns may run in a thread
        and gives (the ids the caller tombstones; the keys of final ids kept by hash only, which
        have no record: the caller drops them with `settled.drop_hashed`)."""
        old = [email_id for email_id, t in self.ids.items() if now - t.sent_at > self.max_age_secs]
        settled = self.settled.expiry_job(now, self.max_age_secs)

        def scan() -> tuple[list[str], list[int]]:
            persisted, hashed = settled()
            return old + persisted, hashed
        return scan

    def expired(self, now: float) -> list[str]:
        """`expiry_job` here and now: the ids to tombstone (final ids kept by hash only are dropped)."""
        tombstone, hashed = self.expiry_job(now)()
        self.settled.drop_hashed(hashed)
        return tombstone

    def __len__(self) -> int:
        return len(self.ids) + len(self.settled)
