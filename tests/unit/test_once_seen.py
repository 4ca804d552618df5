"""A page's duplicates dropped in one vectorised step (issue 14 (d): a duplicate polled row's CPU).

`dedup.once_seen` is `decide`'s first rule for a whole page: a table word already holding the
once-bit of the row's type. `Staging.observe` drops those rows at once and counts them; every other
row is decided one by one as before. Words are built by hand here (flags in the low byte: the type
code in bits 0-2, the once-bits 3-6: delivered 8, invalid 16, complaint 32, unsubscribed 64; soft
seen 128).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest

from tests.unit.test_mutants_staging import NOW, SC, obs, staging
from worker import staging as staging_module
from worker.dedup import Outcome, decide, email_key, once_seen
from worker.model import EventType, Source

D, I, S, C, U = (EventType.DELIVERED, EventType.INVALID, EventType.SOFT_BOUNCE, EventType.COMPLAINT,
                 EventType.UNSUBSCRIBED)


def word(flags: int, occurred: int = 1_793_606_400, expire_h: int = 60_104) -> int:
    return occurred << 32 | expire_h << 8 | flags


@pytest.mark.parametrize(("flags", "type_", "seen"), [
    (1 | 8, D, True),             # delivered, its once-bit
    (1 | 8, I, False),            # delivered: an invalid is decided (stale or not)
    (2 | 16, I, True),
    (2 | 16, D, False),
    (3 | 128, S, False),          # a soft bounce has no once-bit: always decided
    (1 | 8 | 128, S, False),
    (1 | 8 | 32, C, True),        # a complaint after delivery, seen
    (1 | 8 | 32, U, False),
    (64, U, True),
    (0, D, False),
])
def test_once_seen_by_hand(flags: int, type_: EventType, seen: bool) -> None:
    words = np.array([word(flags), 0], dtype=np.uint64)
    assert once_seen(words, [type_, type_]).tolist() == [seen, False]


def test_a_row_without_a_type_is_never_seen() -> None:
    assert once_seen(np.array([word(0xFF)], dtype=np.uint64), [None]).tolist() == [False]


FLAG_SETS = [code | once for code in range(4) for once in (0, 8, 16, 32, 64, 8 | 16, 8 | 32 | 64, 128, 8 | 128)]


@pytest.mark.parametrize("type_", [D, I, S, C, U])
def test_once_seen_is_decides_first_rule(type_: EventType) -> None:
    words = [word(f) for f in FLAG_SETS]
    seen = once_seen(np.array(words, dtype=np.uint64), [type_] * len(words)).tolist()
    for w, s in zip(words, seen, strict=True):
        for occurred, exact in itertools.product((0, 1_793_606_400, 4_000_000_000), (True, False)):
            outcome, _ = decide(w, type_, occurred, 60_200, 5.0, exact)
            if s:
                assert outcome is Outcome.DUPLICATE, (hex(w), type_)


def _committed(st, observations) -> None:
    st.observe(SC, observations, Source.POLL, NOW)
    st.committed(st.take(), NOW.timestamp())


@pytest.mark.parametrize("rows", [4, 6])   # 4: DedupTable.FEW, the smallest page
def test_a_page_of_duplicates_is_dropped_without_deciding_a_row(monkeypatch, rows: int) -> None:
    st = staging()
    page = [obs(f"e{i}", D) for i in range(rows)]
    _committed(st, page)
    calls: list[int] = []
    real = staging_module.decide
    monkeypatch.setattr(staging_module, "decide", lambda *a: calls.append(1) or real(*a))
    assert st.observe(SC, page, Source.POLL, NOW + timedelta(minutes=5)) == 0
    assert calls == []
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): rows}
    assert st.batch.events == [] and st.batch.state == []


def test_only_the_rows_seen_are_dropped_at_once(monkeypatch) -> None:
    st = staging()
    _committed(st, [obs(f"e{i}", D) for i in range(4)])
    page = [obs("e0", D), obs("e1", I), obs("new", D), obs("e2", D), obs("e3", None), obs("e3", D)]
    decided: list[int] = []
    real = staging_module.decide
    monkeypatch.setattr(staging_module, "decide", lambda *a: decided.append(1) or real(*a))
    # e1 invalid after delivered (decided: emitted, a later time); new: emitted; e3 without a type: ignored
    assert st.observe(SC, page, Source.POLL, NOW + timedelta(minutes=5)) == 2
    assert len(decided) == 2
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 3}
    assert st.batch.tally.ignored == {("sendcloud", "sc"): 1}


def test_fewer_rows_than_a_page_are_decided_one_by_one(monkeypatch) -> None:
    st = staging()
    _committed(st, [obs("e0", D), obs("e1", D)])
    decided: list[int] = []
    real = staging_module.decide
    monkeypatch.setattr(staging_module, "decide", lambda *a: decided.append(1) or real(*a))
    assert st.observe(SC, [obs("e0", D), obs("e1", D)], Source.POLL, NOW) == 0
    assert len(decided) == 2 and st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 2}


def test_an_oversized_or_future_duplicate_is_still_set_aside() -> None:
    st = staging()
    future = NOW + timedelta(hours=2)
    _committed(st, [obs(f"e{i}", D) for i in range(4)])
    # e1 and e2 hold their once-bit in the table, but one is over the caps (its sub-status) and the
    # other dated past the skew: both are dead letters, as they were before the page step
    page = [obs("e0", D), obs("e1", D, provider_sub_status="9" * 200), obs("e2", D, at=future), obs("e3", D)]
    assert st.observe(SC, page, Source.POLL, NOW) == 0
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 2}
    assert sorted(st.batch.tally.dead) == [("sendcloud", "sc", "field_too_long"), ("sendcloud", "sc", "future_time")]


async def test_a_duplicate_whose_key_a_staged_expiry_deletes_is_decided_again() -> None:
    st = staging()
    _committed(st, [obs(f"e{i}", D) for i in range(4)])
    st.stage_deletions([email_key("sendcloud", "sc", "e1")])   # expired: absent once the open batch commits
    page = [obs(f"e{i}", D) for i in range(4)]
    assert st.observe(SC, page, Source.POLL, NOW) == 1          # e1 is new again
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 3}


def test_a_dated_duplicate_past_the_skew_goes_to_the_dead_letters_not_the_drops() -> None:
    st = staging()
    future = NOW + timedelta(hours=2)
    _committed(st, [obs(f"e{i}", D, at=NOW - timedelta(hours=1)) for i in range(4)])
    page = [obs("e0", D, at=future), obs("e1", D), obs("e2", D), obs("e3", D)]
    assert st.observe(SC, page, Source.POLL, NOW) == 0
    assert st.batch.tally.drops == {("sendcloud", "sc", "duplicate"): 3}
    assert list(st.batch.tally.dead) == [("sendcloud", "sc", "future_time")]
