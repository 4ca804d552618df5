"""One shard against the real broker: restore round trip, fencing of the previous owner."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.harness import worker_config
from tests.integration.world import ENV
from worker.config import parse_config
from worker.emit import ensure_topics
from worker.errors import ShardClosed
from worker.model import EventType, Observation
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.poll.sink import CursorChange, IdChange
from worker.shards import Shard
from worker.shardsink import ShardSink

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def config(bootstrap, prefix):
    accounts = [{"name": "sc", "provider": "sendcloud", "webhook": {"enabled": False},
                 "credentials": {"api_user": "u", "api_key_env": "W_API_KEY"}},
                {"name": "uni", "provider": "unisender", "credentials": {"api_key_env": "W_API_KEY"}}]
    return parse_config(worker_config(bootstrap, prefix, accounts, shards=1), ENV)


def obs(i: int, type_=EventType.DELIVERED, at=T0) -> Observation:
    return Observation(email_id=f"id{i}", recipient=f"r{i}@example.com", type=type_, reason=None,
                       occurred_at=at, provider_status="1")


async def test_a_new_owner_restores_exactly_what_was_committed_and_fences_the_old(kafka_bootstrap, topic_prefix):
    cfg = config(kafka_bootstrap, topic_prefix)
    await ensure_topics(cfg.kafka)
    sc, uni = cfg.accounts
    first = Shard(0, cfg, list(cfg.accounts))
    await first.start()
    assert len(first.staging.table) == 0
    cursor = Cursor(interval=600, offset=300, in_sweep=True, started_at=5.0)
    sink = ShardSink(first, sc)
    assert sink.observe([obs(i) for i in range(50)], T0) == 50
    done = sink.persist([CursorChange("sc", "2026-11-01|invalid", cursor)])
    ShardSink(first, uni).persist([IdChange("uni", "777", Tracked("u@example.com", T0.timestamp(), "ok_sent")),
                             IdChange("uni", "778", Tracked("v@example.com", T0.timestamp(), "ok_sent")),
                             IdChange("uni", "778", Tracked("v@example.com", T0.timestamp(), "ok_delivered", True)),
                             IdChange("uni", "x-9", Tracked("w@example.com", T0.timestamp(), "ok_delivered", True))])
    await first.commit()
    await done
    sink.observe([obs(i) for i in range(50, 60)], T0)
    aborted = sink.persist([])
    assert first.backlog  # staged, never committed: the next owner must not see it

    second = Shard(0, cfg, list(cfg.accounts))
    await second.start()                         # fences `first`, aborts nothing committed
    assert len(second.staging.table) == 50
    assert second.schedules["sc"].cursors == {"2026-11-01|invalid": cursor}
    uni_ids = second.schedules["uni"]
    assert uni_ids.ids == {"777": Tracked("u@example.com", T0.timestamp(), "ok_sent")}
    # final ids come back compact (no `Tracked`), and still block a late sent record
    assert "778" in uni_ids.settled and "x-9" in uni_ids.settled and len(uni_ids) == 3
    late = T0.timestamp() + 60
    assert uni_ids.learn("778", "v@example.com", T0.timestamp(), None, False, late) is False
    assert uni_ids.learn("x-9", "w@example.com", T0.timestamp(), None, False, late) is False
    # the restored table de-duplicates: the same 50 deliveries again emit nothing
    assert ShardSink(second, sc).observe([obs(i, at=T0 + timedelta(seconds=3)) for i in range(50)], T0) == 0
    again = ShardSink(second, sc).persist([])
    assert second.staging.batch.tally.drops[("sendcloud", "sc", "duplicate")] == 50
    await second.commit()
    await again

    with pytest.raises(ShardClosed):
        await first.commit()                     # the old owner is fenced
    with pytest.raises(ShardClosed):
        await aborted
    await first.close(commit=False)
    await second.close(commit=True)
    assert first.producer is None and second.producer is None  # both producers released
    # aiokafka fails its internal waiters when it learns it was fenced and never reads them; they
    # log when collected. Collect them here, inside the test, rather than at an arbitrary moment.
    gc.collect()


async def test_a_worker_fenced_by_a_transient_owner_reopens_its_shard_and_loses_nothing(kafka_bootstrap, topic_prefix):
    """Another owner took the shard for a while (fencing the worker's producer) and went away, yet
    the group still assigns it to the worker: the worker must notice at its next commit, re-open the
    shard with a fresh restore, and go on exactly once."""
    import hashlib
    import hmac
    import secrets
    import time
    import urllib.parse

    import aiohttp
    import orjson

    from tests.integration.harness import InProcessWorker, wait_ready
    from tests.integration.kafka_utils import read_all

    accounts = [{"name": "sc", "provider": "sendcloud", "poll": {"enabled": False},
                 "credentials": {"api_user": "u", "api_key_env": "W_API_KEY"},
                 "webhook": {"app_key_env": "W_APP_KEY"}}]
    data = worker_config(kafka_bootstrap, topic_prefix, accounts, shards=1)
    cfg = parse_config(data, ENV)

    def hook(email_id: str) -> bytes:
        ts, token = str(int(time.time() * 1000)), secrets.token_hex(25)
        sig = hmac.new(ENV["W_APP_KEY"].encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
        return urllib.parse.urlencode({"event": "deliver", "emailId": email_id, "recipient": "a@example.com",
                                       "timestamp": ts, "token": token, "signature": sig}).encode()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with InProcessWorker(data, ENV) as worker, aiohttp.ClientSession() as session:
        await wait_ready(worker.url)
        url = f"{worker.url}/webhooks/sendcloud/sc"
        async with session.post(url, data=hook("before"), headers=form) as r:
            assert r.status == 200
        await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=1)
        intruder = Shard(0, cfg, list(cfg.accounts))
        await intruder.start()                   # fences the worker's producer for shard 0
        await intruder.close(commit=False)
        for email_id in ("after-1", "after-2", "before"):
            async with session.post(url, data=hook(email_id), headers=form) as r:
                assert r.status == 200
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.delivered"], expect=3, timeout=60, quiet_secs=3)
        await wait_ready(worker.url)
    assert sorted(orjson.loads(r.value)["email_id"] for r in records) == ["after-1", "after-2", "before"]
    gc.collect()


async def test_aged_out_tracked_ids_are_tombstoned_a_chunk_per_transaction(kafka_bootstrap, topic_prefix, monkeypatch):
    """The hourly expiry pass after downtime can find days of aged-out ids: they go EXPIRY_CHUNK per
    transaction, as dedup keys do (they went in one, 2026-12-03), and a new owner restores none."""
    import asyncio

    import worker.expiry as expiry
    from worker.expiry import expire

    cfg = config(kafka_bootstrap, topic_prefix)
    await ensure_topics(cfg.kafka)
    uni = cfg.accounts[1]
    shard = Shard(0, cfg, list(cfg.accounts))
    await shard.start()
    sent = (T0 - timedelta(days=31)).timestamp()         # id_max_age_days is 30
    done = ShardSink(shard, uni).persist([IdChange("uni", f"old{i}", Tracked(f"r{i}@example.com", sent, "ok_sent"))
                                    for i in range(25)]
                                   + [IdChange("uni", "young", Tracked("y@example.com", T0.timestamp(), "ok_sent"))])
    await shard.commit()
    await done
    await shard.close(commit=True)
    shard = Shard(0, cfg, list(cfg.accounts))            # a persisted id reaches a tracker by restore
    await shard.start()
    assert len(shard.schedules["uni"].ids) == 26
    monkeypatch.setattr(expiry, "EXPIRY_CHUNK", 10)
    shard.clock = lambda: T0
    staged: list[int] = []
    stage = shard.staging.stage_deletions

    def counted(keys, ids=(), replays=(), now=None):
        staged.append(len(ids))
        return stage(keys, ids, replays, now=now)

    shard.staging.stage_deletions = counted
    runner = asyncio.create_task(shard.run())
    try:
        assert await asyncio.wait_for(expire(shard), 30) == 25
    finally:
        await shard.close(commit=True)
        await runner
    assert [n for n in staged if n] == [10, 10, 5]
    again = Shard(0, cfg, list(cfg.accounts))
    await again.start()
    assert sorted(again.schedules["uni"].ids) == ["young"]
    await again.close(commit=False)
    gc.collect()
