"""The seeded synthetic mail stream of one account: messages and their status timelines. Pure.

Times are integer milliseconds since the epoch, always whole seconds (every status API reports
seconds). History covers `history_days` whole days before the anchor's day plus the part of the
anchor's own day before the anchor, in the provider's time zone; the live stream starts at the
anchor. Delays between statuses are realistic at time_scale 1 and divided by time_scale.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import string
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from worker.model import EventType, Provider
from worker.simulator import codes
from worker.simulator.simconfig import SimAccount

DAY_MS = 86_400_000
_TC_MID_ALPHABET = string.ascii_letters + string.digits
_DOMAINS = ("example.test", "mail.example.test", "corp.example.test", "example-mail.test")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Outcome probabilities per message (cumulative draw below).
P_INVALID, P_SOFT_THEN_DELIVERED, P_SOFT_THEN_INVALID, P_SOFT_FINAL, P_ERROR = 0.08, 0.04, 0.015, 0.02, 0.005
P_COMPLAINT, P_UNSUB = 0.01, 0.02
EVENT_BUCKET_MS = 60_000
# Providers that report a complaint or an unsubscribe after delivery (SendCloud family: webhook only).
ENGAGEMENT = {Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD, Provider.UNISENDER, Provider.TENCENT_SES}
WEBHOOK_ONLY_ENGAGEMENT = {Provider.SENDCLOUD, Provider.AURORA_SENDCLOUD}


class Entry(NamedTuple):
    """One status in a message's timeline."""

    at_ms: int
    kind: str  # pending | delivered | soft_bounce | invalid | complaint | unsubscribed | error
    type: EventType | None  # the ground truth's type, chosen by construction (truth.type)
    provider_status: str  # SendCloud: filter kind name; EngageLab: "1"...; UniSender: status; Tencent: code
    sub_status: str | None
    text: str  # the SMTP / log line the provider shows
    api_visible: bool = True
    tc: tuple[int, int] | None = None  # Tencent (SendStatus, DeliverStatus)
    truth: codes.Truth | None = None  # the event to emit (type == truth.type); None: nothing to emit
    hook: codes.Truth | None = None  # the webhook's truth where it differs from the status API's


class Message(NamedTuple):
    seq: int
    email_id: str
    message_id: str | None
    recipient: str
    rcpt_index: int  # position in its send request
    sent_ms: int
    local_date: date
    entries: tuple[Entry, ...]
    uni_id: int | None = None

    def visible(self, at_ms: int) -> Entry | None:
        """The latest status the status API shows at `at_ms` (None before the message exists)."""
        found = None
        for entry in self.entries:
            if entry.at_ms > at_ms:
                break
            if entry.api_visible:
                found = entry
        return found

    def shown(self, at_ms: int) -> Entry:
        """`visible` of a message the API lists (it exists by then, so it shows a status)."""
        entry = self.visible(at_ms)
        if entry is None:
            raise ValueError(f"message {self.email_id} shows nothing at {at_ms}")
        return entry

    def visible_entries(self, at_ms: int) -> list[Entry]:
        return [e for e in self.entries if e.at_ms <= at_ms and e.api_visible]

    def next_change_ms(self, after_ms: int) -> int | None:
        for entry in self.entries:
            if entry.at_ms > after_ms and entry.api_visible:
                return entry.at_ms
        return None


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n): random.randrange's job, several times faster."""
    return int(rng.random() * n)


def _pick(rng: random.Random, table: Sequence[tuple]) -> tuple:
    total = sum(row[0] for row in table)
    x = rng.random() * total
    for row in table:
        x -= row[0]
        if x < 0:
            return row
    return table[-1]


def _lognormal(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, median * math.exp(rng.gauss(0.0, sigma))))


