"""docs/configuration.md: "A section that is disabled (`poll.enabled: false`, `webhook.enabled: false`)
needs nothing": the secrets it names are not read, so an unset variable or a missing file there is
no problem (operator audit 2026-12-06: `webhook: {enabled: false, app_key_env: X}` failed with X unset)."""

from __future__ import annotations

import pytest

from tests.integration.harness import worker_config
from worker.config import ConfigError, parse_config


def config(account: dict) -> dict:
    return worker_config("127.0.0.1:9", "p", [account])


def test_a_disabled_webhook_section_does_not_need_its_variable() -> None:
    cfg = parse_config(config({"name": "sc", "provider": "sendcloud",
                               "credentials": {"api_user": "u", "api_key_env": "SC_KEY"},
                               "webhook": {"enabled": False, "app_key_env": "SC_APP_KEY_UNSET"}}), {"SC_KEY": "k"})
    (account,) = cfg.accounts
    assert account.webhook.enabled is False and account.context.webhook_keys == ()
    assert account.context.api_key == "k"


def test_a_disabled_poll_section_does_not_need_its_credentials() -> None:
    cfg = parse_config(config({"name": "tx", "provider": "tencent_ses", "poll": {"enabled": False},
                               "credentials": {"secret_id": "AKID", "secret_key_env": "TX_SECRET_UNSET"},
                               "webhook": {"path_token_env": "TX_TOKEN"}}),
                       {"TX_TOKEN": "a-path-token-of-32-characters-xx"})
    (account,) = cfg.accounts
    assert account.poll.enabled is False and account.context.secret_key is None
    assert account.webhook.path_tokens == ("a-path-token-of-32-characters-xx",)


def test_an_enabled_section_still_needs_its_variable_and_both_problems_are_named() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config({"name": "sc", "provider": "sendcloud",
                             "credentials": {"api_user": "u", "api_key_env": "SC_KEY_UNSET"},
                             "webhook": {"app_key_env": "SC_APP_KEY_UNSET"}}), {})
    text = str(err.value)
    assert "SC_KEY_UNSET" in text and "SC_APP_KEY_UNSET" in text


def test_unisender_webhooks_still_read_the_api_key_they_are_signed_with() -> None:
    # UniSender signs webhooks with the API key: with polling off, the key is still read (and needed)
    cfg = parse_config(config({"name": "uni", "provider": "unisender", "poll": {"enabled": False},
                               "credentials": {"api_key_env": "UNI_KEY"}}), {"UNI_KEY": "uni-secret"})
    (account,) = cfg.accounts
    assert account.context.webhook_keys == ("uni-secret",)
    with pytest.raises(ConfigError) as err:
        parse_config(config({"name": "uni", "provider": "unisender", "poll": {"enabled": False},
                             "credentials": {"api_key_env": "UNI_KEY"}}), {})
    assert "UNI_KEY" in str(err.value)


def test_a_disabled_poll_sections_credentials_are_still_used_when_set() -> None:
    # `backfill` polls an account whose polling is off: its credentials, when they are there, are read
    # (review 2026-12-06: a sendcloud account with poll off lost its api_user and api_key)
    cfg = parse_config(config({"name": "sc", "provider": "sendcloud", "poll": {"enabled": False},
                               "credentials": {"api_user": "u", "api_key_env": "SC_KEY"},
                               "webhook": {"app_key_env": "SC_APP"}}), {"SC_KEY": "k", "SC_APP": "a"})
    (account,) = cfg.accounts
    assert (account.context.api_user, account.context.api_key, account.context.webhook_keys) == ("u", "k", ("a",))


def test_a_disabled_section_still_refuses_a_secret_given_two_ways() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config({"name": "sc", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
                             "webhook": {"enabled": False, "app_key_env": "A", "app_key_file": "/nowhere"}}), {"K": "k"})
    assert "not both" in str(err.value)
