"""JSON log lines: one per unit of work that did not go as planned (a poll call or a webhook that
failed or was refused, an error) and, at debug level, one per unit that did (a successful poll call,
a webhook answered 200: at a provider's blast rate a line each would be most of the log and of the
CPU; they are counted in the metrics at every level). Never secrets, never bodies: callers pass only
bounded fields (provider, account, counts, durations, error types)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = line.get("error_type") or record.exc_info[0].__name__
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class _Throttle(logging.Filter):
    """At most `burst` lines of one kind (`kind`; None: not throttled) per `window` seconds; the
    first line of the next window carries how many were left out (`suppressed`)."""

    def __init__(self, burst: int, window: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self.seen: dict[Any, tuple[float, int]] = {}   # kind -> (window start, lines)

    def kind(self, record: logging.LogRecord) -> Any:
        return None   # nothing is throttled here: each subclass names the lines it throttles

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.kind(record)
        if key is None:
            return True
        now = self.clock()
        start, count = self.seen.get(key, (now, 0))
        if now - start >= self.window:
            if count > self.burst:
                record.suppressed = count - self.burst
            start, count = now, 0
        self.seen[key] = (start, count + 1)
        return count < self.burst


class ClientThrottle(_Throttle):
    """5 lines a minute of one Kafka-client message (its template, whatever the broker or partition
    it names). During an outage aiokafka logs ~140 lines a second per replica ("Unable connect to
    node", "NotEnoughReplicasError, retrying": Kafka audit of 2026-12-06), megabytes in minutes that
    bury the worker's own lines."""

    def __init__(self, burst: int = 5, window: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__(burst, window, clock)

    def kind(self, record: logging.LogRecord) -> Any:
        return (record.name, record.msg) if record.name.startswith("aiokafka") else None


class AnswerThrottle(_Throttle):
    """20 lines a minute of the webhook answers other than 200 of one account and status (every
    answer is counted in esw_webhook_requests_total). A flood of bad signatures or unknown URLs
    logged a line per request: 426,000 lines (83 MB) in 20 minutes of the edge audit of 2026-12-06."""

    def __init__(self, burst: int = 20, window: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__(burst, window, clock)

    def kind(self, record: logging.LogRecord) -> Any:
        if record.name != "worker.webhooks" or record.msg != "webhook":
            return None
        status = getattr(record, "status", None)
        return None if status == 200 else (getattr(record, "provider", None), getattr(record, "account", None), status)


class FencedLeftovers(logging.Filter):
    """asyncio's "Future exception was never retrieved" for a ProducerFenced: a shard taken over by
    a newer owner leaves aiokafka futures of its last transaction failed and unread, reported with a
    traceback each at ERROR when they are collected (15 lines at one replica's stop: Kafka audit of
    2026-12-06). The fencing itself is handled and logged once by the shard; these are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.name == "asyncio" and type(exc).__name__ == "ProducerFenced")


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ClientThrottle())
    handler.addFilter(AnswerThrottle())
    handler.addFilter(FencedLeftovers())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs connection churn at INFO/ERROR with broker detail only; keep it at WARNING
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # aiohttp's server logger: what its parser refuses is counted, not logged (worker.http
    # ParserRefusals, installed with the app)
