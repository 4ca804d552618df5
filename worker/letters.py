"""Dead letters read back for a replay (worker.replay): which are selected, and what each becomes.

Pure: a dead letter's headers and value in, an `Outcome` out (the `_raw` records it becomes, or why
it is still unusable), with the webhook receiver's own checks, so a replay does not dead-letter the
same input again.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson

from worker import raw
from worker import sent as sent_records
from worker.config import AccountConfig, Config
from worker.errors import MalformedPayload, UnknownAccount, WorkerError
from worker.intake import Admitted, admit, check_fields, routed
from worker.model import Observation, Provider, rfc3339
from worker.providers import get_module
from worker.providers.base import WebhookRequest

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
PARTS = ("raw", "record", "body", "sent")


@attrs.frozen
class Selection:
    """Which dead letters to replay: any of `accounts` and of `reasons` (empty: all), received in
    [since, until)."""

    accounts: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def default_name(self) -> str:
        """A short hash of the selection, stable across runs: the same selection resumes."""
        canonical = orjson.dumps({"accounts": sorted(self.accounts), "reasons": sorted(self.reasons),
                                  "from": rfc3339(self.since) if self.since else None,
                                  "to": rfc3339(self.until) if self.until else None})
        return hashlib.sha256(canonical).hexdigest()[:12]

    def matches(self, letter: Letter) -> bool:
        return ((not self.accounts or letter.account in self.accounts)
                and (not self.reasons or letter.reason in self.reasons)
                and (self.since is None or letter.received_at >= self.since)
                and (self.until is None or letter.received_at < self.until))


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC (a date alone: its 00:00 UTC)."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@attrs.frozen
class Letter:
    """A dead letter as read back: its value and the headers worker.deadletter wrote."""

    provider: str
    account: str
    reason: str
    part: str
    content_type: str
    received_at: datetime
    request_headers: dict[str, str]
    value: bytes

    @classmethod
    def from_record(cls, record: Any) -> Letter:
        headers = {name: value or b"" for name, value in record.headers or ()}

        def text(name: str) -> str:
            return headers.get(name, b"").decode("utf-8", "replace")

        try:
            received_at = parse_time(text("received_at"))
        except ValueError:   # not one of ours: the broker's timestamp is the best we know
            received_at = datetime.fromtimestamp(record.timestamp / 1000, tz=UTC)
        return cls(provider=text("provider"), account=text("account"), reason=text("reason"), part=text("part"),
                   content_type=text("content-type"), received_at=received_at,
                   request_headers={name.removeprefix("request-"): value.decode("utf-8", "surrogateescape")
                                    for name, value in headers.items() if name.startswith("request-")},
                   value=record.value or b"")


@attrs.frozen
class Outcome:
    """What one dead letter becomes: records for `_raw`, and the error types of what is still unusable."""

    records: tuple[Admitted, ...] = ()
    unusable: tuple[str, ...] = ()
    not_needed: bool = False


def resolve(config: Config, letter: Letter) -> Outcome:
    """The normal path, without the network: decode, split and check what a dead letter holds."""
    try:
        if letter.part == "raw":
            record = raw.decode(letter.value)
            account = _account(config, record.provider, record.account)
            return Outcome((routed(admit(record), account, _check(account, record), config.kafka.shards),))
        if letter.part == "sent":
            sent = raw.SentMessage.from_feed(letter.value, letter.received_at)
            account = _account(config, sent.provider, sent.account)
            if not sent_records.needed(account):
                return Outcome(not_needed=True)   # as the sent-message feed: only id-polled and gap-driven accounts
            problem = sent_records.problem(account, sent, datetime.now(UTC))
            if problem is not None:
                return Outcome(unusable=(problem,))
            return Outcome((admit(sent),))
        if letter.part not in PARTS:
            raise MalformedPayload(f"not a dead letter of ours (part {letter.part!r})")
        account = _account(config, letter.provider, letter.account)
        if letter.part == "record":
            record = orjson.loads(letter.value)
            if not isinstance(record, dict):
                raise MalformedPayload("a record dead letter that is not a JSON object")
            return _webhook(account, [record], letter.received_at, config.kafka.shards)
        # a whole body; it was verified when received (its headers are gone, the signed ones kept)
        req = WebhookRequest(body=letter.value, content_type=letter.content_type, headers=letter.request_headers)
        return _webhook(account, get_module(account.provider).split_webhook(req), letter.received_at,
                        config.kafka.shards)
    except WorkerError as exc:
        return Outcome(unusable=(exc.error_type,))
    except (KeyError, TypeError, ValueError):   # orjson's JSONDecodeError, or a provider module's bug
        return Outcome(unusable=(MalformedPayload.error_type,))


def _account(config: Config, provider: Provider | str, name: str) -> AccountConfig:
    try:
        account = config.account(provider, name)
    except ValueError:   # "unknown", or a provider this release does not have
        account = None
    if account is None:
        raise UnknownAccount(f"no account {provider}/{name} in the configuration")
    return account


def _check(account: AccountConfig, record: raw.RawRecord) -> Sequence[Observation]:
    """Raise what the shard would dead-letter the record for; a webhook record's observations."""
    module = get_module(account.provider)
    if isinstance(record, raw.WebhookRecord):
        observations = module.webhook_observations(account.context, dict(record.record))
        check_fields(observations)
        return observations
    if isinstance(record, raw.PollPageRecord):
        if module.DEFAULTS.polling == "ids":
            # checkEmail answers carry no address and no time: the id tracker read the page against
            # what it had asked and staged when it fetched it, which a shard reading `_raw` cannot
            raise MalformedPayload("an id-polled status page cannot be replayed")
        module.parse_poll_response(account.context, record.query, record.status, record.headers, record.body,
                                   record.received_at)
    return ()


