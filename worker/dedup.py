"""De-duplication by email id and update time (DESIGN.md section 4), and its compact table.

State per email, keyed by a 64-bit hash of (provider, account, email_id), is one 64-bit word:

    bits 63..32  occurred_at of the last emitted delivery status, Unix seconds (until 2106)
    bit  31      set when that time was only when we saw the status (the provider gave none)
    bits 30..8   expiry, in hours since 2020-01-01 (until the year 2977)
    bits  7..0   bits 0-2 the last emitted delivery type (0 = none yet); bits 3-6 the once-only
                 types already emitted (delivered, invalid, complaint, unsubscribed); bit 7 set
                 once any soft bounce was emitted

A word is never 0 (the expiry is), so 0 marks a deletion. The table stores words in two sorted
numpy columns (8 + 8 bytes per email, no Python object per entry) plus a small dict of recent
writes that is merged into the columns in vectorised steps. A merge copies the columns (~200 ms at
10M entries); numpy releases the GIL while it copies, so an owner on an event loop runs it in a
thread (`background`, `merge_job`) and only installs the new columns on the loop. The `_state` changelog carries the
same word (worker.state: key b"d" + 8-byte hash, value the 8-byte word, a tombstone on expiry).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

from worker.model import EventType


class Outcome(enum.Enum):
    EMIT = "emit"
    DUPLICATE = "duplicate"
    STALE = "stale"


TYPE_CODE = {
    EventType.DELIVERED: 1,
    EventType.INVALID: 2,
    EventType.SOFT_BOUNCE: 3,
    EventType.COMPLAINT: 4,
    EventType.UNSUBSCRIBED: 5,
}
_SOFT = TYPE_CODE[EventType.SOFT_BOUNCE]
ONCE_BIT: dict[EventType | None, int] = {   # none (a status without a type) has no bit
    EventType.DELIVERED: 1 << 3,
    EventType.INVALID: 1 << 4,
    EventType.COMPLAINT: 1 << 5,
    EventType.UNSUBSCRIBED: 1 << 6,
}
SOFT_SEEN = 1 << 7
_TERMINAL = frozenset({TYPE_CODE[EventType.DELIVERED], TYPE_CODE[EventType.INVALID]})
# Engagement events: once per email, and outside the delivery-status progression.
_ENGAGEMENT = frozenset({EventType.COMPLAINT, EventType.UNSUBSCRIBED})

_HOUR_EPOCH = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())


def hours_since_2020(unix_seconds: float) -> int:
    return max(1, int(unix_seconds - _HOUR_EPOCH) // 3600)


SEEN_TIME = 1 << 31


def pack(occurred_s: int, expire_h: int, flags: int, seen_time: bool = False) -> int:
    return ((occurred_s & 0xFFFFFFFF) << 32 | (SEEN_TIME if seen_time else 0)
            | (expire_h & 0x7FFFFF) << 8 | (flags & 0xFF))


def unpack(word: int) -> tuple[int, int, int]:
    """(occurred_s, expire_h, flags)."""
    return word >> 32, (word >> 8) & 0x7FFFFF, word & 0xFF


def email_key(provider: str, account: str, email_id: str) -> int:
    digest = hashlib.blake2b(f"{provider}\x1f{account}\x1f{email_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def email_keys(provider: str, account: str, email_ids: Iterable[str]) -> list[int]:
    """`email_key` of each id of one account, in order (the account's part hashed into a copy)."""
    head = hashlib.blake2b(f"{provider}\x1f{account}\x1f".encode(), digest_size=8)
    keys = []
    for email_id in email_ids:
        h = head.copy()
        h.update(email_id.encode())
        keys.append(int.from_bytes(h.digest(), "big"))
    return keys


def decide(word: int | None, type_: EventType, occurred_s: int, expire_h: int, tolerance_s: float,
           exact_time: bool = True) -> tuple[Outcome, int | None]:
    """Apply the dedup rules to one observation; return the outcome and the new state word."""
    if word:
        last_occurred, last_expire, flags = unpack(word)
        last_seen_time = bool(word & SEEN_TIME)
    else:
        last_occurred, last_expire, flags, last_seen_time = 0, 0, 0, False
    bit = ONCE_BIT.get(type_, 0)
    if flags & bit:
        return Outcome.DUPLICATE, None
    expire_h = max(expire_h, last_expire)
    if type_ in _ENGAGEMENT:
        return Outcome.EMIT, pack(last_occurred, expire_h, flags | bit, last_seen_time)
    last_type = flags & 0b111
    code = TYPE_CODE[type_]
    if code == _SOFT and (last_type == _SOFT or (last_type in _TERMINAL and flags & SOFT_SEEN)):
        # After a soft bounce, or after a final status that followed one: only a clearly later
        # soft bounce is a new attempt. (A final status with no soft bounce before it cannot tell
        # a late-arriving real bounce from a replay, and takes the general rule below.)
        if occurred_s <= last_occurred + tolerance_s:
            return Outcome.DUPLICATE, None
    elif last_type and occurred_s < last_occurred - tolerance_s and not last_seen_time:
        # (a status we only know to have happened by the time we saw it proves nothing stale)
        return Outcome.STALE, None
    if code == _SOFT:
        bit = SOFT_SEEN
    return Outcome.EMIT, pack(occurred_s, expire_h, (flags & ~0b111) | bit | code, not exact_time)


def once_seen(words: np.ndarray, types: Sequence[EventType | None]) -> np.ndarray:
    """For a page's words (0 where absent) and its rows' types: whether each word already holds the
    once-bit of its row's type, which is `decide`'s first rule, DUPLICATE whatever the row's time.
    One vectorised step for a page of duplicates (a re-sweep), so `decide` runs only for the rest.
    A type without a once-bit (a soft bounce, none) is never seen here."""
    bits = np.fromiter((ONCE_BIT.get(t, 0) for t in types), dtype=np.uint64, count=len(types))
    return (words & bits) != 0


class DedupTable:
    """key (uint64) → state word (uint64), compact: sorted numpy columns plus recent writes."""

    MERGE_AT = 65_536
    FEW = 4
    BACKLOG = 4

    def __init__(self, background: bool = False) -> None:
        self._keys = np.empty(0, dtype=np.uint64)
        self._vals = np.empty(0, dtype=np.uint64)
        self._recent: dict[int, int] = {}   # 0 = deleted
        self._merging: dict[int, int] = {}  # recent writes a background merge is folding in (frozen)
        self._live = 0
        # the owner runs merges off the loop (`merge_job`); put() merges in place only past
        # BACKLOG x the merge size (a merge that cannot keep up)
        self.background = background

    def __len__(self) -> int:
        return self._live

    def get(self, key: int) -> int | None:
        word = self._recent.get(key)
        if word is None and self._merging:
            word = self._merging.get(key)
        if word is None:
            word = self._column_get(key)
        return word or None

    def get_many(self, keys: np.ndarray) -> np.ndarray:
        """The words of many keys at once (0 where absent): one vectorised search of the columns,
        then the recent writes on top."""
        keys = np.asarray(keys, dtype=np.uint64)
        words = np.zeros(len(keys), dtype=np.uint64)
        if len(self._keys):
            pos = np.minimum(self._keys.searchsorted(keys), len(self._keys) - 1)
            hit = self._keys[pos] == keys
            words[hit] = self._vals[pos[hit]]
        for recent in (self._merging, self._recent):   # the newer writes last
            if recent:
                for i, key in enumerate(keys.tolist()):
                    word = recent.get(key)
                    if word is not None:
                        words[i] = word
        return words

    def words(self, keys: list[int]) -> list[int]:
        """The words of `keys` (0 where absent): `get_many` when it pays, one `get` each for fewer
        than FEW keys (a webhook's one or two; numpy's fixed cost is that of about three gets)."""
        if len(keys) < self.FEW:
            return [self.get(key) or 0 for key in keys]
        return self.get_many(np.array(keys, dtype=np.uint64)).tolist()

    def _column_get(self, key: int) -> int:
        # the method on a numpy scalar: 1 µs (np.searchsorted() is 2.5 µs, a bare int 500 µs)
        i = int(self._keys.searchsorted(np.uint64(key)))
        if i < len(self._keys) and int(self._keys[i]) == key:
            return int(self._vals[i])
        return 0

    def put(self, key: int, word: int) -> None:
        if not word:
            raise ValueError("a state word is never 0")
        if self.get(key) is None:
            self._live += 1
        self._recent[key] = word
        self._merge_if_due()

    @property
    def _merge_at(self) -> int:
        # A merge copies the columns, so its cost grows with the table: merge less often as it
        # grows (a 64th of it, ~16 MB of dict at 10M), keeping merges a small share of the time.
        return max(self.MERGE_AT, len(self._keys) // 64)

    def delete(self, key: int) -> None:
        if self.get(key) is not None:
            self._live -= 1
            self._recent[key] = 0
            self._merge_if_due()

    def apply(self, writes: Mapping[int, int | None]) -> None:
        """Many writes at once, each a `put` (a word) or a `delete` (None): a committed batch's
        overlay. Which keys are present is read in one vectorised step (`get_many`) instead of one
        `get` each; a merge that falls due is run once, after all of them."""
        if len(writes) < self.FEW:
            for key, word in writes.items():
                if word is None:
                    self.delete(key)
                else:
                    self.put(key, word)
            return
        present = self.get_many(np.fromiter(writes, dtype=np.uint64, count=len(writes))).tolist()
        for (key, word), had in zip(writes.items(), present, strict=True):
            if word is None:
                if had:
                    self._live -= 1
                    self._recent[key] = 0
                continue
            if not word:
                raise ValueError("a state word is never 0")
            if not had:
                self._live += 1
            self._recent[key] = word
        self._merge_if_due()

    def _merge_if_due(self) -> None:
        if len(self._recent) >= (self.BACKLOG * self._merge_at if self.background else self._merge_at):
            self.merge()

    @property
    def wants_merge(self) -> bool:
        """A background owner should start a merge: enough recent writes, none being merged."""
        return not self._merging and len(self._recent) >= self._merge_at

    @property
    def may_merge(self) -> bool:
        """A background owner may start a merge: some recent writes, none being merged."""
        return not self._merging and bool(self._recent)

    def merge_job(self) -> Callable[[], Callable[[], None]]:
        """A merge whose copying may run in another thread. The recent writes are frozen (lookups
        still see them) and new ones collect anew; the returned `build` reads only the frozen
        writes and the current columns, and returns `install`, to be called on the owner's thread,
        which puts the new columns in place (unless a merge in place took the frozen writes
        meanwhile: then it does nothing). A build that fails hands the frozen writes back."""
        keys, vals = self._keys, self._vals
        frozen = self._merging = {**self._merging, **self._recent}
        self._recent = {}

        def build() -> Callable[[], None]:
            try:
                merged = _merged(keys, vals, frozen)
            except MemoryError:   # nothing is lost: the next merge tries again
                merged = None

            def install() -> None:
                if self._merging is not frozen:
                    return
                if merged is None:
                    self._recent = {**frozen, **self._recent}
                else:
                    self._keys, self._vals = merged
                self._merging = {}
            return install
        return build

    def merge(self) -> None:
        """Fold the recent writes (and any a background merge holds) into the sorted columns, here
        and now (O(n) copies, no per-entry objects)."""
        if not self._recent and not self._merging:
            return
        writes = {**self._merging, **self._recent} if self._merging else self._recent
        self._keys, self._vals = _merged(self._keys, self._vals, writes)
        self._recent, self._merging = {}, {}

    def load(self, keys: np.ndarray, words: np.ndarray) -> None:
        """Replace the content with a changelog read in order: the last word per key wins, 0 deletes."""
        order = np.argsort(keys, kind="stable")
        k, v = keys[order].astype(np.uint64), words[order].astype(np.uint64)
        last = np.ones(len(k), dtype=bool)
        last[:-1] = k[:-1] != k[1:]
        k, v = k[last], v[last]
        keep = v != 0
        self._keys, self._vals = k[keep].copy(), v[keep].copy()
        self._recent, self._merging = {}, {}
        self._live = len(self._keys)

    def keys_where(self, test: Callable[[np.ndarray], np.ndarray]) -> list[int]:
        """The keys whose word passes `test`, a vectorised test of a word column (recent writes
        merged first)."""
        self.merge()
        return self._keys[(self._vals != 0) & test(self._vals)].tolist()

    def expired(self, now_s: float) -> list[int]:
        """Keys whose expiry has passed (they are not removed here: the caller tombstones them)."""
        return self.keys_where(expiry_test(now_s))

    def scan_job(self, test: Callable[[np.ndarray], np.ndarray]) -> Callable[[], list[int]]:
        """`keys_where` for an owner whose event loop must not wait on it, and without a merge.
        Called on the owner's thread, it takes the columns and a copy of the recent writes as they
        are now (a dict copy: ~3 ms at 65k writes); the function it returns may run in a thread
        and lists the keys whose word passes `test`, a recent write deciding over the columns.
        numpy lets go of the GIL over the columns and the recent writes become arrays a slice at
        a time (`_dict_columns`), so the loop runs meanwhile. Writes after the call are not seen:
        the caller re-checks what it acts on."""
        keys, vals, merging, recent = self._keys, self._vals, self._merging, dict(self._recent)

        def scan() -> list[int]:
            hit = keys[(vals != 0) & test(vals)]
            writes = {**merging, **recent} if merging else recent
            if not writes:
                return hit.tolist()
            wk, wv = _dict_columns(writes)
            if len(hit):
                hit = hit[~np.isin(hit, wk)]
            return hit.tolist() + wk[(wv != 0) & test(wv)].tolist()
        return scan

    @property
    def nbytes(self) -> int:
        """Memory held by the table; the recent dict is costed at CPython's ~100 bytes an entry."""
        return int(self._keys.nbytes + self._vals.nbytes) + 100 * (len(self._recent) + len(self._merging))


def expiry_test(now_s: float) -> Callable[[np.ndarray], np.ndarray]:
    """The vectorised test of words whose expiry hour is before `now_s`'s."""
    now_h = np.uint64(hours_since_2020(now_s))
    return lambda words: ((words >> np.uint64(8)) & np.uint64(0x7FFFFF)) < now_h


def word_expired(word: int, now_s: float) -> bool:
    """`expiry_test` for one word (0, a deletion, is not expired: it is gone)."""
    return word != 0 and (word >> 8) & 0x7FFFFF < hours_since_2020(now_s)


DICT_SLICE = 16_384   # recent writes become arrays this many at a time (~1 ms each)


def _dict_columns(writes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The keys and words of `writes` as two uint64 arrays, in its order. np.fromiter holds the GIL
    throughout, so they are built DICT_SLICE at a time: a thread building them lets the event loop
    in between slices (at 65k writes a single call held it ~5-15 ms). `writes` must not change
    meanwhile (the callers' dicts are frozen or private)."""
    n = len(writes)
    rk, rv = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.uint64)
    keys, words = iter(writes.keys()), iter(writes.values())
    for start in range(0, n, DICT_SLICE):
        count = min(DICT_SLICE, n - start)
        rk[start:start + count] = np.fromiter(itertools.islice(keys, count), dtype=np.uint64, count=count)
        rv[start:start + count] = np.fromiter(itertools.islice(words, count), dtype=np.uint64, count=count)
    return rk, rv


def _merged(keys: np.ndarray, vals: np.ndarray, writes: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """New sorted columns: `keys`/`vals` with `writes` (key → word, 0 deletes) folded in. The inputs
    are not modified (a background merge reads them while the loop goes on using them)."""
    rk, rv = _dict_columns(writes)
    order = np.argsort(rk)
    rk, rv = rk[order], rv[order]
    pos = np.searchsorted(keys, rk)
    found = pos < len(keys)
    found[found] = keys[pos[found]] == rk[found]
    if found.any():
        vals = vals.copy()
        vals[pos[found]] = rv[found]
    new = ~found & (rv != 0)
    if new.any():
        keys = np.insert(keys, pos[new], rk[new])
        vals = np.insert(vals, pos[new], rv[new])
    dead = vals == 0
    if int(dead.sum()) * 8 > len(vals):  # compact when an eighth is deleted
        keys, vals = keys[~dead], vals[~dead]
    return keys, vals
