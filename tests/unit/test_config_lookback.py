"""`poll.lookback_days` against the days a provider answers for (polling audit of 2026-12-06): the
sweeps cover today and `lookback_days` dates before it, so 30 asked Tencent for a date 30 days
back, which it refuses (`FailedOperation.NotSupportDate`, a bad_request every sweep of that date,
EswPollFatalConfig firing for good). Every provider answers for 30 days: at most 29."""

from __future__ import annotations

import pytest

from tests.integration.harness import worker_config
from worker.config import ConfigError, parse_config

ENV = {"K": "k"}
CREDENTIALS = {"sendcloud": {"api_user": "u", "api_key_env": "K"},
               "tencent_ses": {"secret_id": "AKID", "secret_key_env": "K"},
               "engagelab": {"api_user": "u", "api_key_env": "K"}}


def config(provider: str, lookback: int):
    account = {"name": "a", "provider": provider, "credentials": CREDENTIALS[provider],
               "webhook": {"enabled": False}, "poll": {"lookback_days": lookback}}
    return parse_config(worker_config("127.0.0.1:9", "p", [account]), ENV)


@pytest.mark.parametrize("provider", sorted(CREDENTIALS))
def test_29_days_back_is_the_most(provider):
    assert config(provider, 29).accounts[0].poll.lookback_days == 29
    with pytest.raises(ConfigError) as err:
        config(provider, 30)
    assert err.value.problems == [
        f"accounts[0].poll.lookback_days: the sweeps cover today and the 30 send dates before it, and {provider} "
        "answers for 30 days only (today and 29 before): at most 29"]
