"""The shard assignor: fair shares, claims kept, stale claims ignored (hand-worked tables)."""

from __future__ import annotations

import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from worker.assign import decode_claim, encode_claim, plan, sticky_assignor

PLANS = [
    # (partitions, claims, expected)
    # a fresh group: nobody holds anything; shares 3/3/2 dealt in member order
    (range(8), {"a": [], "b": [], "c": []}, {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}),
    # nothing moves when every member keeps its fair share
    (range(8), {"a": [0, 3, 6], "b": [1, 4, 7], "c": [2, 5]}, {"a": [0, 3, 6], "b": [1, 4, 7], "c": [2, 5]}),
    # c left: a and b keep theirs, c's two are dealt out (a gets 2, b gets 5)
    (range(8), {"a": [0, 3, 6], "b": [1, 4, 7]}, {"a": [0, 2, 3, 6], "b": [1, 4, 5, 7]}),
    # a new member joins two that hold 4 each: each gives up exactly one (its highest)
    (range(8), {"a": [0, 2, 3, 6], "b": [1, 4, 5, 7], "n": []}, {"a": [0, 2, 3], "b": [1, 4, 5], "n": [6, 7]}),
    # the larger share goes to the member holding more: b holds 3, a 2, so b keeps all three
    (range(5), {"a": [0, 1], "b": [2, 3, 4]}, {"a": [0, 1], "b": [2, 3, 4]}),
    # a partition claimed twice (stale) is nobody's claim; it is dealt out like a free one
    (range(4), {"a": [0, 1], "b": [1, 2]}, {"a": [0, 1], "b": [2, 3]}),
    (range(4), {"a": [0, 1], "b": [1, 2, 3]}, {"a": [0, 1], "b": [2, 3]}),
    # claims on partitions that do not exist (the topic shrank? never: ignored) and duplicates in a claim
    (range(3), {"a": [7, 0, 0], "b": [9]}, {"a": [0, 1], "b": [2]}),
    # more members than partitions: some get nothing
    (range(2), {"a": [1], "b": [], "c": [0]}, {"a": [1], "b": [], "c": [0]}),
    # one member takes everything
    (range(4), {"solo": [3]}, {"solo": [0, 1, 2, 3]}),
    # no members
    (range(4), {}, {}),
]


@pytest.mark.parametrize(("partitions", "claims", "expected"), PLANS)
def test_plan(partitions, claims, expected):
    assert plan(partitions, claims) == expected


def test_rolling_three_replicas_moves_few_shards():
    """Roll a, b, c one by one over 12 shards (leave, then join as a new member): under round-robin
    every step moves most shards; here each step moves at most what the leaving member held."""
    held = plan(range(12), {"a": [], "b": [], "c": []})
    assert held == {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7], "c": [8, 9, 10, 11]}
    held = plan(range(12), {"b": held["b"], "c": held["c"]})              # a leaves
    assert held == {"b": [0, 1, 4, 5, 6, 7], "c": [2, 3, 8, 9, 10, 11]}
    held = plan(range(12), {**held, "a2": []})                           # a2 joins
    assert held == {"a2": [6, 7, 10, 11], "b": [0, 1, 4, 5], "c": [2, 3, 8, 9]}


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"v":1,"topic":"esw._raw","held":[3,1]}', [3, 1]),
    (b'{"v":2,"topic":"esw._raw","held":[3]}', []),           # a later version: no claim
    (b'{"v":1,"topic":"other._raw","held":[3]}', []),         # another topic
    (b'{"v":1,"topic":"esw._raw","held":"3"}', []),
    (b'{"v":1,"topic":"esw._raw","held":[1,-1,true,"2",2.0,4]}', [1, 4]),
    (b"", []),
    (None, []),
    (b"\x00\x01 not json", []),
    (b"[1,2]", []),
])
def test_decode_claim(data, expected):
    assert decode_claim(data, "esw._raw") == expected


def test_claim_round_trip():
    assert decode_claim(encode_claim("esw._raw", [5, 2]), "esw._raw") == [2, 5]


def _cluster(topic: str, n: int) -> ClusterMetadata:
    cluster = ClusterMetadata()
    cluster._partitions[topic] = {p: None for p in range(n)}
    return cluster


def test_assignor_class_per_consumer_and_through_aiokafka_structs():
    mine = [4, 1]
    theirs: list[int] = []
    a, b = sticky_assignor(lambda: mine), sticky_assignor(lambda: theirs)
    assert a is not b and a.name == b.name == "esw-sticky"
    members = {"m-a": a.metadata(["esw._raw"]), "m-b": b.metadata(["esw._raw"]),
               "m-junk": ConsumerProtocolMemberMetadata(0, ["esw._raw"], b"\xff")}
    # through the wire format, as the coordinator hands them to the leader
    members = {m: ConsumerProtocolMemberMetadata.decode(md.encode()) for m, md in members.items()}
    out = a.assign(_cluster("esw._raw", 6), members)
    assert {m: [p for _, ps in asg.assignment for p in ps] for m, asg in out.items()} == {
        "m-a": [1, 4], "m-b": [0, 2], "m-junk": [3, 5]}
