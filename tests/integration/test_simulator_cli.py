"""`email-status-worker simulate`: the sub-command, its YAML accounts file and the demo set-up."""

from __future__ import annotations

import argparse

import orjson
import pytest

from worker.model import Provider
from worker.simulator import cli, demo_config, demo_worker_env

pytestmark = pytest.mark.integration


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_simulate_serves_and_stops_by_itself(capsys):
    args = parse(["--port", "0", "--duration", "0.3", "--seed", "9", "--time-scale", "120"])
    assert args.func is cli.run
    assert cli.run(args) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["simulator"].startswith("http://127.0.0.1:")
    assert (lines[0]["seed"], lines[0]["time_scale"]) == (9, 120.0)
    assert lines[1]["worker_env"] == demo_worker_env()
    assert {a["name"] for a in lines[1]["worker_accounts"]} == set(lines[0]["accounts"])
    assert "stopped" in lines[-1]


def test_accounts_file(tmp_path, capsys):
    path = tmp_path / "sim.yaml"
    path.write_text(
        "seed: 4\ntime_scale: 10\naccounts:\n"
        "  - {provider: sendcloud, name: cn, api_user: u, api_key: k, app_key: a, history_per_day: 5, live_max: 3}\n"
    )
    config = cli.load_sim_config(path)
    assert config.seed == 4 and config.accounts[0].provider is Provider.SENDCLOUD
    assert config.accounts[0].quota_per_minute == 3000
    assert cli.run(parse(["--config", str(path), "--port", "0", "--duration", "0.2"])) == 0
    assert orjson.loads(capsys.readouterr().out.splitlines()[0])["accounts"] == ["cn"]
    path.write_text("accounts:\n  - {provider: nope, name: x}\n")
    assert cli.run(parse(["--config", str(path), "--port", "0"])) == 2


def test_demo_config_has_one_account_per_provider():
    config = demo_config()
    assert [a.name for a in config.accounts] == ["engagelab-demo", "sendcloud-demo", "aurora-demo",
                                                 "unisender-demo", "tencent-demo"]
    assert {a.provider for a in config.accounts} == set(Provider)
    assert all(a.live_per_sec > 0 for a in config.accounts) and config.time_scale == 60
    assert len(demo_worker_env()["SIM_TENCENT_PATH_TOKEN"]) >= 16
