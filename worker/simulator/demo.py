"""The demo set-up: one simulated account per provider, and what a worker needs to use them."""

from __future__ import annotations

from typing import Any

from worker.model import Provider
from worker.simulator.simconfig import SimAccount, SimConfig

# Fixed, obviously fake credentials; the worker reads the secret ones from these variables.
_ENV = {
    "SIM_ENGAGELAB_API_KEY": "sim-engagelab-api-key",
    "SIM_ENGAGELAB_APP_KEY": "sim-engagelab-app-secret",
    "SIM_SENDCLOUD_API_KEY": "sim-sendcloud-api-key",
    "SIM_SENDCLOUD_APP_KEY": "sim-sendcloud-app-key",
    "SIM_AURORA_API_KEY": "sim-aurora-api-key",
    "SIM_AURORA_APP_KEY": "sim-aurora-app-key",
    "SIM_UNISENDER_API_KEY": "sim-unisender-api-key",
    "SIM_TENCENT_SECRET_KEY": "sim-tencent-secret-key",
    "SIM_TENCENT_PATH_TOKEN": "sim-tencent-path-token-0123456789",
}
TENCENT_SECRET_ID = "AKIDsimtencentdemo0000000000000000"
TENCENT_REGION = "ap-singapore"


def demo_config(seed: int = 1, time_scale: float = 60.0) -> SimConfig:
    """Five accounts, one per provider, with two days of history and a live stream."""
    live: dict[str, Any] = {"history_days": 2, "history_per_day": 300, "live_per_sec": 2.0, "live_max": 20_000}
    e = _ENV
    return SimConfig(
        seed=seed,
        time_scale=time_scale,
        accounts=(
            SimAccount(provider=Provider.ENGAGELAB, name="engagelab-demo", api_user="sim_engagelab",
                       api_key=e["SIM_ENGAGELAB_API_KEY"], app_key=e["SIM_ENGAGELAB_APP_KEY"], **live),
            SimAccount(provider=Provider.SENDCLOUD, name="sendcloud-demo", api_user="sim_sendcloud",
                       api_key=e["SIM_SENDCLOUD_API_KEY"], app_key=e["SIM_SENDCLOUD_APP_KEY"], **live),
            SimAccount(provider=Provider.AURORA_SENDCLOUD, name="aurora-demo", api_user="sim_aurora",
                       api_key=e["SIM_AURORA_API_KEY"], app_key=e["SIM_AURORA_APP_KEY"], **live),
            SimAccount(provider=Provider.UNISENDER, name="unisender-demo", api_user="sim_unisender",
                       api_key=e["SIM_UNISENDER_API_KEY"], **live),
            SimAccount(provider=Provider.TENCENT_SES, name="tencent-demo", secret_id=TENCENT_SECRET_ID,
                       secret_key=e["SIM_TENCENT_SECRET_KEY"], region=TENCENT_REGION,
                       path_token=e["SIM_TENCENT_PATH_TOKEN"], **live),
        ),
    )


def demo_worker_env() -> dict[str, str]:
    """The environment variables demo_worker_accounts() names, with their values."""
    return dict(_ENV)


def demo_worker_accounts(base_url: str) -> list[dict[str, Any]]:
    """The `accounts:` entries of a worker config (schemas/config.v1.json) for demo_config()."""
    def hook(**kw: str) -> dict[str, Any]:
        return {"enabled": True, **kw}

    return [
        {"name": "engagelab-demo", "provider": "engagelab", "base_url": base_url,
         "credentials": {"api_user": "sim_engagelab", "api_key_env": "SIM_ENGAGELAB_API_KEY"},
         "webhook": hook(app_key_env="SIM_ENGAGELAB_APP_KEY")},
        {"name": "sendcloud-demo", "provider": "sendcloud", "base_url": base_url,
         "credentials": {"api_user": "sim_sendcloud", "api_key_env": "SIM_SENDCLOUD_API_KEY"},
         "webhook": hook(app_key_env="SIM_SENDCLOUD_APP_KEY")},
        {"name": "aurora-demo", "provider": "aurora_sendcloud", "base_url": base_url,
         "credentials": {"api_user": "sim_aurora", "api_key_env": "SIM_AURORA_API_KEY"},
         "webhook": hook(app_key_env="SIM_AURORA_APP_KEY")},
        {"name": "unisender-demo", "provider": "unisender", "base_url": base_url,
         "credentials": {"api_key_env": "SIM_UNISENDER_API_KEY"},
         "webhook": hook()},
        {"name": "tencent-demo", "provider": "tencent_ses", "base_url": base_url, "region": TENCENT_REGION,
         "credentials": {"secret_id": TENCENT_SECRET_ID, "secret_key_env": "SIM_TENCENT_SECRET_KEY"},
         "webhook": hook(path_token_env="SIM_TENCENT_PATH_TOKEN")},
    ]
