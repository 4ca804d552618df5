"""The SendCloud engine's webhooks (SendCloud and Aurora SendCloud): form-posted or JSON bodies, one
event each, signed with HMAC-SHA256 over timestamp + token (PROVIDERS.md 2.5).

Like the polling engine in worker.providers.sendcloud, these are plain functions that take the
edition first; they read only its provider and its webhook `events`.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from email import policy
from email.parser import BytesParser
from typing import Any, Protocol

from worker.errors import BadSignature, MalformedPayload
from worker.model import EventType, Observation, Provider
from worker.providers import _sendcloud_family as family
from worker.providers.base import URL_CHECK, AccountContext, WebhookRequest, as_text, epoch_time, load_json

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MULTIPART = "multipart/form-data"

# Webhook fields that carry several values: a JSON-array string or repeated form keys.
LIST_FIELDS = ("recipientArray", "emailIds")


class Edition(Protocol):
    """What the webhook engine reads of an edition (worker.providers.sendcloud `Edition`)."""

    @property
    def provider(self) -> Provider: ...

    @property
    def events(self) -> Mapping[str, EventType | None]: ...   # webhook `event` → type; None: not emitted


def check_signature(
    edition: Edition, acct: AccountContext, req: WebhookRequest, now: datetime, replay_window_secs: float
) -> str:
    """HMAC-SHA256(app key, timestamp + token) as lowercase hex, against every key in rotation.
    A POST with no signature field and no event this edition knows (empty, `{}`, a test object) is
    SendCloud's test of the URL, which must answer 200 (PROVIDERS.md 2.5): URL_CHECK."""
    if not req.body.strip():
        return URL_CHECK
    try:
        fields = _body_fields(edition, req)
    except MalformedPayload as exc:
        # A form with a field that is not UTF-8 (a GBK subject, say) cannot be read, but its signed
        # fields are ASCII: verified, it is an authentic body to dead-letter (DESIGN 6), not a 401.
        fields = _lenient_form_fields(req.body)
        if not fields:
            raise BadSignature("no signature fields in an unreadable body") from exc
    timestamp, token, signature = (as_text(fields.get(k)) for k in ("timestamp", "token", "signature"))
    if timestamp is None and token is None and signature is None and as_text(fields.get("event")) not in edition.events:
        return URL_CHECK
    if timestamp is None or token is None or signature is None:
        raise BadSignature("timestamp, token or signature missing")
    if not acct.webhook_keys:
        raise BadSignature("no webhook key configured")  # fail closed
    candidates = (("hmac-sha256", family.hmac_sha256(key, timestamp + token), timestamp)
                  for key in acct.webhook_keys)
    if family.first_match(candidates, signature) is None:
        raise BadSignature("signature does not match any key")
    family.check_fresh(timestamp, now, replay_window_secs)
    return "hmac-sha256"


def webhook_records(edition: Edition, req: WebhookRequest) -> list[dict[str, Any]]:
    """The one event of a POST (PROVIDERS.md 2.5), list fields decoded."""
    fields = dict(_body_fields(edition, req))     # a copy: the list fields are decoded in it
    if not isinstance(fields.get("event"), str):
        raise MalformedPayload(f"{edition.provider.value}: webhook body without an event")
    with family.bad_input_as(MalformedPayload, f"{edition.provider.value}: webhook list field"):
        for name in LIST_FIELDS:
            if name in fields:
                fields[name] = _as_list(fields[name])
    return [fields]


# The documented field is `substat`; a production receiver binds it as `subStat` (issue 13), and the
# status API's spelling is `sub_status`: whichever is present, in this order.
WEBHOOK_SUB_STATUS = ("substat", "subStat", "sub_status")
WEBHOOK_SUB_STATUS_DESC = ("substatdesc", "subStatDesc", "sub_status_desc")
# The failure's text: `cause` (the current soft_bounce), `reason` (the 2015 `bounce` event's 弹回原因),
# then the `message` every event has, then the sub-status description.
MESSAGE_FIELDS = ("cause", "reason", "message", *WEBHOOK_SUB_STATUS_DESC)


def event_observations(edition: Edition, acct: AccountContext, record: dict[str, Any]) -> list[Observation]:
    what = f"{edition.provider.value}: webhook event"
    with family.bad_input_as(MalformedPayload, what):
        event = family.required_text(record, "event")
        if event.lower() not in edition.events:
            raise MalformedPayload(f"{what}: unknown event {event[:40]!r}")
        base = edition.events[event.lower()]
        if base is None:
            return []  # requests, opens, clicks and inbound routes carry no delivery status
        return [
            family.observation(
                acct,
                email_id=family.required_text(record, "emailId"),
                recipient=family.required_text(record, "recipient"),
                base=base,
                # substat refines failures only (401-409 on invalid, 503-509 on soft_bounce).
                sub_status=family.first_present(record, WEBHOOK_SUB_STATUS) if base in family.FAILURES else None,
                occurred_at=epoch_time(record["timestamp"]),
                provider_status=event,
                message=family.first_text(record, MESSAGE_FIELDS),
                record=record,
                message_id=family.first_text(record, ("messageId",)),
            )
        ]


def signature_reuse_key(record: dict[str, Any]) -> str | None:
    """The signature of the delivery a record came in: HMAC over timestamp + a random token, so it
    names one delivery, and one captured with another body is a replay (worker.staging). Lower-cased
    as verification reads it, so a change of letter case is the same signature."""
    signature = as_text(record.get("signature"))
    return signature.lower() if signature else None


