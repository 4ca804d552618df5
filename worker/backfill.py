"""`email-status-worker backfill --account A --from D --to D`: re-poll a range of send dates.

The pages go through the same dedup as everything else: each fetched page is written, raw and
unparsed, to `_raw` (kind `poll_page`, key `provider/account`), and the shard's owner parses and
de-duplicates it in its next transaction. So a backfill never emits what was already emitted,
can run while the worker runs, and needs no shard of its own. Its calls share the account's quota
with the running worker, so it uses a quarter of the account's share by default (`--share`); the
provider's throttle answers slow both down.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import aiohttp
from aiokafka import AIOKafkaProducer

from worker import logs
from worker.config import AccountConfig, Config
from worker.emit import Topics, ensure_topics, producer_settings
from worker.errors import PollError, Throttled
from worker.intake import RawWriter
from worker.poll.fetch import Fetcher, fetch_error_type
from worker.poll.limiter import AdaptiveLimiter
from worker.progress import Progress
from worker.providers import get_module
from worker.providers.base import PollQuery
from worker.raw import PollPageRecord

EXIT_USAGE = 2
EXIT_FAILED = 1


class WindowProgress:
    """The backfill's counts, drawn as one progress bar: windows done, pages and rows fetched."""

    def __init__(self, windows: int, enabled: bool) -> None:
        self.windows = windows
        self.bar = Progress(enabled)
        self.done_windows = 0
        self.pages = 0
        self.rows = 0
        self._window_part = 0.0

    def page(self, rows: int, offset: int, total: int | None) -> None:
        self.pages += 1
        self.rows += rows
        self._window_part = min(1.0, (offset + rows) / total) if total else 0.0
        self.draw()

    def window_done(self) -> None:
        self.done_windows += 1
        self._window_part = 0.0
        self.draw()

    def draw(self, final: bool = False) -> None:
        self.bar.draw((self.done_windows + self._window_part) / max(1, self.windows),
                      f"{self.done_windows}/{self.windows} windows  {self.pages} pages  {self.rows} rows", final)


def run_backfill(config: Config, account_name: str, date_from: date, date_to: date, *, progress: bool = True,
                 share: float = 0.25, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    logs.setup("WARNING")
    accounts = [a for a in config.accounts if a.name == account_name]
    if not accounts:
        print(f"backfill: no account named {account_name!r} in the configuration", file=sys.stderr)
        return EXIT_USAGE
    if len(accounts) > 1:
        print(f"backfill: {len(accounts)} accounts are named {account_name!r}", file=sys.stderr)
        return EXIT_USAGE
    account = accounts[0]
    module = get_module(account.provider)
    if module.DEFAULTS.polling != "date":
        print(f"backfill: {account.provider.value} has no date query; its ids come from the sent-message topic",
              file=sys.stderr)
        return EXIT_USAGE
    missing = [need for need in module.CREDENTIALS.poll if not getattr(account.context, need.name)]
    if missing:   # polling off, so the config needed none (docs/configuration.md): every call would be refused
        given = ", ".join(f"credentials.{n.name}" if n.plain else f"credentials.{n.name}_env or {n.name}_file"
                          for n in missing)
        print(f"backfill: {account.name} has no credentials to poll with (its polling is off, so the config "
              f"may leave them out); give {given}", file=sys.stderr)
        return EXIT_USAGE
    if date_to < date_from:
        print("backfill: --to is before --from", file=sys.stderr)
        return EXIT_USAGE
    # the provider's dates, in its time zone: it answers for today and retention_days - 1 dates before
    # (Tencent refuses an older one with FailedOperation.NotSupportDate), none after today
    today = clock().astimezone(module.DEFAULTS.tz).date()
    oldest = today - timedelta(days=module.DEFAULTS.retention_days - 1)
    if date_from < oldest:
        print(f"backfill: {account.provider.value} keeps statuses for {module.DEFAULTS.retention_days} days "
              f"(today, {today} in its time zone, and the {module.DEFAULTS.retention_days - 1} before); "
              f"dates before {oldest} cannot be polled", file=sys.stderr)
        return EXIT_USAGE
    if date_to > today:
        print(f"backfill: --to {date_to} is after today in {account.provider.value}'s time zone ({today})",
              file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_backfill(config, account, date_from, date_to, progress, share))


async def _backfill(config: Config, account: AccountConfig, date_from: date, date_to: date, show: bool,
                    share: float) -> int:
    module = get_module(account.provider)
    await ensure_topics(config.kafka, with_outputs=False)
    topics = Topics.from_config(config.kafka)
    days = [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]
    statuses = module.DEFAULTS.status_filters or (None,)
    windows = [(d, s) for d in days for s in statuses]
    bar = WindowProgress(len(windows), show)
    limiter = AdaptiveLimiter(account.poll.calls_per_second * share, account.poll.quota_window_secs)
    producer = AIOKafkaProducer(**producer_settings(config.kafka))
    await producer.start()
    writer = RawWriter(config.kafka, producer)
    failures = 0
    try:
        # proxies as the worker: the Fetcher reads them (worker.poll.fetch `egress`)
        async with aiohttp.ClientSession(headers={"User-Agent": "email-status-worker backfill"}) as session:
            fetcher = Fetcher(account, session, limiter, lambda: datetime.now(UTC))
            for send_date, status in windows:
                offset = 0
                while True:
                    query = PollQuery(send_date=send_date, status=status, offset=offset, limit=module.DEFAULTS.page_limit)
                    try:
                        fetched = await fetcher.fetch(query)
                    except Throttled:
                        continue  # the fetcher slowed the limiter down; its pause is the wait
                    except (TimeoutError, PollError, aiohttp.ClientError) as exc:
                        failures += 1
                        print(f"\nbackfill: {send_date} {status.value if status else 'all'} offset {offset}: "
                              f"{fetch_error_type(exc)}", file=sys.stderr)
                        break
                    await writer.write([PollPageRecord(account.provider, account.name, datetime.now(UTC),
                                                    query, fetched.status, fetched.headers, fetched.body)])
                    page = fetched.page
                    bar.page(page.rows, offset, page.total)
                    if page.next_offset is None:
                        break
                    offset = page.next_offset
                bar.window_done()
    finally:
        await producer.stop()
        bar.draw(final=True)
    print(f"backfill: {bar.pages} pages, {bar.rows} rows of {len(windows)} windows written to {topics.raw}; "
          f"{failures} window(s) failed", file=sys.stderr)
    return EXIT_FAILED if failures else 0
