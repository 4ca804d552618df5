"""Config loading: a valid file, and each kind of problem, all reported at once, no secret leaked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from worker.__main__ import main
from worker.config import load_config, parse_config
from worker.errors import ConfigError
from worker.model import EventType, Provider

SECRET = "s3cr3t-VALUE-never-printed"

VALID = textwrap.dedent("""
    kafka:
      bootstrap_servers: "kafka:9092"
      topic_prefix: "email.status"
      shards: 12
    http: {port: 8080}
    emit_raw: false
    inputs: {sent_topic: "mail.sent"}
    accounts:
      - name: cn-main
        provider: sendcloud
        credentials: {api_user: "my_user", api_key_env: SENDCLOUD_API_KEY}
        webhook: {enabled: true, app_key_env: SENDCLOUD_APP_KEY}
        poll: {enabled: true, quota_per_minute: 3000, quota_share: 0.8, lookback_days: 3}
      - name: intl
        provider: aurora_sendcloud
        base_url: "https://api-us.aurorasendcloud.com"
        credentials: {api_user: "u2", api_key_file: "{keyfile}"}
        webhook: {app_key_env: AURORA_APP_KEY, previous_app_key_env: AURORA_OLD_KEY}
        sender_rejection: soft_bounce
      - name: el
        provider: engagelab
        credentials: {api_user: "u3", api_key_env: EL_KEY}
        webhook: {app_key_env: EL_APP}
      - name: uni
        provider: unisender
        credentials: {api_key_env: UNI_KEY}
      - name: tx
        provider: tencent_ses
        region: ap-singapore
        credentials: {secret_id: "AKIDEXAMPLE", secret_key_env: TC_KEY}
        webhook: {path_token_env: TC_TOKEN}
