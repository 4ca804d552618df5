"""Checks of single settings the schema cannot state: each returns the problems it finds, worded as
check-config prints them (key path first), so that `run` never meets a value it cannot use.

Found by a black-box audit of the config contract (2026-12-06): a `bootstrap_servers` of
`kafka:abc` passed check-config and `run` died with a traceback; `output_partitions: 0` made a
worker that looked healthy and never created its topics; an empty `base_url` host failed
every poll; a topic name Kafka refuses was waited for forever; `api_key_file: /dev/zero` (a file
that never ends) held check-config until memory ran out."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from worker.configtypes import HttpConfig, KafkaConfig

SECRET_FILE_MAX_BYTES = 64 * 1024          # a key, a password, a token: never near this
CONFIG_FILE_MAX_BYTES = 4 * 1024 * 1024    # ~10,000 accounts


class FileTooLarge(ValueError):
    """A file past the bound its reader sets (`read_bounded`)."""


def read_bounded(path: str, limit: int) -> str:
    """A UTF-8 file's text, reading at most `limit` bytes: FileTooLarge past them (a device or a log
    named by mistake never ends), OSError when it cannot be read, UnicodeDecodeError when it is not
    UTF-8, ValueError for a path with a NUL byte."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"larger than {limit >> 20} MiB" if limit % (1 << 20) == 0 else f"larger than {limit >> 10} KiB")
    return data.decode("utf-8")


# Kafka's legal topic names (org.apache.kafka.common.internals.Topic): these characters, at most 249.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
# A host name or an IP address (v6 in brackets or bare): letters, digits and . - : [ ] _
_HOST = re.compile(r"\[?[A-Za-z0-9._:-]+\]?")


def bootstrap_problems(servers: str, from_env: bool) -> list[str]:
    """`host:port[,host:port]`, each port 1 to 65535."""
    where = "KAFKA_BOOTSTRAP_SERVERS" if from_env else "kafka.bootstrap_servers"
    entries = [entry.strip() for entry in servers.split(",")]
    bad = [entry for entry in entries if not _address(entry)]
    if not bad:
        return []
    shown = ", ".join(repr(entry) for entry in bad)
    return [f"{where}: {shown} is not host:port (a host name or IP address, a colon, a port from 1 to 65535)"]


def _address(entry: str) -> bool:
    host, colon, port = entry.rpartition(":")
    return (bool(colon) and _HOST.fullmatch(host) is not None and port.isascii() and port.isdigit()
            and 1 <= int(port) <= 65535)


def kafka_problems(kafka: KafkaConfig) -> list[str]:
    problems = []
    for key in ("replication_factor", "output_partitions"):
        if getattr(kafka, key) == 0:
            problems.append(f"kafka.{key}: 0 is not a count: -1 (the broker's default) or at least 1")
    return problems


def http_problems(http: HttpConfig) -> list[str]:
    problems = []
    if http.host and _HOST.fullmatch(http.host) is None:
        problems.append(f"http.host: {http.host!r} is not a host name or IP address")
    return problems


def topic_problems(topic: str, path: str) -> list[str]:
    if _TOPIC.fullmatch(topic) is None or topic in (".", ".."):
        return [f"{path}: {topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"]
    return []


def base_url_problems(url: str, path: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:   # "http://[::1": an IPv6 host not closed
        return [f"{path}: {url!r} is not an http(s) URL with a host"]
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return [f"{path}: {url!r} is not an http(s) URL with a host"]
    try:
        parts.port   # noqa: B018 - raises on a port that is not a number from 0 to 65535
    except ValueError:
        return [f"{path}: {url!r} has a port that is not a number from 0 to 65535"]
    return []
