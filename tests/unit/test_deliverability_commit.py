"""esw_deliverability_events_total counts a shard batch once its transaction committed, and only
then (worker.shards.Shard._committed, like esw_events_emitted_total through the batch's Tally): a
failed batch counts nothing, and its replay counts once. No Kafka: the transaction is our seam
`send_and_commit`, replaced here by one that succeeds or fails as the test says."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiokafka.errors import ProducerFenced

from tests.unit.test_staging import CONFIG, webhook
from worker import metrics, shards
from worker.errors import CommitFailed, CommitOutcomeUnknown, Fenced
from worker.metrics import REGISTRY
from worker.shards import Shard
from worker.staging import Staging
from worker.state import Restored

NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MS = 1_793_606_400_000


def deliver(n: int, address: str) -> dict:
    return {"event": "deliver", "emailId": f"m{n}${address}", "recipient": address, "timestamp": str(MS)}


# 120 deliveries to gmail.com (enough for its label: 100 guaranteed) and one to example.org.
ADDRESSES = [f"user{i}@Gmail.com" for i in range(120)] + ["bob@example.org"]


def records(first: int = 40) -> list[SimpleNamespace]:
    return [SimpleNamespace(offset=first + i, value=webhook(deliver(i, a))) for i, a in enumerate(ADDRESSES)]


def value(domain: str, type_: str = "delivered") -> float | None:
    return REGISTRY.get_sample_value("esw_deliverability_events_total", {"domain": domain, "type": type_})


def emitted() -> float:
    return REGISTRY.get_sample_value("esw_events_emitted_total", {"provider": "sendcloud", "account": "sc",
                                                                  "type": "delivered", "source": "webhook"}) or 0.0


@pytest.fixture
def shard() -> Shard:
    metrics.deliverability_domains(2)
    shard = Shard(0, CONFIG, CONFIG.accounts, clock=lambda: NOW)
    shard.staging = Staging(CONFIG, CONFIG.accounts, Restored.empty(), NOW.timestamp())
    shard.producer = object()          # never used: send_and_commit is replaced
    shard.resume_at(40)
    return shard


def transaction(monkeypatch, exc: BaseException | None) -> None:
    async def send_and_commit(*args, **kwargs) -> None:
        if exc is not None:
            raise exc
    monkeypatch.setattr(shards, "send_and_commit", send_and_commit)


def settle(monkeypatch, shard: Shard, name: str, answer: bool) -> None:
    async def landed(*args) -> bool:
        return answer
    monkeypatch.setattr(shard, name, landed)


async def test_a_committed_batch_counts_once(shard, monkeypatch):
    transaction(monkeypatch, None)
    assert shard.process_raw(records(), shard.generation) == 121
    await shard.commit()
    assert (value("gmail.com"), value("other")) == (120.0, 1.0)
    await shard.commit()                                   # an empty batch: nothing more
    assert (value("gmail.com"), value("other")) == (120.0, 1.0)


async def test_a_failed_batch_counts_nothing_and_its_replay_counts_once(shard, monkeypatch):
    before = emitted()
    transaction(monkeypatch, CommitOutcomeUnknown("timeout"))
    settle(monkeypatch, shard, "_settle", False)           # the group's offset says: not applied
    shard.process_raw(records(), shard.generation)
    with pytest.raises(CommitFailed):
        await shard.commit()
    assert (value("gmail.com"), value("other")) == (None, None)
    assert emitted() == before                              # the same rule as esw_events_emitted_total
    assert shard.next_offset == 40                          # rewound: the batch is read again
    transaction(monkeypatch, None)
    assert shard.process_raw(records(), shard.generation) == 121
    await shard.commit()
    assert (value("gmail.com"), value("other")) == (120.0, 1.0)
    assert emitted() == before + 121


async def test_a_commit_in_doubt_that_was_applied_counts_once(shard, monkeypatch):
    transaction(monkeypatch, CommitOutcomeUnknown("timeout"))
    settle(monkeypatch, shard, "_settle", True)
    shard.process_raw(records(), shard.generation)
    await shard.commit()
    assert (value("gmail.com"), value("other")) == (120.0, 1.0)


@pytest.mark.parametrize(("landed", "gmail", "other"), [(True, 120.0, 1.0), (False, None, None)])
async def test_a_fenced_commit_counts_only_if_it_had_landed(shard, monkeypatch, landed, gmail, other):
    transaction(monkeypatch, ProducerFenced())
    settle(monkeypatch, shard, "_landed", landed)
    shard.process_raw(records(), shard.generation)
    with pytest.raises(Fenced):
        await shard.commit()
    assert (value("gmail.com"), value("other")) == (gmail, other)
