"""The provider simulator (DESIGN.md 8): all five status APIs and their webhooks, on 127.0.0.1.

    sim = Simulator(SimConfig(seed=1, accounts=(SimAccount(...), ...), time_scale=100))
    base_url = await sim.start()          # every account's base_url
    ...
    sim.changes("acct"), sim.visible_status("acct", email_id, at), sim.calls, sim.stats("acct")
    await WebhookSender(sim, "http://127.0.0.1:8080").send_due()
    await sim.stop()
"""

from worker.simulator.demo import demo_config, demo_worker_accounts, demo_worker_env
from worker.simulator.server import Simulator
from worker.simulator.simconfig import Call, Change, Faults, SentMessage, SimAccount, SimConfig, Visible
from worker.simulator.webhooks import SendStats, WebhookSender

__all__ = [
    "Call",
    "Change",
    "Faults",
    "SendStats",
    "SentMessage",
    "SimAccount",
    "SimConfig",
    "Simulator",
    "Visible",
    "WebhookSender",
    "demo_config",
    "demo_worker_accounts",
    "demo_worker_env",
]
