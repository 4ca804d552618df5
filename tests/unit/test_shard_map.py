"""Issue 18 point 1: which account lives on which shard, shown by check-config, /status,
esw_account_shard and the chart's NOTES, with the replica rule (useful replicas <= occupied shards,
plus one spare).

The expected shards are literals. They were computed once with `murmur2` below, written here from
Kafka's Java source (org.apache.kafka.common.utils.Utils.murmur2) and not from worker.emit; the
first test checks the literals against it, so neither the literals nor worker.emit can drift alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import make_mocked_request

from tests.unit.test_config_metrics import ACCOUNTS as SMALL_ACCOUNTS
from tests.unit.test_config_metrics import ENV
from tests.unit.test_helm_chart import one, render, render_error
from tests.unit.test_helm_exposure import render_notes
from worker.__main__ import main
from worker.app import MANAGER, OPS, build_app, config_metrics
from worker.config import parse_config
from worker.group import ShardManager
from worker.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
MULTI = ROOT / "helm" / "email-status-worker" / "ci" / "multi-account-values.yaml"

# ci/multi-account-values.yaml: five accounts, shards: 6 (the issue's {1, 5})
MULTI_SHARDS = {("engagelab", "engagelab-main"): 1, ("sendcloud", "cn-main"): 5,
                ("aurora_sendcloud", "intl-main"): 1, ("unisender", "ru-main"): 1, ("tencent_ses", "sg-main"): 5}
# three small accounts at three shard counts
SMALL = {2: {("sendcloud", "sc"): 1, ("sendcloud", "sc-poll"): 1, ("tencent_ses", "tx"): 0},   # both shards used
         3: {("sendcloud", "sc"): 1, ("sendcloud", "sc-poll"): 0, ("tencent_ses", "tx"): 0},   # shard 2 empty
         6: {("sendcloud", "sc"): 1, ("sendcloud", "sc-poll"): 3, ("tencent_ses", "tx"): 0}}   # none shared

MULTI_ENV = {name: "x" for name in ("ENGAGELAB_API_KEY", "ENGAGELAB_APP_KEY", "SENDCLOUD_API_KEY", "SENDCLOUD_APP_KEY",
                                    "AURORA_API_KEY", "AURORA_APP_KEY", "UNISENDER_API_KEY", "TENCENT_SECRET_KEY")}
MULTI_ENV["TENCENT_PATH_TOKEN"] = "tencent-path-token-0123456789"


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as an unsigned 32-bit value."""
    m, seed, mask = 0x5BD1E995, 0x9747B28C, 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = (int.from_bytes(data[i:i + 4], "little") * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def kafka_partition(provider: str, account: str, shards: int) -> int:
    """The default partitioner: murmur2 of the `provider/account` key, made positive, modulo."""
    return (murmur2(f"{provider}/{account}".encode()) & 0x7FFFFFFF) % shards


# Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2), signed 32-bit as Java prints them
KAFKA_VECTORS = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                 b"a-little-bit-longer-string": -1486304829,
                 b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}


def test_the_literals_are_kafkas_murmur2():
    for data, signed in KAFKA_VECTORS.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data
    for (provider, account), shard in MULTI_SHARDS.items():
        assert kafka_partition(provider, account, 6) == shard, account
    for shards, expected in SMALL.items():
        for (provider, account), shard in expected.items():
            assert kafka_partition(provider, account, shards) == shard, (shards, account)


def small_config(shards: int):
    return parse_config({"kafka": {"bootstrap_servers": "k:9092", "shards": shards}, "accounts": SMALL_ACCOUNTS}, ENV)


def write_config(path: Path, shards: int) -> Path:
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092", "shards": shards},
                                    "accounts": SMALL_ACCOUNTS}))
    return path


# -- check-config ---------------------------------------------------------------------------------


def test_check_config_prints_the_map_of_the_multi_account_example_and_warns(tmp_path, monkeypatch, capsys):
    for key, value in MULTI_ENV.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(MULTI.read_text())["config"]))
    assert main(["check-config", "--config", str(path)]) == 0      # a warning is not a problem
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"{path}: OK (1 aurora_sendcloud, 1 engagelab, 1 sendcloud, 1 tencent_ses, 1 unisender; "
        "topics email.status.*; 6 shards)",
        "account -> shard:",
        "  aurora_sendcloud  intl-main       shard 1",
        "  engagelab         engagelab-main  shard 1",
        "  unisender         ru-main         shard 1",
        "  sendcloud         cn-main         shard 5",
        "  tencent_ses       sg-main         shard 5",
        "occupied shards: 2 of 6",
    ]
    assert out.err.splitlines() == [
        "WARNING: 5 accounts share 2 of 6 shards (4 empty): useful replicas <= occupied shards, plus one "
        "spare for rollouts, here at most 3; more replicas own nothing and only add rebalances"]


def test_check_config_warns_when_three_accounts_use_two_of_three_shards(tmp_path, monkeypatch, capsys):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    path = write_config(tmp_path / "c.yaml", 3)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[1:] == [
        "account -> shard:",
        "  sendcloud    sc-poll  shard 0",
        "  tencent_ses  tx       shard 0",
        "  sendcloud    sc       shard 1",
        "occupied shards: 2 of 3",
    ]
    assert "WARNING: 3 accounts share 2 of 3 shards (1 empty)" in out.err
    assert "here at most 3;" in out.err


