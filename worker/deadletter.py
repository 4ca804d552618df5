"""The one dead-letter record shape (`<prefix>._dead_letter`), whoever writes it.

Authentic but unusable input is kept as received, never dropped: the bytes are the record's value,
untouched, and what is known about them travels in headers, so a replay tool can re-post a webhook
body as is (docs/runbook.md#dead-letters):

    schema        dead-letter/v1
    provider      a provider name, or "unknown" (a sent-topic record that names none we know)
    account       the account's config name, or "unknown"
    reason        the failure's error_type (worker.errors.ERROR_TYPES)
    source        webhook | shard | sent_topic: who gave up on it
    part          body: a whole webhook body as received (re-post it with its content-type and the
                  request-* headers); record: one split webhook record (JSON); raw: a `_raw` record
                  value; sent: a sent-topic record value; row: one row of a status-API answer (JSON)
    content-type  of the value
    received_at   RFC 3339, when the worker received it
    request-<h>   the signed request headers a re-post needs (EngageLab's X-WebHook-*), never logged

The key is `provider/account`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import attrs

from worker.errors import ERROR_TYPES
from worker.model import rfc3339

SCHEMA = b"dead-letter/v1"
UNKNOWN = "unknown"

Source = Literal["webhook", "shard", "sent_topic"]
Part = Literal["body", "record", "raw", "sent", "row"]


@attrs.frozen
class DeadLetter:
    provider: str
    account: str
    reason: str = attrs.field()
    source: Source
    part: Part
    body: bytes
    content_type: str
    received_at: datetime
    request_headers: tuple[tuple[str, bytes], ...] = ()

    @reason.validator
    def _bounded(self, attribute: attrs.Attribute, value: str) -> None:
        if value not in ERROR_TYPES:
            raise ValueError(f"reason {value!r} is not an error_type")

    @property
    def key(self) -> bytes:
        return f"{self.provider}/{self.account}".encode()

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("schema", SCHEMA),
            ("provider", self.provider.encode()),
            ("account", self.account.encode()),
            ("reason", self.reason.encode()),
            ("source", self.source.encode()),
            ("part", self.part.encode()),
            # as received: aiohttp hands header bytes that are not UTF-8 over as surrogates
            ("content-type", self.content_type.encode("utf-8", "surrogateescape")),
            ("received_at", rfc3339(self.received_at).encode()),
            *((f"request-{name}", value) for name, value in self.request_headers),
        ]


_HEX_HMAC = re.compile(r"[0-9a-fA-F]{64}")   # a bare HMAC-SHA256, not a credential


def signed_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, bytes], ...]:
    """The request headers a provider signs with (EngageLab's X-WebHook-*, or the bare hex HMAC
    its older page put in `Authorization`), kept with a dead letter so the body can be re-posted
    and verified again. Never logged. An `Authorization` header holding anything else (a scheme
    and a credential, as a proxy may add) is not kept."""
    return tuple((name, value.encode("utf-8", "surrogateescape")) for name, value in headers
                 if name.startswith("x-webhook-") or (name == "authorization" and _HEX_HMAC.fullmatch(value)))

