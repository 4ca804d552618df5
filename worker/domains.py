"""Receiving domains for esw_deliverability_events_total: which domain an event's key names, and
which domains get a label of their own (a bounded ranking). Pure: worker.metrics owns the counter
and calls these; nothing here touches a collector."""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Mapping

from worker.model import EventType

OTHER_DOMAIN = "other"
EVENT_TYPES = frozenset(t.value.encode() for t in EventType)
MAX_DOMAIN_CHARS = 253       # the longest DNS name
_DOMAIN_NAME = re.compile(r"(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)+")   # letters (any script), digits, -


class DomainRanking:
    """Which receiving domains get a label of their own: at most `top`, for the life of the
    process (a counter series cannot be removed once created, so a label once given is kept).

    A weighted space-saving sketch (Metwally, Agrawal, El Abbadi 2005) of `SLOTS_PER_LABEL x top`
    domains ranks the stream: a domain seen more than total/slots times is always in it, and its
    count there overstates the truth by at most its `error` (<= total/slots). While fewer than
    `top` domains have a label, a domain gets one when it is among the sketch's `top` largest
    counts and its guaranteed count (count - error) is at least `min_events`; every other domain
    is `other`. Once all labels are given the sketch is dropped. Deterministic for a given input
    order (of equal counts, the domain that entered the sketch first is evicted first). Memory: at
    most `slots` entries, each its name and about 300 bytes (the count and error, a dict entry, a
    heap entry): under 400 bytes for a 15-character domain, at most 1.4 KB for a 253-character one
    (in 4-byte characters); for the default 20 labels, 160 entries: about 60 KB, at most 224 KB.
    """

    SLOTS_PER_LABEL = 8
    MIN_EVENTS = 100

    def __init__(self, top: int, min_events: int = MIN_EVENTS) -> None:
        self.top = top
        self.min_events = min_events
        self.slots = self.SLOTS_PER_LABEL * top
        self.labelled: set[str] = set()
        self._counts: dict[str, list[int]] = {}          # domain -> [count, error]
        self._heap: list[tuple[int, int, str]] = []      # (count when pushed, entry order, domain)
        self._order = 0

    def observe(self, weights: Mapping[str, int]) -> dict[str, str]:
        """Count each domain's events (in the mapping's order), then label each: itself or `other`."""
        if len(self.labelled) < self.top:
            for domain, n in weights.items():
                self._add(domain, n)
        return {domain: self._label(domain) for domain in weights}

    def _label(self, domain: str) -> str:
        if domain in self.labelled:
            return domain
        if len(self.labelled) >= self.top or domain not in self._counts:
            return OTHER_DOMAIN
        count, error = self._counts[domain]
        if count - error < self.min_events or sum(c > count for c, _ in self._counts.values()) >= self.top:
            return OTHER_DOMAIN
        self.labelled.add(domain)
        if len(self.labelled) >= self.top:           # no label left to give: the ranking is done
            self._counts, self._heap = {}, []
        return domain

    def _add(self, domain: str, n: int) -> None:
        slot = self._counts.get(domain)
        if slot is not None:
            slot[0] += n           # its heap entry is refreshed lazily, when it reaches the top
            return
        floor = 0
        if len(self._counts) >= self.slots:
            while True:            # the least count: refresh stale heap entries until the top is current
                pushed, order, least = self._heap[0]
                now = self._counts[least][0]
                if now == pushed:
                    break
                heapq.heapreplace(self._heap, (now, order, least))
            heapq.heappop(self._heap)
            del self._counts[least]
            floor = pushed
        self._counts[domain] = [floor + n, floor]
        heapq.heappush(self._heap, (floor + n, self._order, domain))
        self._order += 1


def recipient_domain(key: bytes | None) -> str:
    """The receiving domain of an event's key (the recipient address): lower case, after the last
    `@`; `other` when there is none, or it is not a plausible domain name (dot-separated labels of
    letters, digits and `-`, at least two, at most 253 characters)."""
    if not key or (at := key.rfind(b"@")) < 0:
        return OTHER_DOMAIN
    return _domain_name(key[at + 1:])


@functools.lru_cache(maxsize=4096)   # a campaign's events share a few domains: each read once
def _domain_name(part: bytes) -> str:
    try:
        domain = part.decode("utf-8").lower()
    except UnicodeDecodeError:
        return OTHER_DOMAIN
    if len(domain) > MAX_DOMAIN_CHARS or not _DOMAIN_NAME.fullmatch(domain):
        return OTHER_DOMAIN
    return domain
