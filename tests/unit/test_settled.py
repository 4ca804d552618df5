"""Final ids kept compact (worker.poll.settled) and how the tracker and the restore use them (issue 15).

Expected values are written by hand: the float64 bit patterns below are IEEE 754 encodings worked
out on paper (1.5 = 0x3FF8...; 1_700_000_000 = 0x6553F100 = 2**30 x 1.100101010100111111000100b, so
exponent 0x41D and 0x41D954FC40000000), the numeric ids are UniSender's shape (`sendEmail` returns
an int; PROVIDERS.md 4.4).
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tests.unit.test_mutants_ids import _accounts
from worker.dedup import DedupTable
from worker.poll.ids import IdPlan, IdTracker, Tracked
from worker.poll.settled import SettledIds, numeric_id, sent_word, word_sent
from worker.state import Restored, id_key

NOW = 1_700_000_000.0
DAY = 86400.0


@pytest.mark.parametrize(("email_id", "expected"), [
    ("0", 0),
    ("7", 7),
    ("11411542313", 11411542313),
    ("573405639", 573405639),
    ("9999999999999999999", 9999999999999999999),      # 19 digits: the longest always below 2**64
    ("18446744073709551615", None),                     # 20 digits (2**64 - 1): kept as a string
    ("007", None),                                      # str(7) would not give it back
    ("00", None),
    ("", None),
    ("12a", None),
    ("-5", None),
    ("+5", None),
    (" 5", None),
    ("1.0", None),
    ("١٢٣", None),                                      # Arabic-Indic digits: isdigit() but not ASCII
    ("²", None),
    ("m1$bob@example.com", None),
])
def test_numeric_ids_are_exactly_those_an_int_gives_back(email_id, expected):
    assert numeric_id(email_id) == expected


@pytest.mark.parametrize(("sent", "word"), [
    (0.0, 0x8000000000000000),
    (-0.0, 0x8000000000000000),
    (1.5, 0xBFF8000000000000),
    (-2.0, 0x4000000000000000),
    (NOW, 0xC1D954FC40000000),
])
def test_a_send_time_word_is_its_float_bits_with_the_sign_flipped(sent, word):
    assert sent_word(sent) == word
    assert word_sent(np.array([word], dtype=np.uint64)).tolist() == [sent + 0.0]


def test_membership_add_and_discard_for_both_kinds():
    s = SettledIds()
    s.add("11411542313", NOW)
    s.add("m1$bob@example.com", NOW + 1)
    assert "11411542313" in s and "m1$bob@example.com" in s and len(s) == 2
    assert "11411542314" not in s and "011411542313" not in s and "m2" not in s and 5 not in s
    s.discard("11411542313")
    s.discard("m1$bob@example.com")
    s.discard("12")                       # absent: nothing happens
    assert "11411542313" not in s and "m1$bob@example.com" not in s and len(s) == 0


def test_age_out_is_strictly_older_than_max_age():
    s = SettledIds()
    s.add("1", NOW - 100.0)
    s.add("2", NOW - 100.5)
    s.add("old-string", NOW - 101.0)
    s.add("young-string", NOW - 99.0)
    assert s.expired(NOW, 100.0) == ["2", "old-string"]
    assert s.expired(NOW + 1.0, 100.0) == ["1", "2", "old-string"]
    assert len(s) == 4                    # listed, not removed: the caller tombstones them


def test_numeric_ids_cost_sixteen_bytes_once_merged():
    s = SettledIds()
    for i in range(DedupTable.MERGE_AT):  # the last put merges the recent writes into the columns
        s.add(str(10_000_000 + i), NOW)
    assert s.nbytes == 16 * DedupTable.MERGE_AT
    assert str(10_000_000 + 4321) in s and str(10_000_000 + DedupTable.MERGE_AT) not in s


def test_load_takes_the_last_word_per_id_and_zero_deletes():
    s = SettledIds()
    ids = np.array([5, 9, 5, 7], dtype=np.uint64)
    words = np.array([sent_word(NOW), sent_word(NOW), 0, sent_word(NOW - 50.0)], dtype=np.uint64)
    s.load(ids, words, [("x-1", NOW)])
    assert "5" not in s and "9" in s and "7" in s and "x-1" in s and len(s) == 3
    assert s.expired(NOW + 10.0, 20.0) == ["7"]


# -- the tracker ----------------------------------------------------------------------------------


def uni_tracker() -> IdTracker:
    return IdTracker(max_age_secs=30 * DAY, batch=500)


def test_a_compact_final_id_blocks_a_late_sent_record_after_the_columns_merged():
    t = uni_tracker()
    for i in range(DedupTable.MERGE_AT + 10):         # enough to merge once into numpy columns
        email_id = str(5_000_000 + i)
        t.apply_write(email_id, Tracked("r@x.test", NOW, "ok_delivered", final=True), NOW)
    assert t.ids == {} and len(t) == DedupTable.MERGE_AT + 10
    assert t.learn("5000000", "r@x.test", NOW, None, False, NOW + 3600) is False          # in the columns
    assert t.learn(str(5_000_000 + DedupTable.MERGE_AT + 5), "r@x.test", NOW, "ok_sent", False, NOW + 3600) is False
    fresh = t.learn("4999999", "r@x.test", NOW, None, False, NOW + 3600)
    assert fresh == Tracked("r@x.test", NOW)
    assert t.due(NOW + 10 * DAY) == []                # nothing final is ever asked again


def test_a_final_answer_moves_the_id_out_of_the_schedule_and_age_out_lists_it_once():
    t = uni_tracker()
    t.apply_write("42", Tracked("a@x.test", NOW), NOW)
    t.apply_write("43", Tracked("b@x.test", NOW), NOW)
    asked = t.claim(NOW)
    assert sorted(asked) == ["42", "43"]
    t.apply(IdPlan((), {"42": Tracked("a@x.test", NOW, "ok_delivered", final=True)}, tuple(asked)), NOW + 5)
    assert set(t.ids) == {"43"} and "42" in t.settled and len(t) == 2
    assert t.expired(NOW + 30 * DAY) == []
    assert sorted(t.expired(NOW + 30 * DAY + 1)) == ["42", "43"]
    t.apply_write("42", None, NOW + 30 * DAY + 1)     # the tombstone committed
    t.apply_write("43", None, NOW + 30 * DAY + 1)
    assert len(t) == 0 and "42" not in t.settled


# -- the restore ----------------------------------------------------------------------------------


def record(final: bool, status: str = "ok_sent", sent: float = NOW) -> bytes:
    return orjson.dumps({"r": "r@x.test", "s": sent, "st": status, "f": final})


def test_a_restore_reads_final_numeric_ids_into_columns_and_the_last_record_wins():
    restored = Restored.empty()
    for key, value in [
        (id_key("uni", "100"), record(False)),                   # ... then final: settled
        (id_key("uni", "100"), record(True, "ok_delivered")),
        (id_key("uni", "200"), record(True, "ok_delivered")),    # ... then tombstoned: gone
        (id_key("uni", "200"), None),
        (id_key("uni", "300"), record(True, "ok_delivered")),    # final, then not (never written so, but
        (id_key("uni", "300"), record(False, "ok_sent")),        # order decides): tracked
        (id_key("uni", "400"), record(False)),                   # open: tracked
        (id_key("uni", "x-1"), record(True, "ok_delivered")),    # a string id: settled as it is
        (id_key("uni", "x-2"), record(True, "ok_delivered")),    # ... then tombstoned: gone
        (id_key("uni", "x-2"), None),
        (id_key("uni", "x-3"), record(True, "ok_delivered")),    # ... then open again: tracked
        (id_key("uni", "x-3"), record(False)),
        (id_key("uni", "500"), b'{"r":"r@x.test","f":true}'),    # unreadable (no send time): skipped
        (id_key("uni", "600"), b"[1,2]"),                        # not an object: skipped
    ]:
        restored.add(key, value)
    restored.finish()
    assert restored.skipped == 2
    assert restored.ids == {"uni": {"300": Tracked("r@x.test", NOW, "ok_sent"),
                                    "400": Tracked("r@x.test", NOW, "ok_sent"),
                                    "x-3": Tracked("r@x.test", NOW, "ok_sent")}}
    settled = restored.settled["uni"]
    assert "100" in settled and "x-1" in settled and len(settled) == 2
    assert settled.expired(NOW + 31 * DAY, 30 * DAY) == ["100", "x-1"]

    uni, _ = _accounts()
    t = IdTracker.for_account(uni, restored.ids["uni"], NOW + 10, restored.settled["uni"])
    assert set(t.ids) == {"300", "400", "x-3"} and "x-1" in t.settled and len(t) == 5
    for final_id in ("100", "x-1"):
        assert t.learn(final_id, "r@x.test", NOW, None, False, NOW + 20) is False
    assert t.learn("200", "r@x.test", NOW, None, False, NOW + 20) == Tracked("r@x.test", NOW)
    assert t.learn("x-2", "r@x.test", NOW, None, False, NOW + 20) == Tracked("r@x.test", NOW)
    assert sorted(t.due(NOW + 10)) == ["300", "400", "x-3"]


# -- gap-driven: final ids by hash, not persisted -----------------------------------------------------


def test_hashed_ids_are_members_until_forgotten_and_are_never_listed_for_tombstones():
    s = SettledIds()
    s.add("m1$bob@example.com", NOW - 200.0, persisted=False)
    s.add("m2$ann@example.com", NOW - 50.0, persisted=False)
    s.add("42", NOW - 200.0, persisted=False)              # numeric, but gap-driven: hashed too
    s.add("43", NOW - 200.0)                               # persisted: the numeric columns
    assert all(e in s for e in ("m1$bob@example.com", "m2$ann@example.com", "42", "43")) and len(s) == 4
    assert "m3$eve@example.com" not in s
    assert s.expired(NOW, 100.0) == ["43"]                 # hashed ones have no record to tombstone
    assert s.forget(NOW, 100.0) == 2                       # m1 and 42 age out of memory
    assert "m1$bob@example.com" not in s and "42" not in s and "m2$ann@example.com" in s and len(s) == 2
    s.discard("m2$ann@example.com")
    assert "m2$ann@example.com" not in s and len(s) == 1


def test_a_scan_job_sees_the_table_as_it_was_called_with_recent_writes_deciding():
    table = DedupTable()
    for key, word in ((1, 10), (2, 20), (3, 30), (6, 60)):
        table.put(key, word)
    table.merge()
    table.put(4, 40)                                       # still in the recent writes
    table.put(3, 5)                                        # a recent write over the column's 30
    table.delete(2)                                        # a recent deletion of the column's 20
    table.merge_job()                                      # those four now frozen for a merge...
    table.put(6, 7)                                        # ...and a newer write over the column's 60
    scan = table.scan_job(lambda words: words >= np.uint64(20))
    table.put(5, 50)                                       # after the call: not seen
    table.put(4, 1)
    assert sorted(scan()) == [4]
    assert table.get(4) == 1 and len(table) == 5           # nothing removed


def test_what_a_tracker_persists_of_a_final_id():
    uni = uni_tracker()
    gap = IdTracker(max_age_secs=4 * DAY, batch=100, gap_after_secs=900.0)
    final, open_ = Tracked("r@x.test", NOW, "deliver", final=True), Tracked("r@x.test", NOW)
    assert uni.record(final) is final and uni.record(open_) is open_
    assert gap.record(final) is None and gap.record(open_) is open_
    gap.apply_write("m1", open_, NOW)
    gap.apply_write("m1", final, NOW + 60)
    assert "m1" in gap.settled and gap.expired(NOW + 4 * DAY + 1) == [] and len(gap) == 0


def test_a_restored_final_gap_driven_record_is_kept_by_its_string_so_that_expiry_tombstones_it():
    # v0.2.0 persisted a gap-driven id's final record; restored, it must not become a hash only,
    # or no expiry pass would ever tombstone the record
    gap = IdTracker(max_age_secs=4 * DAY, batch=100, gap_after_secs=900.0)
    gap.restore("m1$bob@example.com", Tracked("bob@example.com", NOW, "deliver", final=True), NOW)
    assert "m1$bob@example.com" in gap.settled and gap.ids == {}
    assert gap.expired(NOW + 4 * DAY + 1) == ["m1$bob@example.com"]


def test_forget_is_strictly_older_than_max_age_and_costs_are_counted():
    s = SettledIds()
    s.add("m1", NOW - 100.0, persisted=False)
    s.add("m2", NOW - 100.5, persisted=False)
    assert s.forget(NOW, 100.0) == 1 and "m1" in s and "m2" not in s
    assert s.forget(NOW, 100.0) == 0
    s.add("x-1", NOW)                                      # a string id kept by its string: ~150 B
    assert s.nbytes == 2 * 100 + 150                       # m1 and m2's deletion: recent writes (~100 B)
    s.tables[1].merge()                                    # (forget() no longer merges: issue 15)
    assert s.nbytes == 16 + 150                            # m1 in the hashed columns
