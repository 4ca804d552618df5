"""The worker process: one aiohttp application that owns everything long-lived.

`web.run_app` owns the process and its signals. Start-up, through `cleanup_ctx`, in order: the
internal topics, the `_raw` producer, the HTTP client session, the shard manager (consumer group,
shards, pollers), the optional sent-message feed. `/readyz` asks only whether Kafka takes writes
(worker.reach): shards restoring after a rebalance are reported on `/status`, and webhooks keep
flowing into `_raw` meanwhile. On SIGTERM (or SIGINT) `/readyz` answers 503 at once
(`not_shutting_down: false`) and the webhook requests in progress, bodies still arriving included,
are answered (`drain`, up to the requests' share of the grace; requests arriving meanwhile are
served too, as Kubernetes may route some until its endpoints catch up); then aiohttp closes its
listener and every connection (it reads no more from them: a body still arriving then is never
answered, which is why the drain comes first), and the contexts unwind in reverse: the sent feed stops, every shard stops its
pollers and commits its open batch, the consumer leaves the group, the producer flushes. The whole
unwind is bounded by `shutdown.grace_secs` as a whole (`shutdown_budget`: requests in progress,
then the pipeline, then the `_raw` producer's flush, each given its share).

A Kafka that cannot be reached at start (down, wrong address, refused TLS or SASL credentials) ends
the process with exit status 1 and one error line that says so (no traceback): Kubernetes restarts
it with back-off, and the line names the cause. Existing topics it cannot use (worker.emit
`ensure_topics`) end it with exit status 2 and a line that says what to change. Once started, the
worker rides out Kafka failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import NamedTuple

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker import logs, metrics
from worker.config import Config
from worker.emit import ensure_topics, kafka_error_type, producer_settings
from worker.errors import TopicLayoutError
from worker.group import ShardManager
from worker.http import SERVER_SETTINGS, Ops, count_parser_refusals
from worker.intake import RawWriter
from worker.loopwatch import LoopWatch, freeze_startup
from worker.placement import ShardMap
from worker.reach import Reach
from worker.sentfeed import SentFeed
from worker.webhooks import WebhookReceiver

log = logging.getLogger("worker.app")

EXIT_KAFKA = 1
EXIT_CONFIG = 2
_BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
# aiohttp's own wait for handlers after the drain (the last of the requests' share, at most half of
# it): only those the drain could not finish are left
LEFTOVER_SECS = 0.5

CONFIG = web.AppKey("config", Config)
OPS = web.AppKey("ops", Ops)
MANAGER = web.AppKey("manager", ShardManager)
WRITER = web.AppKey("writer", RawWriter)


def build_app(config: Config) -> web.Application:
    config_metrics(config)
    app = web.Application(client_max_size=config.http.max_body_bytes, handler_args=SERVER_SETTINGS)
    ops = Ops()
    app[CONFIG] = config
    app[OPS] = ops
    app.add_routes(ops.routes())
    shard_map = ShardMap.from_config(config)
    # this replica's shards: those the group assigned it (group.restoring says which are restored)
    ops.status["accounts"] = lambda: shard_map.status(app[MANAGER].assigned if MANAGER in app else ())
    receiver = WebhookReceiver(config, writer=None)  # the writer arrives with kafka_ctx
    count_parser_refusals()
    app.add_routes(receiver.routes())

    async def kafka_ctx(app: web.Application) -> AsyncIterator[None]:
        await ensure_topics(config.kafka)
        def new_producer() -> AIOKafkaProducer:
            return AIOKafkaProducer(**producer_settings(config.kafka))

        producer = new_producer()
        await producer.start()
        writer = RawWriter(config.kafka, producer, renew=new_producer)
        reach = Reach(config.kafka, writer)
        await reach.start()
        ops.checks["kafka_reachable"] = lambda: reach.reachable
        ops.status["kafka"] = reach.snapshot
        watch = LoopWatch()
        watch.start()
        ops.status["event_loop"] = watch.snapshot
        receiver.writer = writer
        app[WRITER] = writer
        yield
        await watch.stop()
        await reach.stop()
        await writer.stop(shutdown_budget(config).flush)

    async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
        # provider calls honour HTTP(S)_PROXY and NO_PROXY, read once per host (worker.poll.fetch `egress`)
        session = aiohttp.ClientSession(headers={"User-Agent": "email-status-worker"})
        manager = ShardManager(config, session)
        app[MANAGER] = manager
        ops.critical["pipeline"] = lambda: manager.alive
        ops.status["group"] = manager.snapshot
        await manager.start()
        feed = None
        if config.sent_topic:
            feed = SentFeed(config, app[WRITER])
            await feed.start()
            ops.critical["sent_feed"] = feed.alive
            ops.status["sent_feed"] = feed.snapshot
        yield
        ops.shutting_down = True
        try:
            await asyncio.wait_for(_stop(manager, feed), shutdown_budget(config).pipeline)
        except TimeoutError:
            log.warning("shutdown grace period exceeded; open transactions are left to time out")
        await session.close()

    async def on_shutdown(app: web.Application) -> None:
        ops.shutting_down = True

    async def on_started(app: web.Application) -> None:   # after every context: aiohttp's handlers are set
        budget = shutdown_budget(config)
        drain_on_signals(receiver, ops, budget.requests - leftover_secs(budget))

    app.cleanup_ctx.extend([kafka_ctx, pipeline_ctx])
    app.on_startup.append(on_started)
    app.on_shutdown.append(on_shutdown)
    return app


def drain_on_signals(receiver: WebhookReceiver, ops: Ops, budget: float) -> None:
    """SIGTERM and SIGINT: readiness false at once, the webhook requests in progress answered (up to
    `budget` seconds), then aiohttp's graceful exit, as its own handler raises it. Alone, aiohttp
    closed every connection first and stopped reading them, so a body still arriving at SIGTERM was
    never answered (config audit of 2026-12-06). A second signal exits at once."""
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task] = []

    def on_signal() -> None:
        if draining:   # a second signal: stop waiting, and let the drain not raise again later
            draining[0].cancel()
            raise web.GracefulExit()
        ops.shutting_down = True
        log.info("stopping: answering the requests in progress", extra={"requests": receiver.active})
        draining.append(loop.create_task(drain(receiver, budget)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def drain(receiver: WebhookReceiver, budget: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.idle.wait(), budget)
    asyncio.get_running_loop().call_soon(_exit)


def _exit() -> None:
    raise web.GracefulExit()   # from a loop callback, it ends web.run_app's loop (a SystemExit)


def config_metrics(config: Config) -> None:
    """What the configuration says, as metrics alerts can compare with (set once, at start: the
    shard count, each account's webhook and shard), and how many receiving domains
    esw_deliverability_events_total may name."""
    metrics.shards_configured(config.kafka.shards)
    for account in config.accounts:
        metrics.account_webhooks(account.provider.value, account.name, account.webhook.enabled, account.poll.enabled)
    for placed in ShardMap.from_config(config).placements:
        if placed.home:   # a spread account's other shards are in /status and check-config
            metrics.account_shard(placed.provider, placed.account, placed.shard)
    metrics.deliverability_domains(config.deliverability_domains)


class ShutdownBudget(NamedTuple):
    requests: float   # webhook requests in progress finish (the drain)
    pipeline: float   # the sent feed and the shards: pollers, open transactions, the group
    flush: float      # the _raw producer flushes what it holds


def leftover_secs(budget: ShutdownBudget) -> float:
    return min(LEFTOVER_SECS, budget.requests / 2)


def shutdown_budget(config: Config) -> ShutdownBudget:
    """`shutdown.grace_secs` shared so that the whole unwind stays within it (the chart's
    terminationGracePeriodSeconds is computed from it): a fifth, at most 5 s, for requests in
    progress; a fifth, at most the produce timeout, for the flush; the rest for the pipeline."""
    grace = config.shutdown_grace_secs
    requests = min(5.0, grace / 5)
    flush = min(config.kafka.produce_timeout_secs, grace / 5)
    return ShutdownBudget(requests, grace - requests - flush, flush)


async def _stop(manager: ShardManager, feed: SentFeed | None) -> None:
    if feed is not None:
        await feed.stop()
    await manager.stop()


def run_worker(config: Config) -> int:
    logs.setup(config.log_level)
    log.info("starting", extra={"accounts": len(config.accounts), "shards": config.kafka.shards,
                                "topic_prefix": config.kafka.topic_prefix, "port": config.http.port})
    for notice in config.notices:   # a key name and path, never a value
        log.warning("config key not used", extra={"reason": notice})
    try:
        # reuse_port: SO_REUSEPORT, so that several worker processes on one host share the port
        app = build_app(config)
        freeze_startup()
        web.run_app(app, host=config.http.host, port=config.http.port,
                    reuse_port=config.http.reuse_port, print=None,
                    access_log=None, shutdown_timeout=leftover_secs(shutdown_budget(config)),
                    handle_signals=True)
    except KafkaError as exc:
        # str(exc) names the broker addresses and the failure, never a credential
        log.error("cannot start: Kafka unavailable", extra={"error_type": kafka_error_type(exc),
                                                             "reason": str(exc)[:300]})
        return EXIT_KAFKA
    except TopicLayoutError as exc:   # existing topics the worker cannot use: what to change
        log.error("cannot start: topics", extra={"error_type": exc.error_type, "reason": str(exc)[:1000]})
        return EXIT_CONFIG
    except OSError as exc:
        if not (isinstance(exc, socket.gaierror) or (exc.errno in _BIND_ERRNOS and "bind" in str(exc))):
            raise
        # another process on the port, a port below 1024 without the privilege, an address not on
        # this host or a host name that does not resolve: only an operator can change that
        # (http.port, http.host, or the other process)
        log.error("cannot start: http port", extra={
            "error_type": "fatal_config",
            "reason": f"cannot listen on {config.http.host}:{config.http.port}: {exc.strerror or exc}"})
        return EXIT_CONFIG
    log.info("stopped")
    return 0