def _webhook(account: AccountConfig, split: Sequence[dict[str, Any]], received_at: datetime, shards: int) -> Outcome:
    """Split webhook records as the receiver keeps them: those the provider module reads now."""
    module = get_module(account.provider)
    records: list[Admitted] = []
    unusable: list[str] = []
    for record in split:
        try:
            observations = module.webhook_observations(account.context, record)
            check_fields(observations)
            records.append(routed(admit(raw.WebhookRecord(account.provider, account.name, received_at, record)),
                                  account, observations, shards))
        except WorkerError as exc:
            unusable.append(exc.error_type)
        except (KeyError, TypeError, ValueError):
            unusable.append(MalformedPayload.error_type)
    return Outcome(tuple(records), tuple(unusable))


@attrs.define
class Summary:
    selected: Counter[tuple[str, str]] = attrs.field(factory=Counter)   # (reason, part) of the dead letters
    replayed: Counter[str] = attrs.field(factory=Counter)               # records written to _raw, by part
    unusable: Counter[str] = attrs.field(factory=Counter)               # still unusable, by error type now
    not_needed: int = 0
    passed_over: int = 0

    def add(self, letter: Letter, outcome: Outcome | None) -> None:
        if outcome is None:
            self.passed_over += 1
            return
        self.selected[(letter.reason, letter.part)] += 1
        if outcome.records:
            self.replayed[letter.part] += len(outcome.records)
        self.unusable.update(outcome.unusable)
        self.not_needed += outcome.not_needed

    def merge(self, other: Summary) -> None:
        self.selected.update(other.selected)
        self.replayed.update(other.replayed)
        self.unusable.update(other.unusable)
        self.not_needed += other.not_needed
        self.passed_over += other.passed_over

    def lines(self, dry_run: bool) -> list[str]:
        def counts(counter: Counter[Any]) -> str:
            items = sorted(("/".join(k) if isinstance(k, tuple) else k, n) for k, n in counter.items() if n)
            return f"  ({', '.join(f'{k} {n}' for k, n in items)})" if items else ""

        return [f"selected: {sum(self.selected.values())}{counts(self.selected)}",
                f"{'would replay' if dry_run else 'replayed'}: {sum(self.replayed.values())} record(s)"
                f"{counts(self.replayed)}",
                f"still unusable: {sum(self.unusable.values())}{counts(self.unusable)}",
                f"not needed: {self.not_needed}",
                f"passed over: {self.passed_over}"]
