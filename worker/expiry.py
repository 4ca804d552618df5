"""The hourly expiry pass of a shard (worker.group runs it): what left every window is tombstoned.

Dedup entries whose email left every poll window and the webhook horizon, tracked ids that aged
out and replay keys past their window get `_state` tombstones, committed in the shard's ordinary
transactions; final ids kept by hash only are forgotten without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from worker.poll.sink import IdChange
from worker.shards import Shard

EXPIRY_CHUNK = 10_000   # tombstones of one kind per transaction, at most
EXPIRY_SLICE = 1_000    # ... staged this many at a time (~1-2 ms), the event loop running between


async def expire(shard: Shard) -> int:
    """Tombstone dedup entries whose email left every window, tracked ids that aged out and
    replay keys past their window, at most EXPIRY_CHUNK of a kind per transaction (a pass after
    downtime can hold days of them); forget final ids kept by hash that aged out. The event
    loop is never held for long (issue 15): every table's recent writes are merged in a thread
    first (hourly, then, whatever their number), the scan runs in a thread over snapshots
    (Staging.expiry_job), and tombstones are staged EXPIRY_SLICE at a time with the loop
    running between slices, each key re-checked against what is staged by then."""
    await asyncio.gather(*shard.open_staging().merge_off_loop(every=True))
    now = shard.clock().timestamp()
    found = await asyncio.get_running_loop().run_in_executor(None, shard.open_staging().expiry_job(now))
    for account, hashed in found.hashed.items():
        for start in range(0, len(hashed), EXPIRY_SLICE):
            shard.open_staging().drop_hashed(account, hashed[start:start + EXPIRY_SLICE])
            await asyncio.sleep(0)
    for start in range(0, max(len(found.keys), len(found.ids), len(found.replays)), EXPIRY_CHUNK):
        part = slice(start, start + EXPIRY_CHUNK)
        await _tombstone(shard, found.keys[part], found.ids[part], found.replays[part], now)
    return len(found.keys) + len(found.ids) + len(found.replays)


async def _tombstone(shard: Shard, keys: Sequence[int], ids: Sequence[IdChange], replays: Sequence[int],
                     now: float) -> None:
    """One chunk of tombstones, staged a slice at a time, committed before this returns."""
    waiters: list[Awaitable[None]] = []
    for start in range(0, max(len(keys), len(ids), len(replays)), EXPIRY_SLICE):
        if waiters:
            await asyncio.sleep(0)
        part = slice(start, start + EXPIRY_SLICE)
        waiters.append(shard.open_staging().stage_deletions(keys[part], ids[part], replays[part], now=now))
    shard.nudge()
    await asyncio.gather(*waiters)
