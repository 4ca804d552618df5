"""One shard against the real broker: restore round trip, fencing of the previous owner."""

from __future__ import annotations

import gc
from datetime import datetime, timedelta, timezone

import pytest

from tests.integration.harness import worker_config
from tests.integration.world import ENV
from worker.config import parse_config
from worker.emit import ensure_topics
from worker.model import EventType, Observation
from worker.poll.ids import Tracked
from worker.poll.scheduler import Cursor
from worker.shards import Shard, ShardClosed
from worker.state import cursor_key, id_key

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


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
    assert len(first.table) == 0
    cursor = Cursor(interval=600, offset=300, in_sweep=True, started_at=5.0)
    done = first.submit_poll(sc, [obs(i) for i in range(50)], T0,
                             lambda emitted: [(cursor_key("sc", "2026-11-01|invalid"), cursor.encode())])
    first.stage_state([(id_key("uni", "777"), Tracked("u@example.com", T0.timestamp(), "ok_sent").encode())])
    await first.commit()
    await done
    aborted = first.submit_poll(sc, [obs(i) for i in range(50, 60)], T0, lambda emitted: [])
    assert first.backlog  # staged, never committed: the next owner must not see it

    second = Shard(0, cfg, list(cfg.accounts))
    await second.start()                         # fences `first`, aborts nothing committed
    assert len(second.table) == 50
    assert second.cursors["sc"] == {"2026-11-01|invalid": cursor}
    assert second.trackers["uni"].ids["777"] == Tracked("u@example.com", T0.timestamp(), "ok_sent")
    # the restored table de-duplicates: the same 50 deliveries again emit nothing
    again = second.submit_poll(sc, [obs(i, at=T0 + timedelta(seconds=3)) for i in range(50)], T0, lambda n: [])
    assert second.batch.counts[("drop", "sendcloud", "sc", "duplicate")] == 50
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
