"""The recipe of examples/suppression_consumer.py: what each event does, and the soft-bounce threshold."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "examples" / "suppression_consumer.py"
_spec = importlib.util.spec_from_file_location("suppression_consumer", _PATH)
sc = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("suppression_consumer", sc)
_spec.loader.exec_module(sc)

Action, Recipe, decide, soft_verdict = sc.Action, sc.Recipe, sc.decide, sc.soft_verdict
IGNORE = Action("ignore")


def ev(type_: str, **fields) -> dict:
    """Only the fields decide() reads; absent `final`/`scope` mean an event from before they existed."""
    return {"type": type_, "account": "acct-1", **fields}


@pytest.mark.parametrize(("event", "action"), [
    # invalid: the address (or its domain) is gone -> suppressed for every account, for good
    (ev("invalid", final=True, scope="recipient", reason="unknown_user"), Action("suppress", "invalid", "*")),
    (ev("invalid", final=True, scope="domain", reason="domain_invalid"), Action("suppress", "invalid", "*")),
    # the provider's own list: a separate row for that account, not evidence about the address
    (ev("invalid", final=True, scope="provider", reason="suppressed"), Action("suppress", "provider", "acct-1")),
    # an account's `sender_rejection: invalid` choice: the receiving server refused us, not the address
    (ev("invalid", final=True, scope="sender", reason="sender_rejected"), IGNORE),
    (ev("invalid", final=True, scope="policy", reason="policy_rejected"), IGNORE),
    (ev("invalid", final=True, scope="content", reason="spam_rejected"), IGNORE),
    (ev("invalid", final=True, scope="unknown", reason="other"), IGNORE),
    # engagement: per account
    (ev("complaint", final=True, scope="recipient", reason=None), Action("suppress", "complaint", "acct-1")),
    (ev("unsubscribed", final=True, scope="recipient", reason="unsubscribed"),
     Action("suppress", "unsubscribed", "acct-1")),
    (ev("unsubscribed", final=True, scope="provider", reason="unsubscribed"),
     Action("suppress", "unsubscribed", "acct-1")),
    # SendCloud-family 402 (an invalid by PROVIDERS.md): the recipient's own opt-out, kept as one
    # (consumer audit of 2026-12-06: it was a mirror row, dropped when the provider delists)
    (ev("invalid", final=True, scope="provider", reason="unsubscribed"), Action("suppress", "unsubscribed", "acct-1")),
    # soft bounces: only final ones about the address count
    (ev("soft_bounce", final=True, scope="recipient", reason="mailbox_full"), Action("count")),
    (ev("soft_bounce", final=True, scope="domain", reason="server_unreachable"), Action("count")),
    (ev("soft_bounce", final=False, scope="recipient", reason="mailbox_full"), IGNORE),
    (ev("soft_bounce", final=False, scope="unknown", reason="deferred"), IGNORE),
    (ev("soft_bounce", final=True, scope="sender", reason="sender_rejected"), IGNORE),
    (ev("soft_bounce", final=True, scope="content", reason="spam_rejected"), IGNORE),
    (ev("soft_bounce", final=True, scope="policy", reason="policy_rejected"), IGNORE),
    (ev("soft_bounce", final=True, scope="provider", reason="suppressed"), IGNORE),
    (ev("soft_bounce", final=True, scope="unknown", reason="other"), IGNORE),
    (ev("delivered", final=True, scope=None, reason=None), Action("clear")),
    # written before final/scope existed
    (ev("invalid", reason="bad_address"), Action("suppress", "invalid", "*")),
    (ev("invalid", reason="other"), Action("suppress", "invalid", "*")),
    (ev("invalid", reason=None), Action("suppress", "invalid", "*")),
    (ev("invalid", reason="blocklisted"), Action("suppress", "provider", "acct-1")),  # SendCloud 401, Tencent 1007
    (ev("invalid", reason="policy_rejected"), IGNORE),                                 # SendCloud 405/408
    (ev("invalid", reason="spam_rejected"), IGNORE),                                   # SendCloud 407
    (ev("soft_bounce", reason="mailbox_full"), IGNORE),
    (ev("complaint", reason=None), Action("suppress", "complaint", "acct-1")),
    (ev("unsubscribed", reason="unsubscribed"), Action("suppress", "unsubscribed", "acct-1")),
    (ev("delivered", reason=None), Action("clear")),
    # an old invalid with an explicit null scope reads like one without the field
    (ev("invalid", scope=None, reason="unknown_user"), Action("suppress", "invalid", "*")),
])
def test_decide(event, action):
    assert decide(event) == action


D0 = datetime(2030, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return D0 + timedelta(days=n)


@pytest.mark.parametrize(("bounces", "delivered", "verdict"), [
    ([], None, None),
    ([day(0), day(1)], None, None),                                  # two are not three
    ([day(0), day(1), day(2)], None, (day(2), day(32))),             # three within 15 days: 30 days from the third
    ([day(2), day(0), day(1)], None, (day(2), day(32))),             # any order
    ([day(0), day(15), day(7)], None, (day(15), day(45))),           # exactly 15 days apart still counts
    ([day(0), day(15.5), day(7)], None, None),                       # a day more does not
    ([day(0), day(10), day(20), day(30)], None, None),               # spread out: never three in a window
    ([day(0), day(1), day(2), day(40)], None, (day(2), day(32))),    # a later lone bounce keeps the old window
    ([day(0), day(1), day(2), day(40), day(41), day(42)], None, (day(42), day(72))),
    ([day(0), day(1), day(3)], day(2), None),                        # a delivery in between resets
    ([day(0), day(3), day(4), day(5)], day(2), (day(5), day(35))),   # ... three after it count again
    ([day(0), day(1), day(2)], day(2), None),                        # a delivery at the last bounce's time clears
])
def test_soft_verdict(bounces, delivered, verdict):
    assert soft_verdict(bounces, delivered, Recipe()) == verdict


def test_soft_verdict_other_recipe():
    recipe = Recipe(threshold=2, window=timedelta(days=1), suppress_for=timedelta(days=7))
    assert soft_verdict([day(0), day(0.5)], None, recipe) == (day(0.5), day(7.5))
    assert soft_verdict([day(0), day(1.5)], None, recipe) is None