def _body_fields(edition: Edition, req: WebhookRequest) -> dict[str, Any]:
    """The fields of a webhook body, form or JSON (the URL test is JSON, real events forms), read
    once per request: verification and splitting share them (`req.parsed`; callers do not change
    them).

    A body that starts with `{` is read as JSON whatever its label says when it is a JSON object (a
    form never starts with `{`; `curl -d` and many HTTP clients label any body as a form, and read
    as a form a signed JSON event had no signature fields: SendCloud's URL test, answered 200 and
    dropped). A body labelled multipart/form-data (`curl -F`, PHP's cURL given an array) is read as
    its text fields. Any other body is read as its content type says (by its first byte when the
    type is neither); one labelled JSON that is not is read as a form when that finds a signature."""
    fields = req.parsed.get(edition.provider.value)
    if fields is not None:
        return fields
    kind = req.content_type.partition(";")[0].strip().lower()
    if kind == MULTIPART:
        with family.bad_input_as(MalformedPayload, f"{edition.provider.value}: multipart webhook body"):
            fields = _form_fields(_multipart_pairs(req.content_type, req.body))
        req.parsed[edition.provider.value] = fields
        return fields
    braced = req.body.lstrip()[:1] == b"{"
    if kind not in (FORM, JSON):
        kind = JSON if braced else FORM
    found = None
    if braced:
        found = _read_or_none(edition, JSON, req.body)
    elif kind == JSON:
        found = _read_or_none(edition, FORM, req.body)
        if found is not None and "signature" not in found:
            found = None
    fields = found if found is not None else _read_body(edition, kind, req.body)   # its MalformedPayload
    req.parsed[edition.provider.value] = fields
    return fields


def _read_body(edition: Edition, kind: str, body: bytes) -> dict[str, Any]:
    """A body read as a form or as JSON; MalformedPayload when it is not an object of that kind."""
    with family.bad_input_as(MalformedPayload, f"{edition.provider.value}: webhook body"):
        fields = load_json(body) if kind == JSON else _form_fields(_form_pairs(body))
    if not isinstance(fields, dict):
        raise MalformedPayload(f"{edition.provider.value}: webhook body is not an object")
    return fields


def _read_or_none(edition: Edition, kind: str, body: bytes) -> dict[str, Any] | None:
    try:
        return _read_body(edition, kind, body)
    except MalformedPayload:
        return None


def _as_list(value: Any) -> list[str]:
    """A list field: a real list, one JSON-array string, or the values of repeated form keys."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) and value[0].lstrip()[:1] == "[":
        value = load_json(value[0])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("list field")
    return value


def _form_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """A form's fields from its (name, value) pairs: a list field keeps every value, any other the first."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in LIST_FIELDS:
            fields.setdefault(name, []).append(value)
        else:
            fields.setdefault(name, value)  # a repeated single-valued field: the first one counts
    return fields


def _lenient_form_fields(body: bytes) -> dict[str, str]:
    """The signature fields of a body `_body_fields` cannot read, as a form whose other fields may
    be in any encoding (bytes past ASCII read one character each: a signature field holding one
    does not match); none when the body is not a form."""
    return {name: value for name, value in urllib.parse.parse_qsl(body.decode("latin-1"))
            if name in ("timestamp", "token", "signature")}


def _form_pairs(body: bytes) -> list[tuple[str, str]]:
    """The pairs `urllib.parse.parse_qsl(keep_blank_values=True, errors="strict")` reads from a UTF-8
    form: empty pairs skipped, a pair without `=` has an empty value, `+` is a space. Unquoted in one
    call for the whole body (issue 16: half the parse): the parts are joined with NUL and split
    again; a part that holds a NUL, raw or escaped (%00), makes the count differ, and each part is
    then unquoted alone."""
    parts: list[str] = []
    for pair in body.decode("utf-8").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            parts += (name, value)
    decoded = urllib.parse.unquote("\x00".join(parts).replace("+", " "), errors="strict").split("\x00")
    if len(decoded) != len(parts):
        decoded = [urllib.parse.unquote(part.replace("+", " "), errors="strict") for part in parts]
    return list(zip(decoded[0::2], decoded[1::2], strict=True))


def _multipart_pairs(content_type: str, body: bytes, max_parts: int = 64, max_head: int = 1024) -> list[tuple[str, str]]:
    """The (name, value) pairs of a multipart/form-data body's text fields (RFC 7578), in order,
    each value UTF-8 as sent (no transfer encoding); a file part or a nameless one is skipped.
    ValueError when the body is not multipart, or has more than `max_parts` parts or a part whose
    headers exceed `max_head` bytes. The body is split on its boundary by hand and only each part's
    headers go through the email parser: that parser over a whole body took seconds of the event
    loop for a megabyte of tiny parts, before any signature was checked (review, 2026-12-06)."""
    parser = BytesParser(policy=policy.HTTP)
    boundary = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n").get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError("no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    if body.count(delimiter) > max_parts + 1:
        raise ValueError("too many parts")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise ValueError("not a multipart body")
    pairs = []
    for piece in pieces[1:-1]:
        head, blank, value = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not blank or len(head) > max_head:
            raise ValueError("a part without its headers")
        part = parser.parsebytes(head + b"\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            pairs.append((name, value.removesuffix(b"\r\n").decode("utf-8")))
    return pairs
