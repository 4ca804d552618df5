"""Kafka's murmur2 and the default partitioner's choice (worker.emit `murmur2`, `partition_of`):
the shard's batched records must land where `producer.send` and any Java producer put the same key.
Expected hashes are the Java client's (org.apache.kafka.common.utils.UtilsTest `testMurmur2`, as
signed ints; here as the unsigned 32-bit value: n + 2**32 for a negative n); the partitions are
worked out by hand from them: toPositive(h) = h & 0x7fffffff, then % n."""

from __future__ import annotations

import pytest

from worker.emit import murmur2, partition_of

JAVA = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "signed"), JAVA, ids=[k.decode() for k, _ in JAVA])
def test_the_java_clients_hashes(key, signed):
    assert murmur2(key) == signed % 2**32


def test_empty_and_every_tail_length():
    # lengths 0-3 take only the tail step; 4-7 one word and each tail (checked against the vectors'
    # own lengths above: 2, 6, 24, 26, 48, 3). The empty key: seed ^ 0 through the final mix only.
    assert murmur2(b"") == 275646681


def test_the_partition_of_a_key():
    # foobar: -790332482 & 0x7fffffff = 1357151166 = 6 * 226191861 -> partition 0 of 6, 1357151166 % 12 = 6
    assert partition_of(b"foobar", 6) == 0 and partition_of(b"foobar", 12) == 6
    # abc: 479470107 = 6 * 79911684 + 3 -> 3 of 6; % 5 = 2
    assert partition_of(b"abc", 6) == 3 and partition_of(b"abc", 5) == 2
    # 21: -973932308 & 0x7fffffff = 1173551340; % 7 = 1173551340 - 7 * 167650191 = 3
    assert partition_of(b"21", 7) == 3
