"""`AccountStream.events`: every timeline entry in a time range once, in time order, however the
stream grew between queries (its entries are kept in per-minute buckets sorted when read)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from worker.model import Provider
from worker.simulator.simconfig import SimAccount
from worker.simulator.stream import AccountStream

ANCHOR_MS = int(datetime(2024, 5, 10, 11, 0, tzinfo=timezone.utc).timestamp()) * 1000
MIN = 60_000


def stream(provider: Provider) -> AccountStream:
    acct = SimAccount(provider=provider, name="a", api_user="u", api_key="k", history_days=1, history_per_day=300,
                      live_per_sec=2.0, live_max=400)
    return AccountStream(acct, 5, ANCHOR_MS, 1.0)


def brute(s: AccountStream, since: int | None, until: int) -> list[tuple[str, int, int]]:
    """The oracle: every message's entries filtered and ordered by (time, message, position)."""
    found = [(e.at_ms, m.seq, i) for m in s.messages for i, e in enumerate(m.entries)
             if (since is None or e.at_ms > since) and e.at_ms <= until]
    return [(s.messages[seq].email_id, at, i) for at, seq, i in sorted(found)]


def listed(s: AccountStream, since: int | None, until: int) -> list[tuple[str, int, int]]:
    return [(m.email_id, e.at_ms, m.entries.index(e)) for m, e in s.events(since, until)]


@pytest.mark.parametrize("provider", [Provider.SENDCLOUD, Provider.UNISENDER, Provider.TENCENT_SES])
def test_events_match_the_oracle_as_the_stream_grows(provider):
    s = stream(provider)
    asked = ANCHOR_MS
    for step in (30_000, MIN, 7 * MIN, 61 * MIN, 3 * 3600_000):   # queries a minute apart and hours apart
        s.advance(asked + step)
        assert listed(s, asked, asked + step) == brute(s, asked, asked + step)
        asked += step
    everything = asked + 10 * 86400_000
    assert listed(s, None, everything) == brute(s, None, everything)
    assert len(listed(s, None, everything)) == sum(len(m.entries) for m in s.messages) > 1000
    # bounds inside one minute, on a bucket's edge, and a span far longer than the stream
    at = s.messages[len(s.messages) // 2].entries[0].at_ms
    for since, until in ((at - 1, at), (at, at + 1), (at // MIN * MIN - 1, at // MIN * MIN),
                         (at // MIN * MIN, at // MIN * MIN + MIN - 1), (0, everything), (everything, everything + MIN)):
        assert listed(s, since, until) == brute(s, since, until)


def test_an_entry_exactly_at_since_is_not_listed_and_one_at_until_is():
    s = stream(Provider.SENDCLOUD)
    s.advance(ANCHOR_MS + 600_000)
    m = s.messages[-1]
    at = m.entries[0].at_ms
    assert (m.email_id, at, 0) in listed(s, at - 1, at)
    assert (m.email_id, at, 0) not in listed(s, at, at + MIN)
