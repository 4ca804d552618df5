"""Configuration problems the config/format audit of 2026-12-06 found passing or reported one round
at a time, each through `check-config` (exit 2 and every problem in one run, docs/configuration.md):
a float where a count belongs (`kafka.shards: 3.0` passed and `run` failed inside aiokafka), NaN and
infinity, a key given twice, a file that is not UTF-8 (a traceback, exit 1), the checks across
accounts skipped for an account with another problem, and the TLS files not looked for while
`kafka.security` had a problem of its own."""

from __future__ import annotations

import textwrap

import pytest

from worker.__main__ import main


@pytest.fixture
def check(tmp_path, capsys, monkeypatch):
    for name in ("UNSET_A", "UNSET_B"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SET_K", "k")

    def run(text: str | bytes) -> tuple[int, list[str], str]:
        path = tmp_path / "c.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text))
        code = main(["check-config", "--config", str(path)])
        err = capsys.readouterr().err
        return code, [line.strip() for line in err.splitlines()[1:]], str(path)

    return run


def test_a_float_count_and_non_finite_numbers_are_refused(check):
    code, problems, _ = check("""
        kafka: {bootstrap_servers: "k:9092", shards: 3.0, produce_timeout_secs: .nan}
        http: {ack_timeout_secs: .inf}
        accounts:
          - {name: a, provider: sendcloud, credentials: {api_user: u, api_key_env: SET_K},
             webhook: {enabled: false}, poll: {quota_share: -.inf, max_in_flight: 8.0, interval_min_secs: 600.5}}
    """)
    assert code == 2
    assert problems == [
        "accounts[0].poll.max_in_flight: must be a whole number written without a decimal point",
        "accounts[0].poll.quota_share: must be a finite number (not .nan or .inf)",
        "http.ack_timeout_secs: must be a finite number (not .nan or .inf)",
        "kafka.produce_timeout_secs: must be a finite number (not .nan or .inf)",
        "kafka.shards: must be a whole number written without a decimal point",
    ]


def test_a_key_given_twice_is_a_problem_with_its_lines(check):
    code, problems, path = check("""
        kafka:
          bootstrap_servers: "k:9092"
          shards: 3
          shards: 400000
        accounts: []
        kafka: {bootstrap_servers: "k:9092", shards: 12}
    """)
    assert code == 2
    assert problems == [
        f"{path}: line 5: key 'shards' is given twice in the same mapping (first on line 4); only one is read",
        f"{path}: line 7: key 'kafka' is given twice in the same mapping (first on line 2); only one is read",
    ]


def test_keys_a_merge_brings_may_be_overridden(check):
    code, problems, _ = check("""
        kafka: &k {bootstrap_servers: "k:9092", shards: 3}
        accounts:
          - name: a
            provider: sendcloud
            credentials: {api_user: u, api_key_env: SET_K}
            webhook: &off {enabled: false}
            poll: &p {<<: *off, enabled: true, interval_min_secs: 600}
          - name: b
            provider: sendcloud
            credentials: {api_user: u, api_key_env: SET_K}
            webhook: {<<: *off}
            poll: {<<: *p, interval_min_secs: 900}
    """)
    assert (code, problems) == (0, [])


@pytest.mark.parametrize("char", ["\x07", "\x00"])
def test_a_control_character_is_a_problem_not_a_traceback(check, char):
    code, problems, path = check(f'kafka: {{bootstrap_servers: "k:9092"}}\naccounts: []\nx: "{char}"\n')
    assert code == 2
    assert problems == [f"{path}: not valid YAML: unacceptable character #x{ord(char):04x}: special characters are "
                        'not allowed in "<unicode string>", position 54']


def test_a_count_too_large_for_a_float_is_refused_not_a_traceback(check):
    code, problems, _ = check(f"""
        kafka: {{bootstrap_servers: "k:9092", shards: 1{'0' * 400}}}
        accounts: []
    """)
    assert code == 2
    assert problems == ["kafka.shards: violates maximum 1000"]


@pytest.mark.parametrize("body", [b"kafka:\n  shards: 3\n\xff\xfe\n", "kafka: {shards: 3}\n".encode("utf-16")])
def test_a_file_that_is_not_utf8_is_a_problem_not_a_traceback(check, body):
    code, problems, path = check(body)
    assert code == 2
    assert len(problems) == 1 and problems[0].startswith(f"{path}: cannot read: not UTF-8 text (the byte at offset ")


def test_checks_across_accounts_run_for_an_account_with_other_problems(check):
    code, problems, _ = check("""
        kafka: {bootstrap_servers: "k:9092", shards: 4}
        accounts:
          - name: a
            provider: sendcloud
            credentials: {api_user: u, api_key_env: UNSET_A}
            webhook: {app_key_env: UNSET_B}
            poll: {gap_driven: true}
            spread: 20
    """)
    assert code == 2
    assert problems == [
        "accounts[0].credentials.api_key_env: environment variable UNSET_A is not set or empty",
        "accounts[0].webhook.app_key_env: environment variable UNSET_B is not set or empty",
        "accounts[0].poll.gap_driven: needs inputs.sent_topic (the sent emails are what it polls)",
        "accounts[0].spread: 20 is more than kafka.shards (4)",
    ]


def test_missing_tls_files_are_named_beside_a_security_problem(check, tmp_path):
    code, problems, _ = check(f"""
        kafka:
          bootstrap_servers: "k:9093"
          security:
            security_protocol: SASL_SSL
            sasl_mechanism: SCRAM-SHA-512
            sasl_plain_username: u
            ssl_cafile: {tmp_path}/ca.pem
            ssl_certfile: {tmp_path}/client.pem
            ssl_keyfile: {tmp_path}/client.key
        accounts: []
    """)
    assert code == 2
    assert problems == [
        "kafka.security.sasl_plain_password_env: SASL_SSL needs it, or kafka.security.sasl_plain_password_file",
        f"kafka.security.ssl_cafile: cannot read {tmp_path}/ca.pem: No such file or directory",
        f"kafka.security.ssl_certfile: cannot read {tmp_path}/client.pem: No such file or directory",
        f"kafka.security.ssl_keyfile: cannot read {tmp_path}/client.key: No such file or directory",
    ]


@pytest.mark.parametrize(("security", "expected"), [
    # a mechanism the schema refuses is not reported missing too
    ("{security_protocol: SASL_PLAINTEXT, sasl_mechanism: GSSAPI, sasl_plain_username: u, sasl_plain_password_env: SET_K}",
     ["kafka.security.sasl_mechanism: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"]),
    # nor a password file of another type
    ("{security_protocol: SASL_PLAINTEXT, sasl_mechanism: PLAIN, sasl_plain_username: u, sasl_plain_password_file: 7}",
     ["kafka.security.sasl_plain_password_file: must be of type string"]),
    # a protocol the schema refuses says nothing about the settings that go with another
    ("{security_protocol: sasl_ssl, sasl_mechanism: PLAIN, sasl_plain_username: u, ssl_cafile: /x/ca.pem}",
     ["kafka.security.security_protocol: must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"]),
    # SASL settings under a protocol without SASL were ignored
    ("{security_protocol: PLAINTEXT, sasl_mechanism: PLAIN, sasl_plain_username: u}",
     ["kafka.security.security_protocol: PLAINTEXT, but sasl_mechanism, sasl_plain_username set "
      "(use SASL_PLAINTEXT or SASL_SSL for SASL, or remove them)"]),
])
def test_a_security_problem_is_named_once_by_its_key(check, security, expected):
    code, problems, _ = check(f"""
        kafka: {{bootstrap_servers: "k:9093", security: {security}}}
        accounts: []
    """)
    assert (code, problems) == (2, expected)


def test_a_yaml_boolean_where_a_name_belongs_gets_a_hint(check):
    code, problems, _ = check("""
        kafka: {bootstrap_servers: "k:9092"}
        accounts:
          - {name: off, provider: sendcloud, credentials: {api_user: u, api_key_env: SET_K}, webhook: {enabled: false}}
    """)
    assert code == 2
    assert problems == ["accounts[0].name: must be of type string (YAML reads a bare on, off, yes, no, true or false "
                        "as a boolean: quote it)"]


def test_a_short_path_token_is_named_by_its_key(check, monkeypatch):
    monkeypatch.setenv("SHORT", "abc")
    monkeypatch.setenv("LONG", "a-path-token-long-enough-0123")
    code, problems, _ = check("""
        kafka: {bootstrap_servers: "k:9092"}
        accounts:
          - name: tx
            provider: tencent_ses
            credentials: {secret_id: AKID, secret_key_env: SET_K}
            webhook: {path_token_env: LONG, previous_path_token_env: SHORT}
    """)
    assert code == 2
    assert problems == ["accounts[0].webhook.previous_path_token_env: a path token must be at least 16 characters"]


def test_tls_files_that_exist_are_not_loaded_while_the_security_section_has_a_problem(check, tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    code, problems, _ = check(f"""
        kafka:
          bootstrap_servers: "k:9093"
          security: {{security_protocol: SASL_SSL, sasl_mechanism: PLAIN, sasl_plain_username: u,
                     ssl_cafile: {tmp_path}/ca.pem}}
        accounts: []
    """)
    assert code == 2
    assert problems == ["kafka.security.sasl_plain_password_env: SASL_SSL needs it, "
                        "or kafka.security.sasl_plain_password_file"]
    code, problems, _ = check(f"""
        kafka:
          bootstrap_servers: "k:9093"
          security: {{security_protocol: SSL, ssl_cafile: {tmp_path}/ca.pem}}
        accounts: []
    """)
    assert code == 2 and len(problems) == 1
    assert problems[0].startswith(f"kafka.security: cannot load the TLS files (ssl_cafile={tmp_path}/ca.pem): ")