@pytest.mark.parametrize(("shards", "lines"), [
    # more accounts than shards, every shard used: sharing cannot be avoided, no replica is idle
    (2, ["  tencent_ses  tx       shard 0", "  sendcloud    sc       shard 1", "  sendcloud    sc-poll  shard 1",
         "occupied shards: 2 of 2"]),
    # no two accounts share a shard: empty shards are only room to grow
    (6, ["  tencent_ses  tx       shard 0", "  sendcloud    sc       shard 1", "  sendcloud    sc-poll  shard 3",
         "occupied shards: 3 of 6"]),
])
def test_check_config_does_not_warn_when_no_account_crowds_an_empty_shard_out(tmp_path, monkeypatch, capsys,
                                                                               shards, lines):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    path = write_config(tmp_path / "c.yaml", shards)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == f"{path}: OK (2 sendcloud, 1 tencent_ses; topics email.status.*; {shards} shards)"
    assert out.out.splitlines()[2:] == lines
    assert out.err == ""


def test_check_config_without_accounts_prints_no_map(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092", "shards": 4}, "accounts": []}))
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"{path}: OK (no accounts; topics email.status.*; 4 shards)"]
    assert out.err == ""


# -- /status and the metric -----------------------------------------------------------------------


async def status(app) -> dict:
    response = await app[OPS].status_json(make_mocked_request("GET", "/status", app=app))
    return json.loads(response.body)


async def test_status_lists_every_account_with_its_shard_and_whether_this_replica_owns_it():
    cfg = small_config(6)
    app = build_app(cfg)
    # before the group is joined (no manager yet): nothing is owned here
    assert (await status(app))["accounts"] == [
        {"provider": "sendcloud", "account": "sc", "shard": 1, "home": True, "owned_here": False},
        {"provider": "sendcloud", "account": "sc-poll", "shard": 3, "home": True, "owned_here": False},
        {"provider": "tencent_ses", "account": "tx", "shard": 0, "home": True, "owned_here": False},
    ]
    manager = ShardManager(cfg, session=None)  # type: ignore[arg-type]   # no shard opens here
    app[MANAGER] = manager
    manager.assigned = {0, 3, 5}
    assert (await status(app))["accounts"] == [
        {"provider": "sendcloud", "account": "sc", "shard": 1, "home": True, "owned_here": False},
        {"provider": "sendcloud", "account": "sc-poll", "shard": 3, "home": True, "owned_here": True},
        {"provider": "tencent_ses", "account": "tx", "shard": 0, "home": True, "owned_here": True},
    ]


def test_esw_account_shard_is_set_at_start_for_every_account():
    config_metrics(small_config(3))
    shard = {account: REGISTRY.get_sample_value("esw_account_shard", {"provider": provider, "account": account})
             for provider, account in SMALL[3]}
    assert shard == {"sc": 1.0, "sc-poll": 0.0, "tx": 0.0}
    config_metrics(small_config(6))     # another config: the same series take the new values
    shard = {account: REGISTRY.get_sample_value("esw_account_shard", {"provider": provider, "account": account})
             for provider, account in SMALL[6]}
    assert shard == {"sc": 1.0, "sc-poll": 3.0, "tx": 0.0}


# -- the chart's NOTES ----------------------------------------------------------------------------


def test_notes_show_how_to_read_the_map(tmp_path):
    notes = render_notes("multi-account-values.yaml", tmp_path)
    assert ("kubectl -n mail exec deploy/esw-email-status-worker -- email-status-worker check-config "
            "--config /etc/email-status-worker/config.yaml") in notes
    assert "accounts[].owned_here" in notes
    assert "WARNING" not in notes           # 3 replicas for 5 accounts: within the bound


@pytest.mark.parametrize(("scenario", "sets", "warning"), [
    ("full-values.yaml", ("autoscaling.maxReplicas=3",),
     "WARNING: autoscaling.maxReplicas is 3 for 1 account(s). Each account lives on one\n"
     "shard, so at most 1 of the 12 shards have work"),
    ("multi-account-values.yaml", ("config.kafka.shards=12", "replicaCount=7"),
     "WARNING: replicaCount is 7 for 5 account(s). Each account lives on one\n"
     "shard, so at most 5 of the 12 shards have work"),
])
def test_notes_warn_when_replicas_exceed_the_accounts_plus_a_spare(tmp_path, scenario, sets, warning):
    notes = render_notes(scenario, tmp_path, *sets)
    assert warning in notes
    assert "Useful replicas <= occupied shards, plus one spare for rollouts" in notes


@pytest.mark.parametrize(("scenario", "sets"), [
    ("full-values.yaml", ()),                                                # 2 for 1 account: one spare
    ("multi-account-values.yaml", ("config.kafka.shards=12", "replicaCount=6")),
    ("defaults", ()),                                                        # no accounts yet: nothing to say
])
def test_notes_do_not_warn_within_the_accounts_plus_a_spare(tmp_path, scenario, sets):
    assert "replicas <= occupied shards" not in render_notes(scenario, tmp_path, *sets)


# -- the HPA: CPU only, capped by the accounts in the example ------------------------------------


def test_the_hpa_scales_on_cpu_only_and_the_example_stops_at_one_spare():
    hpa = one(render("full-values.yaml"), "HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 2)   # 1 account: 1 shard + 1 spare


def test_a_memory_target_is_refused():
    err = render_error("full-values.yaml", "autoscaling.targetMemoryUtilizationPercentage=80")
    assert "targetMemoryUtilizationPercentage" in err
