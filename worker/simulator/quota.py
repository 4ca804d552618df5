"""Per-account quota (a sliding window of accepted calls) and the providers' result cache."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

import attrs


class SlidingWindowQuota:
    """At most `limit` accepted calls in any `window_secs`; refused calls do not count."""

    def __init__(self, limit: int, window_secs: float) -> None:
        self.limit = limit
        self.window_secs = window_secs
        self._calls: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - self.window_secs:
            self._calls.popleft()

    def try_acquire(self, now: float) -> bool:
        self._expire(now)
        if len(self._calls) >= self.limit:
            return False
        self._calls.append(now)
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the oldest call in the window leaves it."""
        self._expire(now)
        if len(self._calls) < self.limit or not self._calls:
            return 0.0
        return max(0.0, self._calls[0] + self.window_secs - now)

    def used(self, now: float) -> int:
        self._expire(now)
        return len(self._calls)


@attrs.frozen(slots=True)
class CachedAnswer:
    served_at: float
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class ResultCache:
    """The provider's result cache: the first answer to a parameter set, replayed for `ttl_secs`."""

    def __init__(self, ttl_secs: float, max_entries: int = 50_000) -> None:
        self.ttl_secs = ttl_secs
        self.max_entries = max_entries
        self._entries: dict[Hashable, CachedAnswer] = {}

    def get(self, key: Hashable, now: float) -> CachedAnswer | None:
        if self.ttl_secs <= 0:
            return None
        hit = self._entries.get(key)
        if hit is None:
            return None
        if now - hit.served_at >= self.ttl_secs:
            del self._entries[key]
            return None
        return hit

    def put(self, key: Hashable, answer: CachedAnswer) -> None:
        if self.ttl_secs <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._sweep(answer.served_at)
            while len(self._entries) >= self.max_entries:  # still full: drop the oldest
                del self._entries[next(iter(self._entries))]
        self._entries[key] = answer

    def _sweep(self, now: float) -> None:
        for key in [k for k, v in self._entries.items() if now - v.served_at >= self.ttl_secs]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def freeze(params: Any) -> Hashable:
    """A hashable, order-independent form of request parameters."""
    if isinstance(params, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in params.items()))
    if isinstance(params, (list, tuple)):
        return tuple(freeze(v) for v in params)
    return params