""")

ENV = {"SENDCLOUD_API_KEY": SECRET, "SENDCLOUD_APP_KEY": "appkey", "AURORA_APP_KEY": "new", "AURORA_OLD_KEY": "old",
       "EL_KEY": "k", "EL_APP": "a", "UNI_KEY": "unikey", "TC_KEY": "tckey", "TC_TOKEN": "0123456789abcdef0123"}


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "aurora.key"
    path.write_text("filekey\n")
    return path


def _data(keyfile: Path) -> dict:
    return yaml.safe_load(VALID.replace("{keyfile}", str(keyfile)))


def _problems(data, env=ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env)
    return info.value.problems


def test_valid_config_parses_with_defaults_and_resolved_secrets(keyfile):
    config = parse_config(_data(keyfile), ENV)
    assert config.kafka.shards == 12 and config.kafka.topic_prefix == "email.status"
    assert config.sent_topic == "mail.sent"
    cn = config.account("sendcloud", "cn-main")
    assert cn.context.api_key == SECRET and cn.context.webhook_keys == ("appkey",)
    assert cn.poll.calls_per_second == pytest.approx(40.0)
    assert cn.poll.cache_ttl_secs == 600 and cn.poll.interval_min_secs == 600
    intl = config.account(Provider.AURORA_SENDCLOUD, "intl")
    assert intl.context.api_key == "filekey"
    assert intl.context.webhook_keys == ("new", "old")
    assert intl.context.base_url == "https://api-us.aurorasendcloud.com"
    assert intl.context.sender_rejection is EventType.SOFT_BOUNCE
    el = config.account("engagelab", "el")
    assert el.poll.quota_per_minute == 60  # the provider's documented quota
    uni = config.account("unisender", "uni")
    assert uni.context.webhook_keys == ("unikey",)  # UniSender signs with the API key
    tx = config.account("tencent_ses", "tx")
    assert tx.context.secret_id == "AKIDEXAMPLE" and tx.context.secret_key == "tckey"
    assert tx.webhook.path_tokens == (ENV["TC_TOKEN"],)
    assert tx.context.region == "ap-singapore"


def test_secrets_never_appear_in_reprs(keyfile):
    config = parse_config(_data(keyfile), ENV)
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.account("sendcloud", "cn-main").context)


def test_bootstrap_servers_env_overrides_the_file(keyfile):
    config = parse_config(_data(keyfile), {**ENV, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1234"})
    assert config.kafka.bootstrap_servers == "127.0.0.1:1234"


def test_schema_problems_are_all_reported_with_key_paths(keyfile):
    data = _data(keyfile)
    data["kafka"]["shards"] = 0
    data["kafka"]["bogus"] = 1
    data["http"]["port"] = "eighty"
    data["accounts"][0]["provider"] = "mailgun"
    data["accounts"][1]["poll"] = {"quota_share": 1.5}
    del data["accounts"][2]["name"]
    problems = _problems(data)
    joined = "\n".join(problems)
    for expected in ("kafka.shards: violates minimum 1", "kafka: unknown key(s) bogus", "http.port: must be of type integer",
                     "accounts[0].provider: must be one of", "accounts[1].poll.quota_share: violates maximum 1",
                     "accounts[2]: missing required key(s) name"):
        assert expected in joined, joined
    assert len(problems) == 6


def test_an_inline_secret_is_refused_without_echoing_it(keyfile):
    data = _data(keyfile)
    data["accounts"][0]["credentials"]["api_key"] = SECRET
    problems = _problems(data)
    assert problems == ["accounts[0].credentials: unknown key(s) api_key "
                        "(secrets are given as <name>_env or <name>_file, never inline)"]
    assert SECRET not in str(problems)


def test_semantic_problems_are_all_reported(keyfile, tmp_path):
    data = _data(keyfile)
    data["accounts"][1]["name"] = "cn-main"                                        # duplicate
    data["accounts"][1]["credentials"]["api_key_file"] = str(tmp_path / "absent")   # unreadable
    data["accounts"][2]["credentials"]["api_key_file"] = "/x"                        # both env and file
    data["accounts"][3]["options"] = {"nonsense": "1"}                              # unknown option
    data["accounts"][4]["webhook"] = {"enabled": True}                              # tencent without token
    data["accounts"][0]["poll"]["interval_min_secs"] = 30                          # below the 600 s cache
    data["accounts"][0]["poll"]["lookback_days"] = 30
    data["accounts"][0]["poll"]["interval_max_secs"] = 10                          # below the minimum
    env = {k: v for k, v in ENV.items() if k != "UNI_KEY"}                          # unset variable
    problems = _problems(data, env)
    joined = "\n".join(problems)
    for expected in (
        "accounts[1].name: 'cn-main' is already used by accounts[0]",
        f"accounts[1].credentials.api_key_file: cannot read {tmp_path / 'absent'}",
        "accounts[2].credentials: give api_key_env or api_key_file, not both",
        "accounts[3].options.nonsense: unknown option for unisender",
        "accounts[3].credentials.api_key_env: environment variable UNI_KEY is not set or empty",
        "accounts[4]: tencent_ses needs webhook.path_token_env or path_token_file",
        "accounts[0].poll.interval_min_secs: below the provider's cache TTL (600 s)",
        "accounts[0].poll.interval_max_secs: smaller than interval_min_secs",
    ):
        assert expected in joined, joined


def test_missing_credentials_are_named_per_provider():
    data = {"kafka": {"bootstrap_servers": "k:9092"}, "accounts": [
        {"name": "a", "provider": "sendcloud"},
        {"name": "b", "provider": "tencent_ses", "webhook": {"enabled": False}},
        {"name": "c", "provider": "unisender"},
        {"name": "d", "provider": "engagelab", "poll": {"enabled": False}, "webhook": {"enabled": False}},
    ]}
    joined = "\n".join(_problems(data, {}))
    assert "accounts[0]: sendcloud needs credentials.api_user (for polling)" in joined
    assert "accounts[0]: sendcloud needs credentials.api_key_env or api_key_file (for polling)" in joined
    assert "accounts[0]: sendcloud needs webhook.app_key_env or app_key_file (to verify webhooks)" in joined
    assert "accounts[1]: tencent_ses needs credentials.secret_key_env or secret_key_file (for polling)" in joined
    assert "accounts[2]: unisender needs credentials.api_key_env or api_key_file" in joined
    assert "accounts[3]" not in joined  # nothing enabled, nothing needed


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kafka:\n  bootstrap_servers: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "line" in info.value.problems[0] and "not valid YAML" in info.value.problems[0]


def test_check_config_cli_exit_codes_and_never_prints_secrets(tmp_path, keyfile, monkeypatch, capsys):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    good = tmp_path / "good.yaml"
    good.write_text(VALID.replace("{keyfile}", str(keyfile)))
    assert main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr()
    assert "OK (1 aurora_sendcloud, 1 engagelab, 1 sendcloud, 1 tencent_ses, 1 unisender" in out.out

    bad_data = _data(keyfile)
    bad_data["accounts"][0]["credentials"]["api_key"] = SECRET
    bad_data["kafka"]["shards"] = -3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_data))
    assert main(["check-config", "--config", str(bad)]) == 2
    out = capsys.readouterr()
    assert "2 problem(s)" in out.err
    assert "kafka.shards" in out.err and "accounts[0].credentials" in out.err
    assert SECRET not in out.err + out.out


def test_schema_resolving_and_tls_problems_are_reported_together(tmp_path, monkeypatch, capsys):
    """A file with problems of every stage names them all in one run: the schema's, the resolving
    ones of the parts the schema found sound, and the TLS files' (DESIGN 7a: every problem at once).
    An account the schema refused is left out of the later checks; the others keep their index."""
    for name in ("UNSET_A", "UNSET_B", "UNSET_C"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "mixed.yaml"
    path.write_text(textwrap.dedent(f"""
        kafka:
          bootstrap_servers: "127.0.0.1:9092"
          shards: 0
          security: {{security_protocol: SSL, ssl_cafile: "{tmp_path / 'no-ca.pem'}"}}
        http: {{bogus: 1}}
        accounts:
          - name: a
            provider: sendcloud
            credentials: {{api_user: u, api_key_env: UNSET_A}}
            webhook: {{app_key_env: UNSET_B}}
          - name: b
            provider: nosuch
            credentials: {{api_key_env: UNSET_C}}
          - name: a
            provider: engagelab
            credentials: {{api_user: u, api_key_env: UNSET_C}}
            webhook: {{enabled: false}}
    """))
    assert main(["check-config", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"{path}: 8 problem(s)",
        "  accounts[1].provider: must be one of engagelab, sendcloud, aurora_sendcloud, unisender, tencent_ses",
        "  http: unknown key(s) bogus",
        "  kafka.shards: violates minimum 1",
        "  accounts[0].credentials.api_key_env: environment variable UNSET_A is not set or empty",
        "  accounts[0].webhook.app_key_env: environment variable UNSET_B is not set or empty",
        "  accounts[2].name: 'a' is already used by accounts[0]",
        "  accounts[2].credentials.api_key_env: environment variable UNSET_C is not set or empty",
        f"  kafka.security.ssl_cafile: cannot read {tmp_path / 'no-ca.pem'}: No such file or directory",
    ]


@pytest.mark.parametrize(("data", "problems"), [
    ({"accounts": [{"name": "a", "provider": "unisender", "credentials": {"api_key_env": "NOPE"}}]},
     ["(top level): missing required key(s) kafka",
      "accounts[0].credentials.api_key_env: environment variable NOPE is not set or empty"]),
    ({"kafka": "k:9092", "accounts": [{"name": "a", "provider": "unisender", "credentials": {"api_key_env": "NOPE"}}]},
     ["kafka: must be of type object",
      "accounts[0].credentials.api_key_env: environment variable NOPE is not set or empty"]),
    ({"kafka": {"bootstrap_servers": "k:9092"}, "accounts": "all"}, ["accounts: must be of type array"]),
    (["kafka"], ["(top level): must be of type object"]),
    (None, ["(top level): the file is empty (it must hold the configuration's mapping)"]),
], ids=["no-kafka", "kafka-not-a-map", "accounts-not-a-list", "a-list", "empty-file"])
def test_a_broken_shape_still_lets_the_sound_parts_be_checked(data, problems):
    assert _problems(data, {}) == problems


def _uni(**account) -> dict:
    return {"kafka": {"bootstrap_servers": "k:9092"}, "accounts": [{"name": "u", "provider": "unisender", **account}]}


UNI_HOOK_NEEDS = ("accounts[0]: unisender needs credentials.api_key_env or api_key_file, or webhook.app_key_env or "
                  "app_key_file (to verify webhooks)")


@pytest.mark.parametrize(("account", "problems"), [
    ({"poll": {"enabled": False}, "webhook": {"enabled": False}}, []),                       # nothing on: nothing needed
    ({"poll": {"enabled": False}, "webhook": {"app_key_env": "UNI_HOOK"}}, []),              # webhooks signed with it
    ({"poll": {"enabled": False}, "credentials": {"api_key_env": "UNI_API"}}, []),           # ... or with the API key
    ({"poll": {"enabled": False}}, [UNI_HOOK_NEEDS]),
    ({"webhook": {"app_key_env": "UNI_HOOK"}},
     ["accounts[0]: unisender needs credentials.api_key_env or api_key_file (for polling)"]),
    ({}, ["accounts[0]: unisender needs credentials.api_key_env or api_key_file (for polling)", UNI_HOOK_NEEDS]),
], ids=["all-off", "hook-key", "api-key-signs", "hook-without-key", "poll-without-key", "none"])
def test_unisender_needs_its_api_key_for_polling_and_a_key_for_webhooks(account, problems):
    env = {"UNI_HOOK": "hook-key", "UNI_API": "api-key"}
    if problems:
        assert _problems(_uni(**account), env) == problems
    else:
        [acct] = parse_config(_uni(**account), env).accounts
        assert acct.context.webhook_keys == (("hook-key",) if "UNI_HOOK" in str(account) else
                                             ("api-key",) if "UNI_API" in str(account) else ())


def _off(**account) -> dict:
    return {"name": "a", "provider": "sendcloud", "poll": {"enabled": False}, "webhook": {"enabled": False}, **account}


@pytest.mark.parametrize(("data", "problems"), [
    # a missing key is filled in, not the section around it dropped: kafka.shards 20 still counts
    ({"kafka": {"shards": 20}, "accounts": [_off(spread=15)]}, ["kafka: missing required key(s) bootstrap_servers"]),
    ({"kafka": {"shards": 4}, "accounts": [_off(spread=8)]},
     ["kafka: missing required key(s) bootstrap_servers", "accounts[0].spread: 8 is more than kafka.shards (4)"]),
    ({"kafka": {"security": {"security_protocol": "SASL_SSL"}}, "accounts": []},
     ["kafka: missing required key(s) bootstrap_servers", "kafka.security.sasl_mechanism: SASL_SSL needs it",
      "kafka.security.sasl_plain_username: SASL_SSL needs it",
      "kafka.security.sasl_plain_password_env: SASL_SSL needs it, or kafka.security.sasl_plain_password_file"]),
    # a refused value is not checked again with its default in its place
    ({"kafka": {"bootstrap_servers": "k:1", "shards": 2000}, "accounts": [_off(spread=20)]},
     ["kafka.shards: violates maximum 1000"]),
    ({"kafka": {"bootstrap_servers": "k:1"}, "inputs": {"sent_topic": 5},
      "accounts": [_off(credentials={"api_user": "u", "api_key_env": "X"}, poll={"gap_driven": True})]},
     ["inputs.sent_topic: must be of type ['string', 'null']"]),
    # an account with a problem of its own is left out whole: its typo does not turn into another problem
    ({"kafka": {"bootstrap_servers": "k:1"}, "accounts": [{"name": "a", "provider": "sendcloud",
                                                           "webhok": {"enabled": False}, "poll": {"enabled": False}}]},
     ["accounts[0]: unknown key(s) webhok"]),
    # keys YAML reads as numbers or null, a NUL byte in a path: problems, not crashes
    ({"kafka": {1: "x", "y": "z", "bootstrap_servers": "k:1"}, "accounts": []}, ["kafka: unknown key(s) 1, y"]),
    ({None: 1, "kafka": {"bootstrap_servers": "k:1"}, "accounts": []}, ["(top level): unknown key(s) None"]),
    ({"kafka": {"bootstrap_servers": "k:1"}, "accounts": [_off(credentials={"api_user": "u", "api_key_file": "/tmp/a\x00b"},
                                                               poll={"enabled": True})]},
     ["accounts[0].credentials.api_key_file: cannot read '/tmp/a\\x00b': not a path to a UTF-8 file"]),
], ids=["missing-bootstrap-keeps-shards", "missing-bootstrap-spread-too-wide", "missing-bootstrap-keeps-security",
        "refused-shards", "refused-sent-topic", "account-typo", "number-key", "null-key", "nul-in-path"])
def test_what_the_schema_refused_is_named_once_and_nothing_is_made_up(data, problems):
    assert _problems(data, {"X": "x"}) == problems


def test_a_secret_file_that_never_ends_or_is_too_large_is_a_problem_not_a_hang(tmp_path):
    big = tmp_path / "key.log"
    big.write_bytes(b"k" * (64 * 1024 + 1))
    fits = tmp_path / "key"
    fits.write_bytes(b"k" * (64 * 1024 - 1) + b"\n")
    data = {"kafka": {"bootstrap_servers": "k:1"},
            "accounts": [_off(name="a", credentials={"api_user": "u", "api_key_file": "/dev/zero"}, poll={"enabled": True}),
                         _off(name="b", credentials={"api_user": "u", "api_key_file": str(big)}, poll={"enabled": True}),
                         _off(name="c", credentials={"api_user": "u", "api_key_file": str(fits)}, poll={"enabled": True})]}
    assert _problems(data, {}) == [
        "accounts[0].credentials.api_key_file: /dev/zero is larger than 64 KiB: not a secret's file",
        f"accounts[1].credentials.api_key_file: {big} is larger than 64 KiB: not a secret's file",
    ]


def test_a_config_file_that_never_ends_is_refused_in_one_line(capsys):
    assert main(["check-config", "--config", "/dev/zero"]) == 2
    assert capsys.readouterr().err.splitlines() == ["/dev/zero: 1 problem(s)",
                                                    "  /dev/zero: cannot read: larger than 4 MiB, not a config file"]


def test_keys_a_provider_never_reads_are_notices_not_problems(capsys, tmp_path, monkeypatch):
    data = {"kafka": {"bootstrap_servers": "k:1"}, "accounts": [
        _off(name="sc", provider="sendcloud", region="ap-guangzhou",
             credentials={"api_user": "u", "api_key_env": "X", "secret_id": "AKID", "secret_key_env": "X"},
             webhook={"enabled": True, "app_key_env": "X", "path_token_env": "T"}),
        _off(name="tc", provider="tencent_ses", region="ap-guangzhou",
             credentials={"secret_id": "AKID", "secret_key_env": "X", "api_key_env": "X"},
             webhook={"enabled": True, "path_token_env": "T", "app_key_env": "X", "previous_app_key_env": "X"}),
        _off(name="uni", provider="unisender",
             credentials={"api_user": "u", "api_key_env": "X"}, webhook={"enabled": True, "app_key_env": "X"}),
        _off(name="el", provider="engagelab", credentials={"api_user": "u", "api_key_env": "X"},
             webhook={"enabled": True, "app_key_env": "X", "previous_app_key_env": "X"}),
    ]}
    env = {"X": "x" * 20, "T": "t" * 20}
    config = parse_config(data, env)
    assert config.notices == (
        "accounts[0].credentials.secret_id: sendcloud does not use it (ignored)",
        "accounts[0].credentials.secret_key_env: sendcloud does not use it (ignored)",
        "accounts[0].region: only tencent_ses uses it (ignored)",
        "accounts[1].credentials.api_key_env: tencent_ses does not use it (ignored)",
        "accounts[1].webhook.app_key_env: tencent_ses does not use it (ignored)",
        "accounts[1].webhook.previous_app_key_env: tencent_ses does not use it (ignored)",
        "accounts[2].credentials.api_user: unisender does not use it (ignored)",
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("WARNING: accounts")] == [f"WARNING: {n}" for n in config.notices]
    assert "x" * 20 not in "\n".join(err)
