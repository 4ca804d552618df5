"""Final ids, kept compact until they age out (issue 15).

An id tracker (worker.poll.ids) keeps an id after its status is final only to recognise it: a sent
record or webhook that arrives later must not start it over. Nothing else of it is needed (its
recipient and last status are in `_state`, its schedule is over), so a final id is kept as its
send time alone, in one of three places:

- **numeric** (id polling): an id that is a canonical decimal number below 2**64 (UniSender's are:
  `sendEmail` returns an int) is a key of a `DedupTable`, whose word is the send time's float64
  bits with the sign bit flipped (never 0, exact): 16 bytes per id in two numpy columns, no Python
  object per id. Its `_state` record stays (worker.state reads it straight into the columns), and
  the expiry pass tombstones it by the id, which `str(int)` gives back.
- **other** (id polling with an id of another shape, and what a release before this one wrote for
  gap-driven accounts): a dict entry, id string → send time. Its string is the `_state` key the
  expiry pass must tombstone, so it cannot be replaced by a hash.
- **hashed** (gap-driven accounts, `persisted=False`): the id's 64-bit in-process hash in a
  `DedupTable`, 16 bytes; nothing of it stays in `_state` (the tracker writes a tombstone when the
  id settles: worker.poll.ids `IdTracker.record`), so it ages out of memory without a tombstone and
  is not restored. A date-window provider's answer carries its times, so an id started over after
  a restart costs one by-id check at most, never a second event (the dedup table decides).

The `_state` records of numeric and other ids do not change (worker.state).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import numpy as np

from worker.dedup import DedupTable

_SIGN = 1 << 63
_FLOAT, _BITS = struct.Struct("<d"), struct.Struct("<Q")
_MASK = (1 << 64) - 1
NUMERIC_DIGITS = 19          # 10**19 - 1 < 2**64: at most this many digits always fit a uint64


def numeric_id(email_id: str) -> int | None:
    """The id as an int when `str(int)` gives it back exactly (ASCII digits, no leading zero, below
    2**64); None for any other id."""
    if not (0 < len(email_id) <= NUMERIC_DIGITS and email_id.isascii() and email_id.isdigit()):
        return None
    if email_id[0] == "0" and email_id != "0":
        return None
    return int(email_id)


def sent_word(sent_at: float) -> int:
    """A send time as a table word: its float64 bits, sign flipped (0.0 is then not 0)."""
    (bits,) = _BITS.unpack(_FLOAT.pack(sent_at + 0.0))   # + 0.0: -0.0 becomes 0.0
    return bits ^ _SIGN


def sent_words(sent_at: np.ndarray) -> np.ndarray:
    """The table words of send times (vectorised `sent_word`)."""
    return (np.asarray(sent_at, dtype=np.float64) + 0.0).view(np.uint64) ^ np.uint64(_SIGN)


def word_sent(words: np.ndarray) -> np.ndarray:
    """The send times of table words (vectorised `sent_word` inverse)."""
    return (np.asarray(words, dtype=np.uint64) ^ np.uint64(_SIGN)).view(np.float64)


def _hash(email_id: str) -> int:
    return hash(email_id) & _MASK


class SettledIds:
    """Final ids and their send times: membership, removal and age-out."""

    def __init__(self) -> None:
        self._numeric = DedupTable()
        self._other: dict[str, float] = {}
        self._hashed = DedupTable()

    def __len__(self) -> int:
        return len(self._numeric) + len(self._other) + len(self._hashed)

    @property
    def tables(self) -> tuple[DedupTable, DedupTable]:
        """Its two tables, for an owner that merges them off its event loop."""
        return self._numeric, self._hashed

    def __contains__(self, email_id: object) -> bool:
        if not isinstance(email_id, str):
            return False
        if self._hashed.get(_hash(email_id)) is not None:
            return True
        key = numeric_id(email_id)
        return email_id in self._other if key is None else self._numeric.get(key) is not None

    def add(self, email_id: str, sent_at: float, persisted: bool = True) -> None:
        """A final id; `persisted`: its `_state` record stays until the expiry pass tombstones it
        (otherwise it was tombstoned as it settled, and is remembered by hash only)."""
        key = numeric_id(email_id)
        if not persisted:
            self._hashed.put(_hash(email_id), sent_word(sent_at))
        elif key is None:
            self._other[email_id] = sent_at
        else:
            self._numeric.put(key, sent_word(sent_at))

    def discard(self, email_id: str) -> None:
        self._hashed.delete(_hash(email_id))
        key = numeric_id(email_id)
        if key is None:
            self._other.pop(email_id, None)
        else:
            self._numeric.delete(key)

    def load(self, ids: np.ndarray, words: np.ndarray, others: Iterable[tuple[str, float]] = ()) -> None:
        """Replace the content: numeric ids and their words as a changelog read in order (the last
        word per id wins, 0 deletes), and the other ids with their send times."""
        self._numeric.load(ids, words)
        self._other = dict(others)

    def expiry_job(self, now: float, max_age_secs: float) -> Callable[[], tuple[list[str], list[int]]]:
        """The ids sent more than `max_age_secs` before `now`, found off the event loop: called on
        the owner's thread it takes its snapshots (worker.dedup `scan_job`; the other ids, few, are
        judged here); the function it returns may run in a thread and gives (the persisted ids,
        which the caller tombstones, their `_state` key strings; the hashed ids' keys, which the
        caller drops with `drop_hashed`: they have no record). Nothing is removed here."""
        def old(words: np.ndarray) -> np.ndarray:
            return now - word_sent(words) > max_age_secs
        numeric, hashed = self._numeric.scan_job(old), self._hashed.scan_job(old)
        others = [e for e, sent in self._other.items() if now - sent > max_age_secs]

        def scan() -> tuple[list[str], list[int]]:
            return [str(key) for key in numeric()] + others, hashed()
        return scan

    def expired(self, now: float, max_age_secs: float) -> list[str]:
        """`expiry_job`'s persisted ids, here and now (not removed: the caller tombstones them)."""
        return self.expiry_job(now, max_age_secs)()[0]

    def drop_hashed(self, keys: Iterable[int]) -> int:
        """Drop hashed ids by their keys (no tombstones: they have no record); how many went."""
        before = len(self._hashed)
        for key in keys:
            self._hashed.delete(key)
        return before - len(self._hashed)

    def forget(self, now: float, max_age_secs: float) -> int:
        """Drop the hashed ids sent more than `max_age_secs` before `now`, here and now; how many went."""
        return self.drop_hashed(self.expiry_job(now, max_age_secs)()[1])

    @property
    def nbytes(self) -> int:
        """The columns' bytes; the other ids are costed at ~150 B each (dict slot, string,
        float; a SendCloud id of ~70 characters)."""
        return self._numeric.nbytes + self._hashed.nbytes + 150 * len(self._other)
