"""esw_deliverability_events_total (issue 17): committed events by the recipient's receiving domain,
a label of its own only for the top domains by volume (worker.domains.DomainRanking), every other
domain `other`. Expected values are written by hand from the streams below."""

from __future__ import annotations

import pytest

from worker import metrics
from worker.domains import DomainRanking, recipient_domain
from worker.metrics import REGISTRY

NAME = "esw_deliverability_events_total"


def record(address: bytes | None, type_: bytes = b"delivered") -> tuple:
    """An output record as a committed batch holds it: (topic, key, value, headers)."""
    return (f"p.{type_.decode()}", address, b"{}", [("event_type", type_), ("provider", b"sendcloud")])


def series() -> dict[tuple[str, str], float]:
    """Every esw_deliverability_events_total series: (domain, type) -> value."""
    return {(s.labels["domain"], s.labels["type"]): s.value
            for family in REGISTRY.collect() for s in family.samples if s.name == NAME}


@pytest.mark.parametrize(("key", "domain"), [
    (b"bob@example.com", "example.com"),
    (b"Bob@Example.COM", "example.com"),                     # case-folded
    (b"a@b@mail.example.org", "mail.example.org"),           # several @: after the last one
    (b'"a@b"@qq.com', "qq.com"),
    (b"@example.com", "example.com"),                        # no local part: still the domain
    ("bob@例子.中国".encode(), "例子.中国"),                    # an internationalized domain, as is
    (b"bob", "other"),                                       # no @
    (b"bob@", "other"),                                      # trailing @
    (b"bob@example.com@", "other"),
    (b"", "other"),
    (None, "other"),
    (b"bob@localhost", "other"),                             # no dot: not an internet domain
    (b"bob@.com", "other"),                                  # an empty label
    (b"bob@example.com.", "other"),
    (b"bob@exa mple.com", "other"),
    (b"bob@exa/mple.com", "other"),
    (b"bob@\xffexample.com", "other"),                       # not UTF-8
    (b"bob@exa_mple.com", "other"),
    (b"bob@xn--fiqs8s.xn--fiqz9s", "xn--fiqs8s.xn--fiqz9s"),  # punycode
    (b"bob@" + b"a" * 250 + b".com", "other"),               # 254 characters: longer than DNS allows
    (b"bob@" + b"a" * 249 + b".com", "a" * 249 + ".com"),    # 253: the longest there is
])
def test_the_receiving_domain_of_an_address(key, domain):
    assert recipient_domain(key) == domain


def test_the_top_domains_of_a_stream_get_their_labels_and_the_tail_is_other():
    # Ten batches; each: 50 events to a.com, 40 to b.com, 30 to c.com, 20 to d.com and one each to
    # six tail domains (60 distinct in all). N = 3, a label needs a guaranteed count of 100:
    # a.com has 100 after batch 2, b.com 120 after batch 3, c.com 120 after batch 4 (then the three
    # labels are given); d.com and the tail stay `other`. Events before a label are `other`.
    metrics.deliverability_domains(3)
    for i in range(10):
        batch = ([record(b"x@a.com")] * 50 + [record(b"x@b.com")] * 40 + [record(b"x@c.com")] * 30
                 + [record(b"x@d.com")] * 20 + [record(f"x@t{i}-{j}.net".encode()) for j in range(6)])
        metrics.deliverability(batch)
    assert series() == {
        ("a.com", "delivered"): 450.0,        # batches 2..10: 9 x 50
        ("b.com", "delivered"): 320.0,        # batches 3..10: 8 x 40
        ("c.com", "delivered"): 210.0,        # batches 4..10: 7 x 30
        ("other", "delivered"): 480.0,        # 50 + 80 + 90 before their labels, d.com 200, tail 60
    }


def test_never_more_than_n_labels_and_the_same_stream_gives_the_same_labels():
    # Ten domains of 200 events each in one batch, N = 3: all qualify at once (equal counts), the
    # first three in the batch's order get the labels, every later event of the others is `other`.
    batch = [record(f"u@d{i}.com".encode(), t) for i in range(10) for t in (b"delivered", b"invalid")
             for _ in range(100)]
    expected = {("d0.com", "delivered"): 100.0, ("d0.com", "invalid"): 100.0,
                ("d1.com", "delivered"): 100.0, ("d1.com", "invalid"): 100.0,
                ("d2.com", "delivered"): 100.0, ("d2.com", "invalid"): 100.0,
                ("other", "delivered"): 700.0, ("other", "invalid"): 700.0}
    for _ in range(2):
        metrics.deliverability_domains(3)
        metrics.deliverability(batch)
        assert series() == expected
    metrics.deliverability([record(b"u@d9.com")] * 5000)       # far bigger now, but no room left
    assert series()[("other", "delivered")] == 5700.0
    assert {domain for domain, _ in series()} == {"d0.com", "d1.com", "d2.com", "other"}


