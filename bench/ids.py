"""`ids`: the memory of id tracking (worker.poll.ids, worker.poll.settled), no Kafka.

A month of a UniSender account: n ids sent evenly over 30 days (numeric ids, as `sendEmail`
returns them), of which `open_share` are still not final (sent in the last hours, or soft-bounced
for days) and the rest final. Each measurement runs in its own interpreter so that the RSS delta is
the tracker's alone (after `gc.collect()` and `malloc_trim`):

- **restore**: the `_state` records such a shard holds (each id's last record, encoded by
  worker.state as the shard writes them) read back through `Restored.add_records`/`finish` (in
  slices of `worker.batchfetch.SLICE` records, as a restore hands them over) and
  `IdTracker.for_account`, as a new owner does. Resident bytes per id afterwards, and the peak
  during the read (above the encoded records, which stand in for the consumer's fetch buffers).
- **live**: the same month hour by hour on its own clock: each hour's ids arrive from the sent feed,
  those sent two hours earlier turn final (most of them: found by the polls), and the poller checks whatever is due
  (unchanged answers), so the schedule and the allocator hold what they hold in service.
- **gap-driven**: the live measurement for a SendCloud account fed by a sent topic: string ids of
  SendCloud's shape (~70 characters) over the `lookback_days` + 1 days it tracks them; the final
  ones settle within the hour they were sent (by webhook, before their gap).
"""

from __future__ import annotations

import gc
import time
from collections import namedtuple

from bench.common import check, malloc_trim, peak_rss_bytes, reset_peak_rss, row, rss_bytes, run_child, say

NAME = "ids"
DAY = 86400.0
FIRST_ID = 11_400_000_000       # UniSender's ids are ints of this size (PROVIDERS.md 4.4)
Record = namedtuple("Record", "offset key value")   # what a restore's batch walk yields


def _settle() -> int:
    gc.collect()
    malloc_trim()
    return rss_bytes()


def email_id(i: int, numeric: bool = True) -> str:
    """UniSender's shape (an int), or SendCloud's (the string ids of gap-driven accounts)."""
    return str(FIRST_ID + i) if numeric else f"{1_700_000_000_000 + i}_4376_1573_6822.sc-10_9_6_238-inbound0$u{i}@example.com"


def _month(n: int, open_share: float, now: float, which: range | None = None, numeric: bool = True,
           days: int = 30):
    """(email id, recipient, sent_at, final) for n ids sent evenly over `days` (or those of them in
    `which`); the open ones are spread evenly among them (every k-th)."""
    every = max(1, round(1 / open_share)) if open_share else n + 1
    for i in which if which is not None else range(n):
        yield email_id(i, numeric), f"user{i}@example.com", now - days * DAY * (n - i) / n, i % every != 0