class AccountStream:
    """All messages of one account, generated lazily: history at construction, live on demand."""

    def __init__(self, account: SimAccount, seed: int, anchor_ms: int, time_scale: float) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.account = account
        self.provider = account.provider
        self.tz = codes.PROVIDER_TZ[account.provider]
        self._offset_ms = int(self.tz.utcoffset(None).total_seconds()) * 1000  # fixed offsets only
        self.seed = seed
        self.anchor_ms = anchor_ms - anchor_ms % 1000
        self.scale = time_scale
        ident = _seed(seed, account.name, "ident")
        self.uid = 100_000 + ident % 900_000  # SendCloud-family user id inside message ids
        self.appid = 1_000_000_000 + ident % 8_999_999_999  # Tencent app id
        self.uni_base = 8_200_000_000 + ident % 50_000_000
        self.messages: list[Message] = []
        self.by_id: dict[str, Message] = {}
        self.by_uni_id: dict[int, Message] = {}
        self.days: dict[date, list[Message]] = {}
        self.by_message_id: dict[str, list[Message]] = {}
        # (at_ms, seq, entry index) of every timeline entry, in buckets of EVENT_BUCKET_MS by at_ms, each
        # sorted when next read: a query for the last minute sorts a minute's entries, not the month's
        self._events: dict[int, list[tuple[int, int, int]]] = {}
        self._unsorted: set[int] = set()
        self.live_count = 0
        self._history()

    # -- generation ----------------------------------------------------------------------------

    def _local_midnight_ms(self, d: date) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp()) * 1000

    def local_date(self, ms: int) -> date:
        return date.fromordinal(_EPOCH_ORDINAL + (ms + self._offset_ms) // DAY_MS)

    def _history(self) -> None:
        today = self.local_date(self.anchor_ms)
        for back in range(self.account.history_days, -1, -1):
            day = today - timedelta(days=back)
            start = self._local_midnight_ms(day)
            end = min(start + DAY_MS, self.anchor_ms)
            count = self.account.history_per_day
            if back == 0:
                count = round(count * (end - start) / DAY_MS)
            if count <= 0 or end <= start:
                continue
            rng = random.Random(_seed(self.seed, self.account.name, "day", day.isoformat()))
            times = sorted(start + _below(rng, (end - start) // 1000) * 1000 for _ in range(count))
            i = 0
            while i < len(times):
                size = min(self._group_size(rng), len(times) - i)
                self._add_request(rng, times[i], size)
                i += size

    def _group_size(self, rng: random.Random) -> int:
        if self.provider is Provider.UNISENDER:
            return 1  # sendEmail takes one recipient
        x = rng.random()
        return 1 if x < 0.85 else 2 if x < 0.97 else 3

    def advance(self, now_ms: int) -> None:
        """Generate the live messages sent up to `now_ms` (each request from its own generator)."""
        rate, limit = self.account.live_per_sec, self.account.live_max
        if rate <= 0:
            return
        while limit is None or self.live_count < limit:
            rng = random.Random(_seed(self.seed, self.account.name, "live", self.live_count))
            size = self._group_size(rng)
            sent_ms = self.anchor_ms + int((self.live_count + rng.random()) / rate) * 1000
            if sent_ms > now_ms:
                return
            if limit is not None:
                size = min(size, limit - self.live_count)
            self._add_request(rng, sent_ms, size)
            self.live_count += size

    def _add_request(self, rng: random.Random, sent_ms: int, size: int) -> None:
        message_id = self._message_id(rng, sent_ms)
        recipients: list[str] = []
        while len(recipients) < size:
            rcpt = self._recipient(rng)
            if rcpt.lower() not in {r.lower() for r in recipients}:
                recipients.append(rcpt)
        local = self.local_date(sent_ms)
        for index, rcpt in enumerate(recipients):
            seq = len(self.messages)
            uni_id = None
            if self.provider is Provider.UNISENDER:
                uni_id = self.uni_base + seq * 3 + _below(rng, 3)
                email_id, mid = str(uni_id), None
            elif self.provider is Provider.TENCENT_SES:
                email_id, mid = f"{message_id}:{rcpt.lower()}", message_id
            else:
                email_id, mid = f"{message_id}{index}${rcpt}", message_id
            msg = Message(seq, email_id, mid, rcpt, index, sent_ms, local, self._timeline(rng, sent_ms), uni_id)
            self.messages.append(msg)
            self.by_id[email_id] = msg
            if uni_id is not None:
                self.by_uni_id[uni_id] = msg
            if mid is not None and self.provider is Provider.TENCENT_SES:  # GetSendEmailStatus filters by MessageId
                self.by_message_id.setdefault(mid, []).append(msg)
            self.days.setdefault(local, []).append(msg)
            for i, entry in enumerate(msg.entries):
                bucket = entry.at_ms // EVENT_BUCKET_MS
                self._events.setdefault(bucket, []).append((entry.at_ms, seq, i))
                self._unsorted.add(bucket)

    def _message_id(self, rng: random.Random, sent_ms: int) -> str:
        if self.provider is Provider.TENCENT_SES:
            stamp = datetime.fromtimestamp(sent_ms / 1000, tz=self.tz).strftime("%Y%m%d%H%M%S")
            tail = "".join(_TC_MID_ALPHABET[_below(rng, 62)] for _ in range(12))
            return f"qcloudses-30-{self.appid}-date-{stamp}-{tail}"
        ms = sent_ms + _below(rng, 1000)
        ip = f"10_{1 + _below(rng, 254)}_{1 + _below(rng, 254)}_{1 + _below(rng, 254)}"
        return f"{ms}_{self.uid}_{10_000 + _below(rng, 89_999)}_{1000 + _below(rng, 8999)}.sc-{ip}-inbound"

    @staticmethod
    def _recipient(rng: random.Random) -> str:
        local = f"u{1 + _below(rng, 99_999)}"
        domain = _DOMAINS[_below(rng, len(_DOMAINS))]
        if rng.random() < 0.12:  # mixed case, to exercise lower-casing
            local = local.upper()
            domain = domain.capitalize()
        return f"{local}@{domain}"

    # -- the timeline --------------------------------------------------------------------------

    def _timeline(self, rng: random.Random, sent_ms: int) -> tuple[Entry, ...]:
        p = self.provider
        out: list[Entry] = []
        t = float(sent_ms)

        def after(median: float, sigma: float, lo: float, hi: float) -> None:
            nonlocal t
            t += _lognormal(rng, median, sigma, lo, hi) * 1000 / self.scale

        def add(kind: str, row: tuple | None, truth: codes.Truth | None, visible: bool = True) -> None:
            at = max(int(t) - int(t) % 1000, out[-1].at_ms if out else sent_ms)
            out.append(self._entry(at, kind, row, truth, visible))

        x = rng.random()
        error = p in (Provider.UNISENDER, Provider.TENCENT_SES) and x >= 1 - P_ERROR
        add("pending", None, None)
        if p is Provider.UNISENDER:
            after(2, 0.5, 1, 10)
            add("pending", (0, "ok_sent", None, ""), None)
        if error:
            after(10, 1, 1, 600)
            row = _pick(rng, codes.UNI_ERROR if p is Provider.UNISENDER else codes.TC_ERROR)
            add("error", row, None)
            return tuple(out)
        if x < P_INVALID:
            row = _pick(rng, self._table("invalid"))
            immediate = row[1] in ("401", "402", "404") or (row[1] != (0, 3) and isinstance(row[1], tuple))
            if immediate:
                t += 1000 / self.scale
            else:
                after(10, 1, 1, 600)
            add("invalid", row, row[2])
            return tuple(out)
        x -= P_INVALID
        if x < P_SOFT_THEN_DELIVERED + P_SOFT_THEN_INVALID:
            after(20, 1, 2, 900)
            row = _pick(rng, self._table("soft_retrying"))
            add("soft_bounce", row, row[2])
            after(1800, 0.8, 300, 6 * 3600)
            if x < P_SOFT_THEN_DELIVERED:
                self._delivered(rng, add, after)
            else:
                row = _pick(rng, self._table("invalid_after_soft"))
                add("invalid", row, row[2])
            return tuple(out)
        x -= P_SOFT_THEN_DELIVERED + P_SOFT_THEN_INVALID
        if x < P_SOFT_FINAL:
            after(20, 1, 2, 900)
            row = _pick(rng, self._table("soft_final"))
            add("soft_bounce", row, row[2])
            return tuple(out)
        after(6, 1.0, 1, 1800)
        self._delivered(rng, add, after)
        return tuple(out)

    def _delivered(self, rng: random.Random, add, after) -> None:
        p = self.provider
        row = _pick(rng, codes.UNI_DELIVERED) if p is Provider.UNISENDER else None
        add("delivered", row, row[2] if row else codes.T_DELIVERED)
        if p not in ENGAGEMENT:
            return
        y = rng.random()
        visible = p not in WEBHOOK_ONLY_ENGAGEMENT
        if y < P_COMPLAINT:
            after(3600, 1.2, 60, 2 * 86400)
            add("complaint", None, codes.T_COMPLAINT, visible)
        elif y < P_COMPLAINT + P_UNSUB:
            after(3600, 1.2, 60, 2 * 86400)
            add("unsubscribed", None, codes.T_UNSUBSCRIBED, visible)

    def _table(self, what: str) -> Sequence[tuple]:
        p = self.provider
        if p is Provider.UNISENDER:
            return {"invalid": codes.UNI_INVALID, "invalid_after_soft": codes.UNI_INVALID_AFTER_SOFT,
                    "soft_retrying": codes.UNI_SOFT_RETRYING, "soft_final": codes.UNI_SOFT_FINAL}[what]
        if p is Provider.TENCENT_SES:
            return {"invalid": codes.TC_INVALID, "invalid_after_soft": codes.TC_INVALID_AFTER_SOFT,
                    "soft_retrying": codes.TC_SOFT_RETRYING, "soft_final": codes.TC_SOFT_FINAL}[what]
        return {"invalid": codes.SC_INVALID, "invalid_after_soft": codes.SC_INVALID_AFTER_SOFT,
                "soft_retrying": codes.SC_SOFT, "soft_final": codes.SC_SOFT}[what]

    def _entry(self, at: int, kind: str, row: tuple | None, truth: codes.Truth | None, visible: bool) -> Entry:
        p = self.provider
        type_ = truth.type if truth is not None else None
        if p is Provider.UNISENDER:
            status = row[1] if row else {"pending": "not_sent", "delivered": "ok_delivered",
                                         "complaint": "ok_fbl", "unsubscribed": "ok_unsubscribed"}[kind]
            return Entry(at, kind, type_, status, None, "", visible, truth=truth)
        if p is Provider.TENCENT_SES:
            hook = None
            if kind == "pending":
                tc, text = (0, 0), ""
            elif kind in ("delivered", "complaint", "unsubscribed"):
                tc, text = (0, 1), codes.TC_DELIVERED_TEXT
            else:
                assert row is not None, "a failure has its code row"
                tc, text = row[1], row[3]
                hook = row[4] if len(row) > 4 and row[4] != truth else None
            if kind == "complaint":
                # Which spelling the status row carries: a pure function of the entry, so no draw
                # from the timeline's generator (the rest of the stream is unchanged by it).
                status = codes.TC_COMPLAINT_FIELDS[_seed("complaint-field", self.seed, at) % 2]
            else:
                status = {"unsubscribed": "UserUnsubscribed"}.get(kind, str(tc[1] if tc[0] == 0 else tc[0]))
            return Entry(at, kind, type_, status, None, text, visible, tc, truth, hook)
        if kind in ("invalid", "soft_bounce"):
            assert row is not None, "a failure has its code row"
            sub, text = row[1], row[3]
        else:
            sub, text = None, (codes.SC_DELIVERED_TEXT if kind == "delivered" else "")
        if p is Provider.ENGAGELAB:
            return Entry(at, kind, type_, str(codes.EL_STATUS[kind]), sub, text, visible, truth=truth)
        status = codes.SC_STATUS_ZH.get(kind) or {"complaint": "report_spam", "unsubscribed": "unsubscribe"}[kind]
        return Entry(at, kind, type_, status, sub, text, visible, truth=truth)

    # -- queries -------------------------------------------------------------------------------

    def events(self, since_ms: int | None, until_ms: int) -> Iterator[tuple[Message, Entry]]:
        """Timeline entries with since_ms < at_ms <= until_ms, in time order."""
        first = -1 << 62 if since_ms is None else since_ms // EVENT_BUCKET_MS
        last = until_ms // EVENT_BUCKET_MS
        buckets: Iterable[int] = range(first, last + 1)
        if last - first > len(self._events):   # a long span: the buckets there are, not every one in it
            buckets = sorted(b for b in self._events if first <= b <= last)
        for bucket in buckets:
            entries = self._events.get(bucket)
            if not entries:
                continue
            if bucket in self._unsorted:
                entries.sort()
                self._unsorted.discard(bucket)
            lo = 0 if since_ms is None else bisect.bisect_right(entries, (since_ms, 1 << 62, 0))
            hi = bisect.bisect_right(entries, (until_ms, 1 << 62, 0))
            for _at, seq, i in entries[lo:hi]:
                msg = self.messages[seq]
                yield msg, msg.entries[i]

    def day(self, d: date, now_ms: int) -> list[Message]:
        """Messages sent on local date `d` up to `now_ms`, in send order."""
        msgs = self.days.get(d, [])
        hi = bisect.bisect_right(msgs, now_ms, key=lambda m: m.sent_ms)
        return msgs[:hi]


def utc_seconds(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC)
