"""What to poll next for date-window providers (EngageLab, SendCloud, Aurora, Tencent).

A window is one send date (in the provider's time zone) and one server-side status filter; a
sweep pages through it from offset 0 to its last page. Pure: the caller passes `now`, and cursor
changes are planned (`after_page`) and applied (`apply`) separately, because a cursor may only
advance once the page's events are committed.

- Dates: today back `lookback_days` (so lookback + 1 dates). Dates that fall out are retired and
  their cursors tombstoned.
- Order: invalid and soft-bounce filters before the unfiltered query before delivered (what the
  suppression and retry services wait for comes first when quota is short), then newer dates.
  A window overdue by more than its own interval goes first whatever its filter, so that when the
  quota is short the urgent windows come first but the others are still swept (no starvation).
- Intervals: each window starts at `interval_min * (1 + age in days)`; a sweep that produced events
  halves it, a quiet one lengthens it by half, within [interval_min, interval_max]. The next sweep
  is due `max(interval, cache_ttl)` after the previous sweep *ended*, so no query of the new sweep
  repeats one of the old within the provider's result cache.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

import attrs

from worker.config import AccountConfig
from worker.model import EventType
from worker.providers import get_module
from worker.providers.base import PollPage, PollQuery

_STATUS_RANK = {EventType.INVALID: 0, EventType.SOFT_BOUNCE: 1, None: 2, EventType.DELIVERED: 3}


@attrs.frozen
class Cursor:
    interval: float
    offset: int = 0               # next page of the sweep in progress
    in_sweep: bool = False
    started_at: float = 0.0
    completed_at: float = 0.0
    due_at: float = 0.0
    total: int | None = None      # what the provider said last (None where it gives no total)
    seen: int = 0                 # rows seen in the sweep in progress
    changes: int = 0              # events emitted in the sweep in progress
    sweeps: int = 0


def window_id(send_date: date, status: EventType | None) -> str:
    return f"{send_date.isoformat()}|{status.value if status else '*'}"


def parse_window_id(wid: str) -> tuple[date, EventType | None]:
    day, status = wid.split("|")
    return date.fromisoformat(day), (None if status == "*" else EventType(status))


@attrs.define
class DateWindowScheduler:
    tz: tzinfo
    lookback_days: int
    status_filters: tuple[EventType, ...]
    page_limit: int
    interval_min: float
    interval_max: float
    cache_ttl: float
    cursors: dict[str, Cursor] = attrs.field(factory=dict)
    _retry_at: dict[str, float] = attrs.field(factory=dict)

    @classmethod
    def for_account(cls, account: AccountConfig, cursors: dict[str, Cursor]) -> DateWindowScheduler:
        """The schedule of a date-window account, continuing from its restored cursors."""
        p, d = account.poll, get_module(account.provider).DEFAULTS
        return cls(tz=d.tz, lookback_days=p.lookback_days, status_filters=d.status_filters, page_limit=d.page_limit,
                   interval_min=p.interval_min_secs, interval_max=p.interval_max_secs, cache_ttl=p.cache_ttl_secs,
                   cursors=dict(cursors))

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def window_ids(self, now: datetime) -> list[str]:
        today = self.today(now)
        statuses: tuple[EventType | None, ...] = self.status_filters or (None,)
        return [window_id(today - timedelta(days=age), s) for age in range(self.lookback_days + 1) for s in statuses]

    def retired(self, now: datetime) -> list[str]:
        """Cursors of dates that left the lookback; the caller tombstones them, then `forget`s."""
        current = set(self.window_ids(now))
        return [wid for wid in self.cursors if wid not in current]

    def forget(self, wid: str) -> None:
        self.cursors.pop(wid, None)
        self._retry_at.pop(wid, None)

    def cursor(self, wid: str, now: datetime) -> Cursor:
        """A window's cursor; a window seen for the first time is due from that moment."""
        found = self.cursors.get(wid)
        if found is None:
            age = (self.today(now) - parse_window_id(wid)[0]).days
            found = Cursor(interval=min(self.interval_max, self.interval_min * (1 + max(age, 0))),
                           due_at=now.timestamp())
            self.cursors[wid] = found
        return found

    def _ready_at(self, wid: str, cursor: Cursor) -> float:
        return max(cursor.due_at if not cursor.in_sweep else 0.0, self._retry_at.get(wid, 0.0))

    def next(self, now: datetime) -> tuple[str, PollQuery] | None:
        """The most urgent due query, or None when nothing is due."""
        ts = now.timestamp()
        best: tuple | None = None
        for age, wid in enumerate(self.window_ids(now)):
            cursor = self.cursor(wid, now)
            if self._ready_at(wid, cursor) > ts:
                continue
            send_date, status = parse_window_id(wid)
            starving = not cursor.in_sweep and ts - cursor.due_at > cursor.interval
            rank = (-1 if starving else _STATUS_RANK[status], age, not cursor.in_sweep, cursor.due_at)
            if best is None or rank < best[0]:
                best = (rank, wid, PollQuery(send_date=send_date, status=status,
                                             offset=cursor.offset, limit=self.page_limit))
        return None if best is None else (best[1], best[2])

    def next_due_in(self, now: datetime) -> float:
        ts = now.timestamp()
        waits = [self._ready_at(wid, self.cursor(wid, now)) - ts for wid in self.window_ids(now)]
        return max(0.0, min(waits)) if waits else self.interval_max

    def after_page(self, wid: str, page: PollPage, emitted: int, now: datetime) -> Cursor:
        """The cursor after a page whose events are about to be committed (not applied yet)."""
        ts = now.timestamp()
        c = self.cursor(wid, now)
        if not c.in_sweep:
            c = attrs.evolve(c, in_sweep=True, started_at=ts, seen=0, changes=0)
        c = attrs.evolve(c, seen=c.seen + page.rows, changes=c.changes + emitted, total=page.total)
        if page.next_offset is not None:
            return attrs.evolve(c, offset=page.next_offset)
        # a sweep that found changes halves the interval, a quiet one lengthens it by half
        interval = max(self.interval_min, c.interval / 2) if c.changes else min(self.interval_max, c.interval * 1.5)
        return attrs.evolve(c, in_sweep=False, offset=0, completed_at=ts, interval=interval,
                            due_at=ts + max(interval, self.cache_ttl), total=c.seen, sweeps=c.sweeps + 1)

    def apply(self, wid: str, cursor: Cursor) -> None:
        self.cursors[wid] = cursor
        self._retry_at.pop(wid, None)

    def failed(self, wid: str, now: datetime, backoff_secs: float) -> None:
        """A page failed after its retries: the cursor stays; try this window again later."""
        self._retry_at[wid] = now.timestamp() + backoff_secs

    def snapshot(self, now: datetime) -> list[dict]:
        ts = now.timestamp()
        out = []
        for wid in self.window_ids(now):
            c = self.cursor(wid, now)
            out.append({"window": wid, "in_sweep": c.in_sweep, "offset": c.offset, "total": c.total,
                        "sweeps": c.sweeps, "interval_secs": round(c.interval, 1),
                        "due_in_secs": round(max(0.0, self._ready_at(wid, c) - ts), 1)})
        return out
