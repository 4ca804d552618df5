"""The webhook replay defence: a signature seen before on a different record is a replay.

SendCloud and Aurora sign only `timestamp + token`, EngageLab only a timestamp: a captured
signature stays valid for the whole replay window with any body. So the shard that owns an
account remembers, for each replay key a provider module names (worker/providers `replay_key`),
a digest of the record it first came with, until the window has passed. The same key with the
same record again is a provider's retry (dedup drops it); with another record it is dead-lettered
as `replayed_signature` and never emitted.

The table is a `DedupTable` (16 bytes an entry): key = 64-bit hash of provider, account and replay
key; word = the record's 32-bit digest above the expiry hours (the dedup word's layout, so the
table's expiry scan works unchanged). `_state` keeps it under key kind `r` (worker.state).
Bound: one entry per signed webhook delivery in the window (2 days by default).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson


def replay_table_key(provider: str, account: str, replay_key: str) -> int:
    digest = hashlib.blake2b(f"{provider}\x1f{account}\x1f{replay_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def record_digest(record: Mapping[str, Any]) -> int:
    """32 bits of the record's content, whatever the order of its fields."""
    data = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return int.from_bytes(hashlib.blake2b(data, digest_size=4).digest(), "big")


def replay_word(digest: int, expire_h: int) -> int:
    return (digest & 0xFFFFFFFF) << 32 | (expire_h & 0x7FFFFF) << 8 | 1


def digest_of(word: int) -> int:
    return word >> 32
