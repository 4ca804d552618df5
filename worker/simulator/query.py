"""What the provider APIs share: the per-account state, answers, and selecting visible rows."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import date
from typing import Any

import attrs
import orjson

from worker.model import Provider
from worker.simulator.quota import CachedAnswer, ResultCache, SlidingWindowQuota
from worker.simulator.simconfig import Faults, SimAccount
from worker.simulator.stream import AccountStream, Entry, Message

Predicate = Callable[[Message, Entry], bool]


@attrs.frozen(slots=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json;charset=UTF-8"),)
    rows: int = 0   # status rows in the answer (what a benchmark counts as polled)


def json_answer(data: Any, status: int = 200, headers: Iterable[tuple[str, str]] = (), *, rows: int = 0) -> Answer:
    return Answer(status, orjson.dumps(data), (("Content-Type", "application/json;charset=UTF-8"), *headers), rows)


@attrs.define
class ApiRequest:
    """A request as a provider API read it: the account its credentials name, and its parameters."""

    params: dict[str, Any]
    account: AccountState | None = None
    auth_error: Answer | None = None  # set when the credentials are missing or wrong


class BadParams(Exception):
    """A request the provider refuses; carries the provider's own error answer."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class AccountState:
    """Everything the simulator keeps for one account while it runs."""

    def __init__(self, account: SimAccount, seed: int, anchor_ms: int, time_scale: float) -> None:
        self.account = account
        self.stream = AccountStream(account, seed, anchor_ms, time_scale)
        self.quota = SlidingWindowQuota(account.quota_per_minute, account.quota_window_secs)
        self.cache = ResultCache(account.cache_ttl_secs)
        self.faults = Faults()
        self.fault_rng = random.Random(0)
        self.counters: Counter[str] = Counter()
        self._memo: dict[Hashable, tuple[int, list[Message]]] = {}

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def provider(self) -> Provider:
        return self.account.provider

    def roll_fault(self) -> str | None:
        f, r = self.faults, self.fault_rng.random()
        for name, rate in (("5xx", f.error_5xx_rate), ("timeout", f.timeout_rate),
                           ("malformed", f.malformed_rate), ("slow", f.slow_rate), ("bad_row", f.bad_row_rate)):
            if r < rate:
                return name
            r -= rate
        return None

    def select(
        self,
        dates: tuple[date, ...],
        now_ms: int,
        pred_key: Hashable | None,
        pred: Predicate | None,
        candidates: list[Message] | None = None,
    ) -> list[Message]:
        """Messages of `dates` (or of `candidates`) sent by now_ms whose visible status matches."""
        self.stream.advance(now_ms)
        if candidates is not None:
            date_set = set(dates)
            msgs = sorted((m for m in candidates if m.sent_ms <= now_ms and m.local_date in date_set),
                          key=lambda m: m.seq)
            if pred is None:
                return msgs
            return [m for m in msgs if (e := m.visible(now_ms)) is not None and pred(m, e)]
        day_lists = [self.stream.day(d, now_ms) for d in sorted(dates)]
        if pred is None:
            return [m for day in day_lists for m in day]
        key = (dates, pred_key)
        memo = self._memo.get(key)
        if memo is not None and now_ms < memo[0]:
            return memo[1]
        out: list[Message] = []
        valid_until = 1 << 62
        for day in day_lists:
            for m in day:
                e = m.visible(now_ms)
                if e is not None and pred(m, e):
                    out.append(m)
                nxt = m.next_change_ms(now_ms)
                if nxt is not None and nxt < valid_until:
                    valid_until = nxt
        for d in dates:  # a message yet to be sent on one of these days also changes the answer
            later = [m for m in self.stream.days.get(d, ()) if m.sent_ms > now_ms][:1]
            if later:
                valid_until = min(valid_until, later[0].sent_ms)
        if dates and max(dates) >= self.stream.local_date(self.stream.anchor_ms):
            valid_until = min(valid_until, now_ms + 1000)  # the live stream may add messages any second
        if len(self._memo) > 256:
            self._memo.clear()
        self._memo[key] = (valid_until, out)
        return out

    def cached(self, key: Hashable, now: float) -> CachedAnswer | None:
        return self.cache.get(key, now)

    def remember(self, key: Hashable, now: float, answer: Answer) -> None:
        self.cache.put(key, CachedAnswer(now, answer.status, answer.headers, answer.body))


def strip(params: Mapping[str, Any], secret: Iterable[str]) -> tuple:
    """The query key: parameters minus credentials, signatures and timestamps, hashable."""
    drop = set(secret)
    return tuple(sorted((k, str(v)) for k, v in params.items() if k not in drop))
