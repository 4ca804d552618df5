"""A final UniSender id's `_state` record in the fixed form, and a restore reading a slice of them at
once (worker.state `encode_tracked`, `Restored.add_records`).

Expected values are literal: the bytes of a record, the send times as Python reads their decimal
text, and what each hand-written changelog leaves open or settled. The slice reader is checked
against `Restored.add`, the one-record-at-a-time reader every release had before it."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from worker.poll.ids import Tracked
from worker.poll.settled import sent_word, sent_words, word_sent
from worker.state import Restored, _fixed_finals, decode_tracked, encode_tracked


def fixed(sent: str, final: str = "true") -> bytes:
    """A record in the fixed form with this send time text."""
    return b'{"r":"","s":%s,"st":null,"f":%s}' % (sent.encode(), final.encode())


def rec(offset: int, key: bytes, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, key=key, value=value)


def open_record(recipient: str = "a@example.com", sent: float = 1794034011.25) -> bytes:
    return orjson.dumps({"r": recipient, "s": sent, "st": "ok_sent", "f": False})


def restore(pairs: list[tuple[bytes, bytes | None]]) -> Restored:
    r = Restored.empty()
    assert r.add_records([rec(i, k, v) for i, (k, v) in enumerate(pairs)], 0, len(pairs)) == len(pairs)
    return r.finish()


def sent_of(r: Restored, account: str, email_id: str) -> float:
    numeric, _ = r.settled[account].tables
    return float(word_sent(numeric.get_many([int(email_id)]))[0])


@pytest.mark.parametrize(("sent", "expected", "read"), [
    (1793602800.0, b'{"r":"","s":1793602800.000,"st":null,"f":true}', 1793602800.0),
    (1794034011.4905372, b'{"r":"","s":1794034011.491,"st":null,"f":true}', 1794034011.491),  # to the ms
    (1000000000.0, b'{"r":"","s":1000000000.000,"st":null,"f":true}', 1000000000.0),
    (9999999999.9994, b'{"r":"","s":9999999999.999,"st":null,"f":true}', 9999999999.999),
])
def test_a_final_id_is_its_send_time_in_46_bytes(sent, expected, read):
    record = encode_tracked(Tracked("box@example.net", sent, "ok_delivered", final=True))
    assert record == expected and len(record) == 46
    # what every release reads: JSON with the members of a tracked id, v0.2.0's decoder included
    assert orjson.loads(record) == {"r": "", "s": read, "st": None, "f": True}
    assert decode_tracked(record) == Tracked("", read, None, final=True)


@pytest.mark.parametrize("tracked", [
    Tracked("box@example.net", 1794034011.5, "ok_sent"),                     # can still change
    Tracked("box@example.net", 999999999.5, "ok_delivered", final=True),     # 9 digits before the point
    Tracked("box@example.net", 9999999999.9996, "ok_delivered", final=True),  # rounds up to 11 digits
    Tracked("box@example.net", -5.0, "ok_delivered", final=True),
], ids=["open", "before 2001", "rounds to 11 digits", "negative"])
def test_other_ids_keep_the_full_record(tracked):
    assert orjson.loads(encode_tracked(tracked)) == {"r": "box@example.net", "s": tracked.sent_at,
                                                     "st": tracked.status, "f": tracked.final}


def test_a_slice_of_final_ids_restores_their_send_times():
    r = restore([(b"uuni|8226661362", b'{"r":"","s":1794034011.491,"st":null,"f":true}'),
                 (b"uuni|8226661365", b'{"r":"","s":1793602800.000,"st":null,"f":true}'),
                 (b"uuni|1000000000", b'{"r":"","s":1000000000.001,"st":null,"f":true}')])
    assert r.ids.get("uni", {}) == {} and r.skipped == 0
    assert len(r.settled["uni"]) == 3
    assert sent_of(r, "uni", "8226661362") == 1794034011.491
    assert sent_of(r, "uni", "8226661365") == 1793602800.0
    assert sent_of(r, "uni", "1000000000") == 1000000000.001
    assert "8226661363" not in r.settled["uni"]


def test_the_last_record_of_an_id_decides_whatever_its_form():
    final = b'{"r":"","s":1794034011.491,"st":null,"f":true}'
    r = restore([
        (b"uuni|8000000001", open_record()), (b"uuni|8000000001", final),          # open, then final
        (b"uuni|8000000002", final), (b"uuni|8000000002", open_record("b@x.org")),  # final, then open again
        (b"uuni|8000000003", final), (b"uuni|8000000003", None),                   # final, then deleted
        (b"uuni|8000000004", open_record()), (b"uuni|8000000004", final),
        (b"uuni|8000000004", open_record("c@x.org")),                               # open, final, open
        (b"uuni|8000000005", open_record()), (b"uuni|8000000005", final), (b"uuni|8000000005", final),
    ])
    assert sorted(r.ids["uni"]) == ["8000000002", "8000000004"]
    assert r.ids["uni"]["8000000002"].recipient == "b@x.org" and r.ids["uni"]["8000000004"].recipient == "c@x.org"
    assert sorted(e for e in map(str, range(8000000001, 8000000006)) if e in r.settled["uni"]) == \
        ["8000000001", "8000000005"]


def test_records_that_are_not_the_fixed_form_of_a_numeric_id_are_read_one_by_one():
    r = restore([
        (b"uuni|8226661362", fixed("1794034011.491")),
        (b"uuni|0226661362", fixed("1794034011.491")),             # a leading zero: a string id
        (b"uuni|82266613a2", fixed("1794034011.491")),             # not digits: a string id
        (b"uuni|82266613621", fixed("1794034011.491")),            # 11 digits: numeric, read alone
        (b"uoth|8226661362", fixed("1794034011.491")),             # another account
        (b"uuni|8226661363", fixed("0794034011.491")),             # a leading zero: not JSON, skipped
        (b"uuni|8226661364", fixed("17940340x1.491")),             # not a number: skipped
        (b"uuni|8226661366", fixed("1794034011.491", "TRUE")),     # not JSON: skipped
        (b"uuni|8226661367", fixed("1794034011.491", "null")),     # 46 bytes, not final: open
        (b"uuni|8226661368", fixed("1794034011.491", "false")),    # 47 bytes, open
        (b"uuni|8226661369", fixed("1794034011.491")[:-1] + b" "),  # no closing brace: skipped
    ])
    assert r.skipped == 4
    assert sorted(e for e in ["8226661362", "0226661362", "82266613a2", "82266613621", "8226661363",
                              "8226661364", "8226661366", "8226661367"] if e in r.settled["uni"]) == \
        ["0226661362", "8226661362", "82266613621", "82266613a2"]
    assert "8226661362" in r.settled["oth"]
    assert sent_of(r, "uni", "82266613621") == 1794034011.491
    assert sorted(r.ids["uni"]) == ["8226661367", "8226661368"]
    assert r.ids["uni"]["8226661368"] == Tracked("", 1794034011.491, None)


def test_a_slice_and_one_record_at_a_time_restore_the_same_state():
    rng = random.Random(20261204)
    pairs: list[tuple[bytes, bytes | None]] = []
    for _ in range(3000):
        account = rng.choice(["uni", "uni", "uni", "other"])
        email_id = str(rng.choice([8_000_000_000, 7_999_999_990, 80_000_000_000]) + rng.randrange(300))
        sent = 1_790_000_000 + rng.randrange(10**9) / 1000
        value = rng.choice([
            fixed(f"{sent:.3f}"),
            fixed(f"{sent:.3f}"),
            open_record(sent=sent), None,
            orjson.dumps({"r": "z@x.org", "s": sent, "st": "ok_delivered", "f": True}),   # an older release's final
        ])
        pairs.append((f"u{account}|{email_id}".encode(), value))
    many = restore(pairs)
    one = Restored.empty()
    for key, value in pairs:
        one.add(key, value)
    one.finish()
    assert many.skipped == one.skipped == 0
    assert many.ids == one.ids and sum(map(len, many.ids.values())) > 50
    ids = {str(n) for n in range(7_999_999_990, 8_000_000_300)} | {str(n) for n in range(80_000_000_000, 80_000_000_300)}
    for account in ("uni", "other"):
        settled = sorted(e for e in ids if e in many.settled[account])
        assert settled == sorted(e for e in ids if e in one.settled[account]) and len(settled) > 100
        assert [sent_of(many, account, e) for e in settled] == [sent_of(one, account, e) for e in settled]


def test_the_slice_reader_picks_exactly_the_fixed_final_numeric_ids_of_the_first_account():
    pairs = [
        (b"uuni|8226661362", fixed("1794034011.491")),           # yes
        (b"uuni|9999999999", fixed("9999999999.999")),           # yes: nines everywhere
        (b"uuni|1000000000", fixed("1000000000.000")),           # yes: zeros after the first digit
        (b"uuni|0226661362", fixed("1794034011.491")),           # a leading zero in the id
        (b"uuni|82266613:2", fixed("1794034011.491")),           # ":" is the byte after "9"
        (b"uuni|8226661363", fixed("17940340:1.491")),           # ... in the time
        (b"uuni|8226661364", fixed("0794034011.491")),           # a leading zero in the time
        (b"uoth|8226661362", fixed("1794034011.491")),           # another account
        (b"uuni|8226661365", open_record()),                     # not the fixed size
        (b"uuni|82266613650", fixed("1794034011.491")),          # another key length
        (b"uuni|8226661366", fixed("1794034011.491", "null")),   # the fixed size, another frame
        (b"uuni|8226661367", b""),                               # a tombstone
    ]
    account, which, numbers, words = _fixed_finals([k for k, _ in pairs], [v for _, v in pairs])
    assert account == "uni"
    assert which.tolist() == [True, True, True] + [False] * 9
    assert numbers[which].tolist() == [8226661362, 9999999999, 1000000000]
    assert word_sent(words[which]).tolist() == [1794034011.491, 9999999999.999, 1000000000.0]


@pytest.mark.parametrize(("key", "account", "number"), [
    (b"u|8226661362", "", 8226661362),                            # an empty account name
    (b"uuni|12", "uni", 12),                                      # two digits
    (b"uuni|9999999999999999999", "uni", 9999999999999999999),    # nineteen, above 2**63
])
def test_the_slice_reader_takes_ids_of_two_to_nineteen_digits(key, account, number):
    got = _fixed_finals([key], [fixed("1794034011.491")])
    assert got is not None and got[0] == account and got[1].tolist() == [True] and got[2].tolist() == [number]


@pytest.mark.parametrize("key", [b"uuni|7", b"uuni|18446744073709551615", b"uuni|", b"u8226661362"],
                         ids=["one digit", "twenty digits", "no id", "no bar"])
def test_the_slice_reader_leaves_other_ids_to_the_record_reader(key):
    assert _fixed_finals([key], [fixed("1794034011.491")]) is None


def test_ids_the_slice_reader_leaves_are_still_restored():
    r = restore([(b"ua|b|8226661362", fixed("1794034011.491")),    # account "a", id "b|8226661362"
                 (b"uuni|7", fixed("1794034011.491")), (b"uuni|18446744073709551615", fixed("1794034011.491"))])
    assert "7" in r.settled["uni"] and "18446744073709551615" in r.settled["uni"]
    assert "b|8226661362" in r.settled["a"] and "a|b" not in r.settled
    assert sent_of(r, "uni", "7") == 1794034011.491


def test_an_open_id_above_2_63_is_settled_by_its_fixed_final_record():
    r = restore([(b"uuni|9999999999999999999", open_record()), (b"uuni|9999999999999999998", open_record()),
                 (b"uuni|9999999999999999999", fixed("1794034011.491"))])   # read by the slice reader
    assert list(r.ids["uni"]) == ["9999999999999999998"]
    assert "9999999999999999999" in r.settled["uni"]


def test_a_slice_of_fixed_final_records_is_not_read_one_by_one(monkeypatch):
    calls = []
    monkeypatch.setattr(Restored, "add", lambda self, key, value: calls.append(key))
    pairs = [(b"uacct|%d" % n, fixed("1794034011.491")) for n in range(8226661362, 8226661372)]
    pairs.insert(4, (b"uacct|8226661399", open_record()))
    r = Restored.empty()
    r.add_records([rec(i, k, v) for i, (k, v) in enumerate(pairs)], 0, len(pairs))
    assert calls == [b"uacct|8226661399"]                        # only the open one
    assert len(r.finish().settled["acct"]) == 10


def test_records_before_the_end_are_read_when_one_past_it_shows():
    r = Restored.empty()
    records = [rec(0, b"uacct|8226661362", fixed("1794034011.491")), rec(1, b"uacct|8226661363", open_record()),
               rec(2, b"uacct|8226661364", fixed("1794034011.491"))]
    assert r.add_records(records, 0, 2) == 2
    r.finish()
    assert "8226661362" in r.settled["acct"] and list(r.ids["acct"]) == ["8226661363"]
    assert "8226661364" not in r.settled["acct"]


@pytest.mark.parametrize(("sent", "word"), [
    (0.0, 1 << 63), (-0.0, 1 << 63), (1.0, 0x3FF0000000000000 | 1 << 63), (-2.0, 0x4000000000000000),
])
def test_send_time_words_of_many_are_those_of_one(sent, word):
    assert sent_words(np.array([sent])).tolist() == [word] == [sent_word(sent)]
