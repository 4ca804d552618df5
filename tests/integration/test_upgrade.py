"""Release N and N+1 side by side: a rolling upgrade and a rolling rollback of three replicas under load.

The previous release (the newest commit CHANGELOG.md names, tests/integration/releases.py) is
built from git into its own virtualenv and run as real processes beside the working tree's code,
behind `Service` (tests/integration/harness.py): it sends each request to one of the pods whose
`/readyz` last answered 200 (probed every second, as the chart's readiness probe does every 5) and
drops a pod from its endpoints as soon as the pod is being deleted. Three replicas of release N
take webhooks and poll; then the chart's rollout (`maxSurge: 1`, `maxUnavailable: 0`,
`preStopSleepSeconds: 5`) replaces each by release N+1, one at a time: the new pod starts and
becomes ready, the old one leaves the endpoints, sleeps out its preStop, gets SIGTERM and exits.
Then, the same way and in reverse order, each N+1 pod is replaced by N again (a `helm rollback`).
Throughout, the simulator's providers send webhooks (with duplicates, out of order, retrying on 5xx
and timeouts) and the pods poll. (Three replicas, not the two issue 19 names: this test replaces
the same-release rollout test of three, a same-release rollout being the easy case of this one.)

Afterwards every webhook is sent once more (a provider re-delivering its whole history to the
rolled-back pods) while they poll on, and:
- every status change is in Kafka exactly once for read_committed readers (none lost, no duplicate
  `event_id`), and each event matches the simulator's truth: whichever release decided it;
- nothing was dead-lettered: neither a format one release could not read nor anything else;
- the re-sent webhooks and re-polled rows produced nothing new: the dedup state each release
  restored from the other's `_state` dropped them;
- every pod of either release exited 0 on SIGTERM, no webhook ran out of retries, the Service always
  had a ready endpoint, and the N+1 pods owned every shard; the webhook latency p99 (first attempt
  to 200, retries included) is printed.
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from tests.integration.harness import PRESTOP_SECS, Service, WorkerProcess, free_port, shards_owned, worker_config
from tests.integration.kafka_utils import read_all
from tests.integration.releases import Release, build_previous_release
from tests.integration.test_pipeline import OUTPUTS, create_topic
from tests.integration.test_resilience import World, accounts_for_test
from tests.integration.world import ENV, check_against_truth, diff, expected_all_changes, observed, worker_account
from worker.simulator import SimConfig, Simulator
from worker.simulator.webhooks import WebhookSender

pytestmark = pytest.mark.integration

SHARDS = 6
REPLICAS = 3


async def test_upgrade_and_rollback_between_releases_lose_and_double_nothing(tmp_path, kafka_bootstrap, topic_prefix):
    release: Release = await asyncio.to_thread(build_previous_release)
    accounts = accounts_for_test(live_secs=80)   # traffic through every step of both rolls
    names = [a.name for a in accounts]
    sim = Simulator(SimConfig(seed=83, accounts=tuple(accounts), time_scale=6000))
    base = await sim.start()
    sent_topic = f"{topic_prefix}.sent"
    await create_topic(kafka_bootstrap, sent_topic)
    worker_accounts = [worker_account(a, base) for a in accounts]

    def pod(name: str, previous: bool) -> WorkerProcess:
        data = worker_config(kafka_bootstrap, topic_prefix, worker_accounts, shards=SHARDS, port=free_port(),
                             inputs={"sent_topic": sent_topic}, shutdown={"grace_secs": 20})
        if previous:
            return WorkerProcess(data, ENV, tmp_path, name=name, python=release.python, cwd=release.home / "run")
        return WorkerProcess(data, ENV, tmp_path, name=name)

    service = Service()
    await service.start()
    world = World(sim, [service.url], sent_topic, kafka_bootstrap)
    live: list[WorkerProcess] = [pod(f"{release.name}-{i}", previous=True) for i in range(REPLICAS)]
    everyone = list(live)
    exits: dict[str, int] = {}
    owned: dict[str, int] = {}
    steps: list[str] = []

    async def replace(i: int, previous: bool, label: str) -> None:
        """maxSurge 1, maxUnavailable 0: the new pod is ready before the old one leaves."""
        old, new = live[i], pod(label, previous)
        everyone.append(new)
        await new.start()
        await new.ready(timeout=150)   # a join waits out the slowest member's revoke, up to the 30 s
        #   rebalance timeout, more than once under CI load
        service.pods[new.url] = True
        service.deleting.add(old.url)
        await asyncio.sleep(PRESTOP_SECS)
        exits[old.name] = await old.terminate(timeout=40)
        del service.pods[old.url]
        live[i] = new
        steps.append(f"{old.name} -> {new.name}")
        await asyncio.sleep(2)   # both releases serve side by side for a while

    try:
        for p in live:
            await p.start()
        for p in live:
            await p.ready(timeout=90)
            service.pods[p.url] = True
        world.start()
        await asyncio.sleep(6)
        started = time.monotonic()
        for i in range(REPLICAS):
            await replace(i, previous=False, label=f"next-{i}")
        for p in live:
            owned[p.name] = await shards_owned(p.url)
        for i in reversed(range(REPLICAS)):   # the rollback, in reverse order
            await replace(i, previous=True, label=f"{release.name}-back-{i}")
        rolled_secs = time.monotonic() - started
        polled_before = sum(sim.stats(n)["ok"] for n in names)
        cutoff = await world.finish(names)
        expected = expected_all_changes(sim, names, cutoff)
        records = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS],
                                 expect=sum(expected.values()), timeout=120, quiet_secs=6)
        # A provider re-delivers every webhook it ever sent, to the rolled-back pods.
        async with WebhookSender(sim, service.url, since=0, max_attempts=14, retry_base_secs=0.25,
                                 concurrency=8) as resender:
            resent = await resender.send_due(cutoff)
        await asyncio.sleep(5)   # the re-sent records, and the pollers' next sweeps, go through the shards
        after = await read_all(kafka_bootstrap, [f"{topic_prefix}.{t}" for t in OUTPUTS], timeout=20, quiet_secs=3)
        dead = await read_all(kafka_bootstrap, [f"{topic_prefix}._dead_letter"], timeout=10, quiet_secs=2)
        repolled = sum(sim.stats(n)["ok"] for n in names) - polled_before   # answered polls after the rollback
        for p in live:
            exits[p.name] = await p.terminate(timeout=40)
    finally:
        for p in everyone:
            await p.kill()
        await service.stop()
        await sim.stop()
    actual, events = observed(records)
    event_ids = collections.Counter(e["event_id"] for e in events)
    reasons = collections.Counter(dict(r.headers).get("reason", b"?").decode() for r in dead)
    latencies = sorted(lat for s in world.senders for lat in s.totals.latencies)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"\nupgrade {release.name} ({release.commit[:10]}) -> working tree -> {release.name}, {REPLICAS} replicas, "
          f"{rolled_secs:.0f} s: {' / '.join(steps)}; {len(latencies)} webhook bodies answered 200, p99 "
          f"{p99 * 1000:.0f} ms (first attempt to 200); {sum(expected.values())} changes, {len(events)} events, "
          f"{resent.delivered} webhook bodies re-sent and {repolled} status calls answered after the rollback, "
          f"{len(after) - len(records)} events after them, "
          f"dead letters {dict(reasons)}, shards owned by the new pods {owned}")
    assert exits == {p.name: 0 for p in everyone}, exits
    assert world.failed == 0, "a webhook ran out of retries"
    assert service.no_endpoint == 0, "the Service had no ready endpoint during the rollout"
    assert sum(owned.values()) == SHARDS, f"shards owned by the new pods: {owned}"
    assert actual == expected, diff(expected, actual, events=events)
    assert [i for i, n in event_ids.items() if n > 1] == []
    assert not check_against_truth(sim, names, cutoff, events)
    assert resent.delivered > 0 and resent.failed == 0 and repolled > 0
    assert len(after) == len(records), "a re-sent webhook or a re-polled row became a second event"
    assert not dead, f"dead letters: {dict(reasons)}"
