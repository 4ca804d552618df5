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


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs connection churn at INFO/ERROR with broker detail only; keep it at WARNING
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Our handlers catch and log their own failures; what aiohttp's server still logs (with a
    # traceback, at ERROR) are requests its parser refused with 400: any client on the internet can
    # send those, so they are not errors of ours and must not page anyone.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
