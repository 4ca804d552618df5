"""Kafka client connection settings as aiokafka takes them: SASL settings, and TLS as a context.

aiokafka accepts no certificate paths, only an `ssl.SSLContext`: it is built here with aiokafka's
own `create_ssl_context` from the configured PEM files (`kafka.security.ssl_*`), once per process.
`check-config` calls `tls_problems` first, so a missing file or a bad PEM is a configuration
problem reported at once, never a crash of a running worker. Never puts a secret in a message.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from worker.config import KafkaConfig

TLS_KEYS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")


def client_kwargs(kafka: KafkaConfig) -> dict[str, Any]:
    """Connection settings shared by every aiokafka client of the worker."""
    settings: dict[str, Any] = {k: v for k, v in kafka.security.items() if k not in TLS_KEYS}
    if settings.get("security_protocol", "PLAINTEXT").endswith("SSL"):
        settings["ssl_context"] = _context(*(kafka.security.get(k) for k in TLS_KEYS))
    return {"bootstrap_servers": kafka.bootstrap_servers, **settings}


def _no_password() -> bytes:
    """An encrypted key without a configured password fails to load (ssl.SSLError) instead of
    OpenSSL asking for the passphrase on the terminal (check-config would wait for ever)."""
    return b""


@functools.cache
def _context(cafile: str | None, certfile: str | None, keyfile: str | None, password: str | None) -> ssl.SSLContext:
    # without a CA file the system's trusted CAs are used (managed clusters have public certificates)
    return create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile,
                              password=password if password is not None else _no_password)


def tls_problems(kafka: KafkaConfig, load: bool = True) -> list[str]:
    """Why the TLS files cannot be loaded (path and reason, never the key password); [] when they
    can. Each file that cannot be read is named on its own line; the files are loaded together only
    when every one reads, and with `load` (check-config skips that while `kafka.security` has a
    problem of its own: the password, say, may not be the file's then)."""
    if not kafka.security.get("security_protocol", "PLAINTEXT").endswith("SSL"):
        return []
    unreadable = []
    for key in TLS_KEYS[:3]:
        path = kafka.security.get(key)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            unreadable.append(f"kafka.security.{key}: cannot read {path}: {exc.strerror}")
    if unreadable or not load:
        return unreadable
    try:
        client_kwargs(kafka)
    except (OSError, ssl.SSLError, ValueError) as exc:
        files = ", ".join(f"{k}={kafka.security[k]}" for k in TLS_KEYS[:3] if k in kafka.security)
        reason = getattr(exc, "reason", None) or (exc.strerror if isinstance(exc, OSError) else None) \
            or type(exc).__name__
        hint = ""
        if isinstance(exc, ssl.SSLError) and "ssl_keyfile" in kafka.security:
            hint = (" (not a PEM certificate or key, or a key that does not match the certificate, or an encrypted "
                    "key whose ssl_key_password is missing or wrong)")
        return [f"kafka.security: cannot load the TLS files ({files or 'the system CAs'}): {reason}{hint}"]
    return []
