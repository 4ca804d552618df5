"""Every failure the worker names, each with a fixed `error_type` from one closed vocabulary.

`error_type` is what metrics (`esw_errors_total`, `esw_dead_letters_total`,
`esw_poll_requests_total`), dead-letter `reason` headers, `/status` and log lines carry. It is
bounded: the set below is all there is, and docs/metrics.md lists it (a test keeps the two equal).
A failure raised by a library (aiohttp, aiokafka, the standard library) is named by the module
that catches it, with one of the `FOREIGN` names, never with its class name.

This module is at the bottom of the layers: it imports nothing of the worker and no I/O library.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar


class WorkerError(Exception):
    """Base of every failure class of the worker."""

    error_type: ClassVar[str] = "worker_error"


# -- provider adapters (worker/providers) --------------------------------------------------------


class ProviderError(WorkerError):
    """Base of every typed failure a provider module raises."""

    error_type = "provider_error"


class PollError(ProviderError):
    error_type = "poll_error"


class Throttled(PollError):
    """The provider's own rate-limit signal. Halve the rate; wait `retry_after` if given."""

    error_type = "throttled"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Retriable(PollError):
    """5xx, provider-internal errors, garbage from a proxy: try again later, cursor unchanged."""

    error_type = "retriable"


class FatalConfig(PollError):
    """Authentication or permission: nothing changes until an operator fixes the account."""

    error_type = "fatal_config"


class BadRequest(PollError):
    """The provider rejected our parameters: a bug in request building."""

    error_type = "bad_request"


class WebhookError(ProviderError):
    error_type = "webhook_error"


class BadSignature(WebhookError):
    """Missing, wrong or expired signature: answer 401. Its message is logged with the 401 (the
    `webhook` line's `reason`): a fixed text naming the check that failed, never a value received."""

    error_type = "bad_signature"


class MalformedPayload(WebhookError):
    """Authentic (or unsigned) but unparseable: dead-letter it and answer 200."""

    error_type = "malformed"


# -- the bounded edge and the shard's own checks (dead-letter reasons) ---------------------------


class Unusable(WorkerError):
    """Authentic input the pipeline will not carry as it is: kept whole in the dead-letter topic."""

    error_type = "unusable"


class TooManyRecords(Unusable):
    """A webhook body that splits into more records than `http.max_records_per_body`."""

    error_type = "too_many_records"


class FieldTooLong(Unusable):
    """An id, address or status longer than the documented caps (worker.intake)."""

    error_type = "field_too_long"


class RecordTooLarge(Unusable):
    """A `_raw` record over `worker.intake.MAX_RECORD_BYTES`."""

    error_type = "record_too_large"


class EventTooLarge(Unusable):
    """An event (or its `raw` copy) over the largest record a shard commits."""

    error_type = "event_too_large"


class ReplayedSignature(Unusable):
    """A signature seen before on a different body: a captured signature reused with forged content."""

    error_type = "replayed_signature"


class FutureTime(Unusable):
    """A status dated more than a few minutes after it was received: never trusted, never stored."""

    error_type = "future_time"


class PoisonRecord(Unusable):
    """A `_raw` record whose batch failed to commit again and again when processed alone."""

    error_type = "poison_record"


# -- records on Kafka (worker/raw.py, the sent-message feed) -------------------------------------


class BadRawRecord(WorkerError):
    """A `_raw` record that is not a record of ours: dead-lettered by the shard."""

    error_type = "bad_raw_record"


class UnknownRawVersion(BadRawRecord):
    """A `_raw` record of an envelope version this release does not know (a newer writer)."""

    error_type = "unknown_raw_version"


class UnknownAccount(WorkerError):
    """A `_raw` record for an account this replica's configuration does not have."""

    error_type = "unknown_account"


class BadSentRecord(WorkerError):
    """A sent-message record that does not follow schemas/sent-message.v1.json."""

    error_type = "bad_sent_record"


# -- the shard and Kafka -------------------------------------------------------------------------


class ShardClosed(WorkerError):
    """The shard was revoked or fenced; whoever waited on it should stop."""

    error_type = "shard_closed"


class Fenced(ShardClosed):
    """A newer owner of the shard started its producer: this one may not commit any more."""

    error_type = "fenced"


class ProducerBroken(WorkerError):
    """The `_raw` producer cannot write a partition again (its idempotence state no longer matches
    the broker's): worker.intake replaces it. Writes that failed meanwhile were refused to the
    caller, so nothing is lost."""

    error_type = "producer_broken"


class CommitFailed(WorkerError):
    """The batch's transaction did not commit; nothing of it is visible, nothing advanced."""

    error_type = "commit_failed"


class CommitOutcomeUnknown(WorkerError):
    """The commit request of a transaction failed (timed out, connection lost): it may have been
    applied. The shard finds out which (worker.shards) before it goes on."""

    error_type = "commit_outcome_unknown"


class TopicLayoutError(WorkerError):
    """An existing internal topic does not have the layout the worker needs."""

    error_type = "topic_layout"


class SentTopicMissing(WorkerError):
    """`inputs.sent_topic` does not exist on the cluster (yet): the sent feed waits for it."""

    error_type = "sent_topic_missing"


class ConfigError(WorkerError):
    """The configuration has problems; `problems` lists every one, each with its key path."""

    error_type = "config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} configuration problem(s):\n  " + "\n  ".join(problems))
        self.problems = problems


# -- names for failures raised by libraries ------------------------------------------------------

TIMEOUT = "timeout"            # asyncio / aiohttp / aiokafka timeouts
TRANSPORT = "transport"        # an HTTP connection failed (aiohttp.ClientError)
KAFKA = "kafka"                # any other aiokafka error
UNEXPECTED = "unexpected"      # a bug: anything else (the log line has the traceback)
FOREIGN = frozenset({TIMEOUT, TRANSPORT, KAFKA, UNEXPECTED})


def _subclasses(cls: type[WorkerError]) -> list[type[WorkerError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


# The closed vocabulary: every class's error_type and the foreign names.
ERROR_TYPES: frozenset[str] = frozenset({c.error_type for c in _subclasses(WorkerError)}) | FOREIGN


def error_type_of(exc: BaseException) -> str:
    """The bounded name of any failure: its own for ours, a FOREIGN name for everything else
    (callers that know a library's exceptions map them before asking: see worker.shards)."""
    if isinstance(exc, WorkerError):
        return exc.error_type
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TIMEOUT
    return UNEXPECTED