def test_case_and_odd_addresses_are_counted_by_their_domain_or_as_other():
    metrics.deliverability_domains(2)
    metrics.deliverability([record(b"Bob@Gmail.COM")] * 60 + [record(b"bob@gmail.com")] * 40
                           + [record(b"bob"), record(b"bob@"), record(b"a@b@gmail.com"), record(None),
                              record(b"x@example.com", b"complaint")])
    assert series() == {("gmail.com", "delivered"): 101.0, ("other", "delivered"): 3.0,
                        ("other", "complaint"): 1.0}


def test_odd_addresses_never_take_a_label():
    # 300 events with no usable domain, N = 1: they are `other`, and the label stays free.
    metrics.deliverability_domains(1)
    metrics.deliverability([record(b"nobody")] * 100 + [record(b"bob@")] * 100 + [record(b"x@localhost")] * 100)
    metrics.deliverability([record(b"x@qq.com", b"soft_bounce")] * 100)
    assert series() == {("other", "delivered"): 300.0, ("qq.com", "soft_bounce"): 100.0}


def test_every_event_type_is_counted_and_records_without_one_are_not():
    metrics.deliverability_domains(1)
    types = (b"delivered", b"invalid", b"soft_bounce", b"complaint", b"unsubscribed")
    metrics.deliverability([record(b"a@x.org", t) for t in types]
                           + [("p.x", b"a@x.org", b"{}", [("provider", b"sendcloud")]),
                              record(b"a@x.org", b"opened")])
    assert series() == {("other", "delivered"): 1.0, ("other", "invalid"): 1.0, ("other", "soft_bounce"): 1.0,
                        ("other", "complaint"): 1.0, ("other", "unsubscribed"): 1.0}


def test_n_zero_gives_no_series():
    metrics.deliverability_domains(2)
    metrics.deliverability([record(b"x@a.com")])
    assert series() == {("other", "delivered"): 1.0}
    metrics.deliverability_domains(0)
    assert series() == {}
    metrics.deliverability([record(b"x@a.com")] * 500 + [record(b"nobody")])
    assert series() == {}


def test_a_label_needs_its_guaranteed_count_not_its_estimate():
    # One label, 8 sketch slots, 10 events needed. Eight tail domains of 5 fill the sketch; big.com
    # then takes the least slot: its count starts at that slot's 5 (error 5), so 3 + 2 events make
    # 10 by the estimate but only 5 guaranteed: `other`; 5 more and it has its label.
    ranking = DomainRanking(1, min_events=10)
    for i in range(8):
        assert ranking.observe({f"t{i}.com": 5}) == {f"t{i}.com": "other"}
    assert ranking.observe({"big.com": 3}) == {"big.com": "other"}
    assert ranking.observe({"big.com": 2}) == {"big.com": "other"}
    assert ranking.observe({"big.com": 5}) == {"big.com": "big.com"}
    assert ranking.observe({"t9.com": 1000, "big.com": 1}) == {"t9.com": "other", "big.com": "big.com"}
    assert ranking.labelled == {"big.com"}


def test_a_domain_outside_the_sketch_top_n_waits_while_there_is_room():
    # N = 2 (16 slots), 100 events needed. Sixteen domains of 60 fill the sketch, z.com last.
    ranking = DomainRanking(2)
    ranking.observe({**{f"t{i}.com": 60 for i in range(15)}, "z.com": 60})
    # y.com takes the slot of 60 that came first (t0.com): 150 by the estimate, 90 guaranteed.
    assert ranking.observe({"y.com": 90}) == {"y.com": "other"}
    assert ranking.observe({"x.com": 500}) == {"x.com": "x.com"}  # 560, 500 guaranteed: first
    # z.com has 105 for sure, but x.com (560) and y.com (150) rank above it: one label is left,
    # and it is not z.com's while y.com may be bigger.
    assert ranking.observe({"z.com": 45}) == {"z.com": "other"}
    assert ranking.observe({"y.com": 10}) == {"y.com": "y.com"}   # 100 guaranteed, second
    assert ranking.observe({"z.com": 1000}) == {"z.com": "other"}  # no room left
    assert ranking.labelled == {"x.com", "y.com"}


def test_memory_is_bounded_by_the_slots():
    ranking = DomainRanking(2, min_events=10**9)                    # never labels: the sketch stays
    for i in range(1000):
        ranking.observe({f"d{i}.com": 1 + i % 7})
    assert ranking.slots == 16
    assert len(ranking._counts) == 16 and len(ranking._heap) == 16
