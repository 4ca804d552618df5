"""Reading a status-API answer: the envelope, in one order for every provider (`read_answer`), then
the page row by row (`read_rows`): a row that cannot be read is reported, not fatal to the page.

Only what makes the whole answer unusable is a page error (not JSON, the provider's error envelope,
no list of rows, an unreadable total). One broken row among good ones must not be: the page would be
Retriable for ever, the window would never advance and its quota would burn. So every row becomes
its observations on its own, and one that cannot is a `RejectedRow` (the runner dead-letters the
page for it) while the page's other rows still count and the cursor moves past it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from worker.errors import BadRequest, FatalConfig, MalformedPayload, PollError, Retriable, Throttled
from worker.providers.base import RejectedRow, load_json, parse_retry_after

# What malformed input raises inside the standard library and orjson (JSONDecodeError and
# UnicodeDecodeError are ValueErrors; OverflowError and OSError come from out-of-range times).
BAD_INPUT = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, OSError)

MALFORMED = MalformedPayload.error_type

T = TypeVar("T")


def read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    error_of: Callable[[Any], PollError | None],
) -> Any:
    """A status API's answer as decoded JSON, or the typed error it stands for, in one order for
    every provider (the provider then checks its own success shape):

    1. HTTP 429 is Throttled, waiting what Retry-After says;
    2. the provider's own error code in a JSON body: `error_of(doc)` (doc is None when the body is
       not JSON) returns the error or None; a Throttled waits what Retry-After says, else what the
       provider set as its default;
    3. the HTTP status: 5xx Retriable, 401/403 FatalConfig, other 4xx BadRequest, other non-2xx
       Retriable;
    4. a body that is not JSON (a proxy's or load balancer's page) is Retriable.
    """
    if status == 429:
        raise Throttled("HTTP 429", parse_retry_after(headers.get("retry-after"), now))
    doc = load_json(body)
    error = error_of(doc)
    if isinstance(error, Throttled):
        wait = parse_retry_after(headers.get("retry-after"), now)
        # A missing or zero Retry-After keeps the provider's own default wait, if it has one.
        raise Throttled(str(error), wait if wait or error.retry_after is None else error.retry_after)
    if error is not None:
        raise error
    if not 200 <= status < 300:
        if status >= 500:
            raise Retriable(f"HTTP {status}")
        if status in (401, 403):
            raise FatalConfig(f"HTTP {status}")
        raise (BadRequest if 400 <= status < 500 else Retriable)(f"HTTP {status}")
    if doc is None:
        raise Retriable("not the documented JSON")
    return doc


def read_rows(
    rows: Sequence[Any], read: Callable[[Any], Iterable[T]]
) -> tuple[tuple[T, ...], tuple[RejectedRow, ...]]:
    """Every row's observations (or what a provider reads a row into) in order, and the rows `read`
    could not turn into any (it raises one of BAD_INPUT for those), by their index in the page's list."""
    observations: list[T] = []
    rejected: list[RejectedRow] = []
    for index, row in enumerate(rows):
        try:
            found = list(read(row))  # whole, so a row failing half-way adds nothing
        except BAD_INPUT:
            rejected.append(RejectedRow(index, MALFORMED))
            continue
        observations.extend(found)
    return tuple(observations), tuple(rejected)


def full_page_next(offset: int, rows: int, limit: int) -> int | None:
    """The next offset when the answer gives no total: a full page may have a successor, a short
    (or empty) one is the last."""
    return offset + rows if rows and rows >= limit else None
