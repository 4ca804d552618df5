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
- Pages in parallel: once a page of a sweep says how many rows the window has (its `total`), the
  pages after the committed position may be claimed at once (`claim`, up to `ahead` pages past it),
  by several requests in flight. A claimed page is released when it commits, fails or turns out
  stale. The cursor still only moves in order (the runner commits a window's pages in offset
  order), so it never passes a page that is not committed; a failure on one page retries that
  page only (`failed(..., offset=)`).
- Intervals: each window starts at `interval_min * (1 + age in days)`; a sweep that produced events
  halves it, a quiet one lengthens it by half, within [interval_min, interval_max]. The next sweep
  is due `max(interval, cache_ttl)` after the previous sweep *ended*, so no query of the new sweep
  repeats one of the old within the provider's result cache.
- Safety sweeps (gap-driven polling, once the sent feed arrives: `widen`): a window is swept every
  `safety_sweep * (1 + age in days)`, fixed. By-id checks cover the emails the feed names; the sweeps
  are there for what it missed, and what is missed of an older date changes less and less.
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
    SPECULATE = 2
    cursors: dict[str, Cursor] = attrs.field(factory=dict)
    ahead: int = 1                # pages of one window claimable past its committed position
    safety_sweep: float | None = None   # gap-driven: the sweeps' interval once sent emails arrive
    widened: bool = False               # safety sweeps (`widen`): intervals by age alone
    _retry_at: dict[str, float] = attrs.field(factory=dict)
    _page_retry: dict[tuple[str, int], float] = attrs.field(factory=dict)
    _claimed: dict[str, set[int]] = attrs.field(factory=dict)
    _extent: dict[str, int] = attrs.field(factory=dict)     # rows the sweep in progress said it has
    _asked_at: dict[str, float] = attrs.field(factory=dict)  # when a page of each window was last asked or came
    # the lookback's windows, newest first, as (id, send date, status), for the day they were made
    _windows: tuple[date | None, tuple[tuple[str, date, EventType | None], ...]] = attrs.field(
        default=(None, ()), init=False, eq=False, repr=False)

    @classmethod
    def for_account(cls, account: AccountConfig, cursors: dict[str, Cursor]) -> DateWindowScheduler:
        """The schedule of a date-window account, continuing from its restored cursors."""
        p, d = account.poll, get_module(account.provider).DEFAULTS
        return cls(tz=d.tz, lookback_days=p.lookback_days, status_filters=d.status_filters, page_limit=d.page_limit,
                   interval_min=p.interval_min_secs, interval_max=p.interval_max_secs, cache_ttl=p.cache_ttl_secs,
                   cursors=dict(cursors), ahead=2 * p.max_in_flight,
                   safety_sweep=p.safety_sweep_secs if p.gap_driven else None)

    def widen(self) -> None:
        """Gap-driven polling has its sent emails (worker.poll.ids): from now on the date sweeps are
        the safety net, no window swept more often than `safety_sweep` (each from its next sweep)."""
        if self.safety_sweep is not None:
            self.interval_min = max(self.interval_min, self.safety_sweep)
            self.interval_max = max(self.interval_max, self.safety_sweep)
            self.safety_sweep = None
            self.widened = True

    def _age(self, wid: str, now: datetime) -> int:
        return max(0, (self.today(now) - parse_window_id(wid)[0]).days)

    def _safety_interval(self, wid: str, now: datetime) -> float:
        """A widened window's interval: the safety sweep's, once per day of the window's age."""
        return self.interval_min * (1 + self._age(wid, now))

    def today(self, now: datetime) -> date:
        return now.astimezone(self.tz).date()

    def windows(self, now: datetime) -> tuple[tuple[str, date, EventType | None], ...]:
        """The lookback's windows at `now`, newest first: (id, send date, status). Made once a day
        (each page claimed asks for them)."""
        today = self.today(now)
        if self._windows[0] != today:
            statuses: tuple[EventType | None, ...] = self.status_filters or (None,)
            days = [today - timedelta(days=age) for age in range(self.lookback_days + 1)]
            self._windows = (today, tuple((window_id(day, s), day, s) for day in days for s in statuses))
        return self._windows[1]

    def window_ids(self, now: datetime) -> list[str]:
        return [wid for wid, _, _ in self.windows(now)]

    def retired(self, now: datetime) -> list[str]:
        """Cursors of dates that left the lookback; the caller tombstones them, then `forget`s."""
        current = set(self.window_ids(now))
        return [wid for wid in self.cursors if wid not in current]

    def forget(self, wid: str) -> None:
        self.cursors.pop(wid, None)
        self._retry_at.pop(wid, None)
        self._asked_at.pop(wid, None)
        self._release_all(wid)

    def cursor(self, wid: str, now: datetime) -> Cursor:
        """A window's cursor; a window seen for the first time is due from that moment."""
        found = self.cursors.get(wid)
        if found is None:
            interval = (self._safety_interval(wid, now) if self.widened
                        else min(self.interval_max, self.interval_min * (1 + self._age(wid, now))))
            found = Cursor(interval=interval, due_at=now.timestamp())
            self.cursors[wid] = found
        return found

    def _ready_at(self, wid: str, cursor: Cursor) -> float:
        return max(cursor.due_at if not cursor.in_sweep else 0.0, self._retry_at.get(wid, 0.0))

    def _offsets(self, wid: str, cursor: Cursor, ts: float) -> list[int]:
        """The pages of a window that may be asked now, in order: the one at the cursor, and once
        the sweep's total is known, those after it (up to `ahead`), unless claimed or backing off."""
        offsets = [cursor.offset]
        extent = self._extent.get(wid)
        if extent is not None:
            stop = min(extent, cursor.offset + self.ahead * self.page_limit)
            offsets += range(cursor.offset + self.page_limit, stop, self.page_limit)
        claimed = self._claimed.get(wid, ())
        return [o for o in offsets if o not in claimed and self._page_retry.get((wid, o), 0.0) <= ts]

    def next(self, now: datetime) -> tuple[str, PollQuery] | None:
        """The most urgent due query that is not claimed, or None when nothing is due."""
        ts = now.timestamp()
        best: tuple | None = None
        for age, (wid, send_date, status) in enumerate(self.windows(now)):
            cursor = self.cursor(wid, now)
            if self._ready_at(wid, cursor) > ts:
                continue
            offsets = self._offsets(wid, cursor, ts)
            if not offsets:
                continue
            # waiting longer than its interval: a window due again since its due time, a sweep in
            # progress since its last page was asked (one that kept its later pages waiting behind
            # windows due again starved: status-API audit of 2026-12-06)
            waiting_since = self._asked_at.get(wid, cursor.due_at) if cursor.in_sweep else cursor.due_at
            starving = ts - waiting_since > cursor.interval
            rank = (-1 if starving else _STATUS_RANK[status], age, not cursor.in_sweep, cursor.due_at)
            if best is None or rank < best[0]:
                best = (rank, wid, PollQuery(send_date=send_date, status=status,
                                             offset=offsets[0], limit=self.page_limit))
        return None if best is None else (best[1], best[2])

    def claim(self, now: datetime) -> tuple[str, PollQuery] | None:
        """`next`, marked as asked: no other request takes that page until it is released."""
        nxt = self.next(now)
        if nxt is not None:
            self._claimed.setdefault(nxt[0], set()).add(nxt[1].offset)
            self._asked_at[nxt[0]] = now.timestamp()
        return nxt

    def release(self, wid: str, offset: int) -> None:
        """A claimed page committed, failed, or is no longer wanted."""
        claimed = self._claimed.get(wid)
        if claimed is not None:
            claimed.discard(offset)
            if not claimed:
                del self._claimed[wid]

    def _release_all(self, wid: str) -> None:
        self._claimed.pop(wid, None)
        self._extent.pop(wid, None)
        for key in [k for k in self._page_retry if k[0] == wid]:
            del self._page_retry[key]

    def claimed(self, wid: str) -> frozenset[int]:
        return frozenset(self._claimed.get(wid, ()))

    def learn_extent(self, wid: str, page: PollPage) -> None:
        """A page of the sweep arrived: its total says which pages exist, so they can be asked in
        parallel. Without a total (Tencent) a full page lets `SPECULATE` pages past the next one go
        too: at most that many empty answers at the end of a sweep."""
        if page.total is not None:
            extent = max(page.total, page.next_offset or 0)
        elif page.next_offset is not None:
            extent = page.next_offset + (1 + self.SPECULATE) * self.page_limit
        else:
            return
        self._extent[wid] = max(self._extent.get(wid, 0), extent)

    def next_due_in(self, now: datetime) -> float:
        """Seconds until a page may be claimed: 0 when one may now. A window whose every page is
        claimed counts as not due (the claims' answers wake the runner)."""
        ts = now.timestamp()
        waits = []
        for wid in self.window_ids(now):
            cursor = self.cursor(wid, now)
            ready = self._ready_at(wid, cursor)
            if ready > ts:
                waits.append(ready - ts)
            elif self._offsets(wid, cursor, ts):
                return 0.0
            else:
                waits += [at - ts for (w, _), at in self._page_retry.items() if w == wid and at > ts]
        return max(0.0, min(waits)) if waits else self.interval_max

    def staleness(self, now: datetime) -> float:
        """Seconds since the oldest window that is due (or mid-sweep) became due, a window backing
        off after a failure included (it is overdue all the same): 0 when none is."""
        ts = now.timestamp()
        due = [c.due_at for wid in self.window_ids(now) if (c := self.cursor(wid, now)).in_sweep or c.due_at <= ts]
        return max(0.0, ts - min(due)) if due else 0.0

    def after_page(self, wid: str, page: PollPage, emitted: int, now: datetime, base: Cursor | None = None) -> Cursor:
        """The cursor after a page whose events are about to be committed (not applied yet); `base`:
        the cursor the page follows, when pages before it are staged in the same commit."""
        ts = now.timestamp()
        self._asked_at[wid] = max(ts, self._asked_at.get(wid, ts))   # a page of it came: the sweep moves
        c = base if base is not None else self.cursor(wid, now)
        if not c.in_sweep:
            c = attrs.evolve(c, in_sweep=True, started_at=ts, seen=0, changes=0)
        c = attrs.evolve(c, seen=c.seen + page.rows, changes=c.changes + emitted, total=page.total)
        if page.next_offset is not None:
            return attrs.evolve(c, offset=page.next_offset)
        # a sweep that found changes halves the interval, a quiet one lengthens it by half; both
        # within the bounds as they are now (widen() raises them under a cursor swept before).
        # Safety sweeps: by age alone.
        if self.widened:
            interval = self._safety_interval(wid, now)
        else:
            interval = c.interval / 2 if c.changes else c.interval * 1.5
            interval = min(self.interval_max, max(self.interval_min, interval))
        return attrs.evolve(c, in_sweep=False, offset=0, completed_at=ts, interval=interval,
                            due_at=ts + max(interval, self.cache_ttl), total=c.seen, sweeps=c.sweeps + 1)

    def apply(self, wid: str, cursor: Cursor) -> None:
        """A committed cursor. The end of a sweep releases what is still claimed of it (pages past
        a total that shrank: their answers are dropped)."""
        self.cursors[wid] = cursor
        self._retry_at.pop(wid, None)
        for key in [k for k in self._page_retry if k[0] == wid and k[1] < cursor.offset]:
            del self._page_retry[key]
        if not cursor.in_sweep:
            self._release_all(wid)

    def failed(self, wid: str, now: datetime, backoff_secs: float, offset: int | None = None) -> None:
        """A page failed after its retries: the cursor stays; try this window again later, or with
        `offset`, only that page of it (the others of the sweep go on)."""
        if offset is None:
            self._retry_at[wid] = now.timestamp() + backoff_secs
        else:
            self.release(wid, offset)
            if backoff_secs > 0:
                self._page_retry[(wid, offset)] = now.timestamp() + backoff_secs

    def snapshot(self, now: datetime) -> list[dict]:
        ts = now.timestamp()
        out = []
        for wid in self.window_ids(now):
            c = self.cursor(wid, now)
            out.append({"window": wid, "in_sweep": c.in_sweep, "offset": c.offset, "total": c.total,
                        "sweeps": c.sweeps, "interval_secs": round(c.interval, 1),
                        "due_in_secs": round(max(0.0, self._ready_at(wid, c) - ts), 1)})
        return out
