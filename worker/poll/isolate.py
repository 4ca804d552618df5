"""Which ids of a refused batch the provider refuses alone.

A status API that takes many ids per call refuses the whole call when one id is not its kind
(UniSender's checkEmail: `invalid_arg` for `ABC-123` among numbers; SendCloud: an id with `;`,
refused before sending). One such id from the sent feed made every call of an account's id
polling fail, and every id batched with it went unpolled for the id's 30 days (sent-feed audit of
2026-12-06). `refused_alone` asks the batch again in halves, down to single ids, and names the ids
refused alone. It proves nothing when no part was answered: then the refusal was about the
request, not the ids (an API change, a bad option), and the caller must not drop them.

Cost: about 2 log2(n) + 1 calls for one bad id among n (19 for UniSender's 500), paid only when a
batch is refused. Ids the worker itself would not send (`unsendable`: the provider module refuses
to build the request for the id alone, before any call) need no calls: they are the fault for
certain. Pure: `ask` makes the call (and commits its answer); this module only splits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from worker.config import AccountConfig
from worker.errors import BadRequest, WorkerError
from worker.providers import get_module
from worker.providers.base import PollQuery

# After a batch no part of which was answered (the request's fault, not an id's), its account's
# refused batches wait this long before they are taken apart again: each try costs ~log2(n) calls,
# and a refused batch comes again every `poll.interval_max_secs` (1 h by default).
COOLDOWN_SECS = 6 * 3600.0


async def refused_alone(asked: Sequence[str], ask: Callable[[list[str]], Awaitable[bool]]) -> tuple[list[str], bool]:
    """(the ids refused alone, whether any part was answered). `ask(part)` is True when the
    provider answered the part, False when it refused it as a bad request; any other failure
    propagates (the caller reschedules what was not answered). Inconclusive, ([], False), when no
    part was answered within `hopeless(len(asked))` calls: a refusal of every part is the
    request's, and asking each of 500 ids alone would spend 999 calls to learn it."""
    refused: list[str] = []
    answered = False
    calls = 0
    pending = _halves(list(asked))
    while pending:
        if not answered and calls >= hopeless(len(asked)):
            return [], False
        part = pending.pop()
        calls += 1
        if await ask(part):
            answered = True
        elif len(part) == 1:
            refused.append(part[0])
        else:
            pending.extend(_halves(part))
    return refused, answered


def hopeless(n: int) -> int:
    """Calls without any answer after which a refused batch of n is taken for a refused request:
    one bad id is found with an answered half at the second call at the latest; a few bad ids
    spread over the batch within about log2(n) halvings."""
    return max(2, (n - 1).bit_length() + 2)


def _halves(ids: list[str]) -> list[list[str]]:
    middle = len(ids) // 2
    return [part for part in (ids[middle:], ids[:middle]) if part]


def unsendable(account: AccountConfig, query: PollQuery, now: datetime) -> bool:
    """Whether the provider module refuses to build the status request `query` (one id) before any
    call: the id is not one the provider's API can take (worker.sent applies it to sent records)."""
    try:
        get_module(account.provider).build_poll_request(account.context, query, now)
    except (BadRequest, ValueError):
        return True
    except WorkerError:   # the account's own problem (no credentials): its polling says so
        return False
    return False
