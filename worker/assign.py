"""Shard assignment that moves as few shards as it can.

aiokafka's group protocol is eager: every rebalance revokes everything and assigns again. With
round-robin, a replica joining or leaving reshuffles most shards, and every moved shard is restored
from `_state` on its new owner. The shard manager keeps a revoked shard suspended in memory
(worker.group), so a shard that comes back to the same replica costs nothing. This assignor makes
that the common case: each member says which shards it still holds (user data of its join), keeps
them up to its fair share, and only the rest is dealt out.

Why not aiokafka's StickyPartitionAssignor: it keeps its memory in class attributes shared by every
consumer of the process, and never learns its generation (aio-libs/aiokafka#1175, #1176); a claim
here is what the replica really holds in memory, asked of the manager at join time.

Rolling updates: a member offers this protocol only. Earlier releases (through 272c112) offered it first
and round-robin second, so a group mixing them with this release agrees on this protocol. The
round-robin fallback was dropped because aiokafka sends one JoinGroup per configured assignor, the
first with only the first protocol (aio-libs/aiokafka#1168): every join changed the member's
protocols mid-rebalance and started another generation, and two members whose joins were out of
step re-triggered each other's rebalances for minutes with no partition assigned. A release older
than the one that introduced this assignor (round-robin only) cannot share a group with this one:
upgrade through a release that offers both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

PROTOCOL = "esw-sticky"
USERDATA_VERSION = 1


def plan(partitions: Iterable[int], claims: Mapping[str, Iterable[int]]) -> dict[str, list[int]]:
    """Every partition to exactly one member, shares differing by at most one, each member keeping
    as much of what it claims as its share allows. A partition claimed by two members (a stale
    claim) or not existing is nobody's claim. Deterministic for the same input."""
    members = sorted(claims)
    if not members:
        return {}
    existing = sorted(set(partitions))
    seen: dict[int, int] = {}
    for m in members:
        for p in set(claims[m]):
            seen[p] = seen.get(p, 0) + 1
    valid = {m: sorted(p for p in set(claims[m]) if seen[p] == 1 and p in existing) for m in members}
    base, extra = divmod(len(existing), len(members))
    # The larger shares go to the members that hold the most, so that fewer shards move.
    by_claims = sorted(members, key=lambda m: (-len(valid[m]), m))
    share = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_claims)}
    out = {m: valid[m][:share[m]] for m in members}
    taken = {p for ps in out.values() for p in ps}
    free = iter(p for p in existing if p not in taken)
    for m in members:
        while len(out[m]) < share[m]:
            out[m].append(next(free))
        out[m].sort()
    return out


def encode_claim(topic: str, held: Iterable[int]) -> bytes:
    return orjson.dumps({"v": USERDATA_VERSION, "topic": topic, "held": sorted(held)})


def decode_claim(data: bytes | None, topic: str) -> list[int]:
    """What a member holds of `topic`; nothing when the user data is absent, of another version or
    another topic, or not ours at all (a member must never fail the group's assignment)."""
    try:
        doc = orjson.loads(data or b"")
    except orjson.JSONDecodeError:
        return []
    if not isinstance(doc, dict) or doc.get("v") != USERDATA_VERSION or doc.get("topic") != topic:
        return []
    held = doc.get("held")
    if not isinstance(held, list):
        return []
    return [p for p in held if isinstance(p, int) and not isinstance(p, bool) and p >= 0]


def sticky_assignor(held: Callable[[], Iterable[int]]) -> type[AbstractPartitionAssignor]:
    """An assignor class for one consumer: `held()` names the shards its replica holds in memory.
    A class per consumer (aiokafka calls classmethods), so that two consumers of one process never
    share a claim."""

    class StickyShards(AbstractPartitionAssignor):
        name = PROTOCOL
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            topics = sorted(topics)
            claim = encode_claim(topics[0], held()) if len(topics) == 1 else b""
            return ConsumerProtocolMemberMetadata(cls.version, topics, claim)

        @classmethod
        def assign(cls, cluster: ClusterMetadata,
                   members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = sorted({t for m in members.values() for t in m.subscription})
            out: dict[str, list[tuple[str, list[int]]]] = {m: [] for m in members}
            for topic in topics:
                partitions = cluster.partitions_for_topic(topic) or set()
                subscribed = {m: decode_claim(md.user_data, topic) for m, md in members.items()
                              if topic in md.subscription}
                for m, ps in plan(partitions, subscribed).items():
                    if ps:
                        out[m].append((topic, ps))
            return {m: ConsumerProtocolMemberAssignment(cls.version, out[m], b"") for m in members}

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            pass

    return StickyShards