def _account(gap: bool = False):
    """UniSender (id polling), or a SendCloud account fed by a sent topic (gap-driven)."""
    from bench.common import worker_config
    from worker.config import parse_config

    if gap:
        accounts = [{"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
                     "webhook": {"app_key_env": "K"}}]
        data = worker_config("127.0.0.1:9", "bench", accounts, shards=1, inputs={"sent_topic": "sent"})
    else:
        accounts = [{"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "K"}}]
        data = worker_config("127.0.0.1:9", "bench", accounts, shards=1)
    account = parse_config(data, {"K": "k"}).accounts[0]
    assert account.poll.gap_driven == gap
    return account


def measure_restore(n: int, open_share: float) -> dict:
    from worker.batchfetch import SLICE
    from worker.poll.ids import IdTracker, Tracked
    from worker.state import Restored, encode_tracked, id_key

    now = time.time()
    records = [Record(i, id_key("uni", e), encode_tracked(Tracked(r, s, "ok_delivered" if f else "ok_sent", f)))
               for i, (e, r, s, f) in enumerate(_month(n, open_share, now))]
    account = _account()
    base = _settle()
    reset_peak_rss()
    started = time.perf_counter()
    restored = Restored.empty()
    for start in range(0, n, SLICE):   # as a restore hands them over (worker.batchfetch)
        restored.add_records(records[start:start + SLICE], start, n)
    restored.finish()
    tracker = IdTracker.for_account(account, restored.ids.get("uni", {}), now, restored.settled.get("uni"))
    secs = time.perf_counter() - started
    peak = peak_rss_bytes() - base
    del restored
    after = _settle()        # the records are still held: the delta is the tracker's (and garbage's)
    del records
    final = [e for e in (email_id(i) for i in range(min(n, 10_000))) if e not in tracker.ids]
    blocked = sum(tracker.learn(e, "x@example.com", now - DAY, None, False, now) is False for e in final)
    return {"n": n, "open": len(tracker.ids), "tracked": len(tracker), "secs": secs,
            "rss_per_id": (after - base) / n, "peak_per_id": peak / n, "blocked": blocked, "probed": len(final)}


def measure_live(n: int, open_share: float, gap: bool = False) -> dict:
    """A month of UniSender ids, or (`gap`) the lookback + 1 days a gap-driven SendCloud account
    tracks its string ids for."""
    from worker.poll.ids import IdPlan, IdTracker, Tracked

    end = time.time()
    account = _account(gap)
    days = account.poll.lookback_days + 1 if gap else 30
    lag = 0 if gap else 2     # gap-driven: webhooks settle most within the hour, before their gap
    hours = days * 24
    base = _settle()
    tracker = IdTracker.for_account(account, {}, end - days * DAY)
    started = time.perf_counter()
    calls = 0
    per_hour = -(-n // hours)

    def sent(first: int, last: int):       # fresh strings, as decoding records makes them
        return _month(n, open_share, end, range(first * per_hour, min(n, last * per_hour)), not gap, days)

    for hour in range(hours):                          # the month hour by hour, on its own clock
        now = end - days * DAY + (hour + 1) * 3600.0
        for email_id, recipient, at, _ in sent(hour, hour + 1):
            tracker.apply_write(email_id, Tracked(recipient, at, "ok_sent"), now)       # the sent feed
        # what was sent `lag` hours ago and is final by now says so (a webhook or an answer)
        for email_id, recipient, at, final in sent(max(0, hour - lag), hour - lag + 1):
            if final:
                tracker.apply_write(email_id, Tracked(recipient, at, "ok_delivered", True), now)
        while asked := tracker.claim(now):             # the poller checks what is due: unchanged
            tracker.apply(IdPlan((), {}, tuple(asked)), now)
            calls += 1
    for email_id, recipient, at, final in sent(hours - lag, hours):
        if final:
            tracker.apply_write(email_id, Tracked(recipient, at, "ok_delivered", True), end)
    secs = time.perf_counter() - started
    after = _settle()
    return {"n": n, "open": len(tracker.ids), "tracked": len(tracker), "secs": secs, "calls": calls,
            "rss_per_id": (after - base) / n, "days": days}


def run(ctx) -> list[dict]:
    n = 200_000 if ctx.quick else 2_000_000
    share = 0.02
    rows: list[dict] = []
    say(f"ids: a month of {n:,} UniSender ids, {share:.0%} open, restored")
    r = run_child("ids:measure_restore", {"n": n, "open_share": share}, timeout=900, profile=ctx.profile)
    rows += [
        row(NAME, "resident memory per tracked id, restored", r["rss_per_id"], "B",
            f"{r['n']:,} ids ({r['open']:,} open); RSS delta after Restored + IdTracker.for_account, "
            f"malloc_trim; {r['secs']:.1f} s ({r['n'] / r['secs']:,.0f} records/s, decoding only)"),
        row(NAME, "peak RSS during the restore of tracked ids", r["peak_per_id"], "B/id",
            "above the encoded records"),
    ]
    rows.append(check(NAME, "restored final ids block a late sent record",
                      r["tracked"] == n and r["open"] == round(n * share) and r["blocked"] == r["probed"] > 0,
                      f"{r['tracked']:,} tracked of {n:,}, {r['open']:,} open; {r['blocked']:,} of the "
                      f"{r['probed']:,} final ids probed refused a late sent record"))
    say("ids: the same month learned live")
    r = run_child("ids:measure_live", {"n": n, "open_share": share}, timeout=900, profile=ctx.profile)
    rows.append(row(NAME, "resident memory per tracked id, learned live", r["rss_per_id"], "B",
                    f"{r['n']:,} ids ({r['open']:,} open), a month hour by hour, {r['calls']:,} calls of up "
                    f"to 500; {r['secs']:.1f} s"))
    rows.append(check(NAME, "live tracker holds every id", r["tracked"] == n and r["open"] == round(n * share),
                      f"{r['tracked']:,} tracked, {r['open']:,} open"))
    m = n // 2
    say(f"ids: {m:,} string ids of a gap-driven SendCloud account, learned live")
    g = run_child("ids:measure_live", {"n": m, "open_share": share, "gap": True}, timeout=900, profile=ctx.profile)
    rows.append(row(NAME, "resident memory per tracked id, gap-driven, learned live", g["rss_per_id"], "B",
                    f"{g['n']:,} SendCloud-shaped ids of ~70 characters over {g['days']} days ({g['open']:,} open), "
                    f"{g['calls']:,} calls; a final one is kept by hash; {g['secs']:.1f} s"))
    rows.append(check(NAME, "gap-driven tracker holds every id", g["tracked"] == m and g["open"] == round(m * share),
                      f"{g['tracked']:,} tracked, {g['open']:,} open"))
    return rows
