"""Kafka security settings (kafka.security): SASL and TLS reach aiokafka as it takes them (a TLS
*context*, built with aiokafka's create_ssl_context), and a bad file or PEM is a configuration
problem that check-config reports, never a crash of a running worker."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import ROOT
from worker.config import parse_config
from worker.errors import ConfigError
from worker.kafka_tls import client_kwargs, tls_problems


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throwaway CA, and a client certificate with a plain and an encrypted key (openssl)."""
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=esw")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "client.pem", "-days", "2")
    run("pkey", "-in", "client.key", "-aes256", "-passout", "pass:key-secret", "-out", "client-enc.key")
    (d / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    return d


def config(security: dict, env: dict | None = None):
    return parse_config({"kafka": {"bootstrap_servers": "k:9093", "security": security}, "accounts": []}, env or {})


def test_mutual_tls_with_an_encrypted_key_becomes_a_context(pki):
    kafka = config({"security_protocol": "SSL", "ssl_cafile": str(pki / "ca.pem"),
                    "ssl_certfile": str(pki / "client.pem"), "ssl_keyfile": str(pki / "client-enc.key"),
                    "ssl_key_password_env": "KEY_PW"}, {"KEY_PW": "key-secret"}).kafka
    assert tls_problems(kafka) == []
    kwargs = client_kwargs(kafka)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {"bootstrap_servers": "k:9093", "security_protocol": "SSL"}   # no file paths for aiokafka


def test_sasl_ssl_scram_passes_its_settings_and_the_password(pki):
    kafka = config({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "esw",
                    "sasl_plain_password_env": "PW", "ssl_cafile": str(pki / "ca.pem")}, {"PW": "sasl-secret"}).kafka
    kwargs = client_kwargs(kafka)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {"bootstrap_servers": "k:9093", "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "esw", "sasl_plain_password": "sasl-secret"}
    assert "sasl-secret" not in repr(kafka)


def test_sasl_ssl_without_a_ca_file_uses_the_system_cas():
    kafka = config({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
                    "sasl_plain_password_env": "PW"}, {"PW": "p"}).kafka
    assert tls_problems(kafka) == [] and isinstance(client_kwargs(kafka)["ssl_context"], ssl.SSLContext)


def test_every_structural_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as refused:
        config({"security_protocol": "SASL_SSL", "ssl_certfile": "/x/c.pem"})
    assert refused.value.problems == [
        "kafka.security.sasl_mechanism: SASL_SSL needs it",
        "kafka.security.sasl_plain_username: SASL_SSL needs it",
        "kafka.security.sasl_plain_password_env: SASL_SSL needs it, or kafka.security.sasl_plain_password_file",
        "kafka.security: mutual TLS needs both ssl_certfile and ssl_keyfile",
    ]
    with pytest.raises(ConfigError) as refused:
        config({"security_protocol": "PLAINTEXT", "ssl_cafile": "/x/ca.pem"})
    assert refused.value.problems == [
        "kafka.security.security_protocol: PLAINTEXT, but ssl_cafile set (use SSL or SASL_SSL for TLS)"]


def test_each_tls_file_that_cannot_be_read_is_named_on_its_own_line(pki):
    """(config/format audit finding 8: one line listed every path and the first error only.)"""
    kafka = config({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem",
                    "ssl_certfile": str(pki / "client.pem"), "ssl_keyfile": "/nonexistent/client.key"}).kafka
    assert tls_problems(kafka) == [
        "kafka.security.ssl_cafile: cannot read /nonexistent/ca.pem: No such file or directory",
        "kafka.security.ssl_keyfile: cannot read /nonexistent/client.key: No such file or directory",
    ]


def test_an_encrypted_key_without_its_password_says_what_to_look_at(pki):
    kafka = config({"security_protocol": "SSL", "ssl_cafile": str(pki / "ca.pem"),
                    "ssl_certfile": str(pki / "client.pem"), "ssl_keyfile": str(pki / "client-enc.key")}).kafka
    [problem] = tls_problems(kafka)
    assert "ssl_key_password is missing or wrong" in problem


@pytest.mark.parametrize(("files", "reason"), [
    ({"ssl_cafile": "broken.pem"}, ""),
    ({"ssl_cafile": "ca.pem", "ssl_certfile": "client.pem", "ssl_keyfile": "client-enc.key"}, ""),  # no password
])
def test_a_bad_tls_file_is_a_problem_naming_the_file(pki, files, reason):
    files = {k: v if v.startswith("/") else str(pki / v) for k, v in files.items()}
    kafka = config({"security_protocol": "SSL", **files}).kafka
    [problem] = tls_problems(kafka)
    assert problem.startswith("kafka.security: cannot load the TLS files (") and reason in problem
    assert all(path in problem for path in files.values())


def test_check_config_reports_a_bad_pem_and_exits_2(pki, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9093", "security": {
        "security_protocol": "SSL", "ssl_cafile": str(pki / "broken.pem")}}, "accounts": []}))
    proc = subprocess.run([sys.executable, "-m", "worker", "check-config", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot load the TLS files (ssl_cafile=" in proc.stderr and "broken.pem" in proc.stderr


def _check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """check-config as a container runs it: no terminal (a session of its own), nothing on stdin."""
    import os
    return subprocess.run([sys.executable, "-m", "worker", "check-config", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          start_new_session=True, env={**os.environ, **(env or {})})


def test_an_encrypted_key_without_a_password_is_a_problem_never_a_passphrase_prompt(pki, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9093", "security": {
        "security_protocol": "SSL", "ssl_cafile": str(pki / "ca.pem"), "ssl_certfile": str(pki / "client.pem"),
        "ssl_keyfile": str(pki / "client-enc.key")}}, "accounts": []}))
    proc = _check_config(path)
    assert proc.returncode == 2
    assert "pass phrase" not in (proc.stdout + proc.stderr).lower()      # OpenSSL did not ask anyone
    assert proc.stderr.splitlines()[1].startswith("  kafka.security: cannot load the TLS files (ssl_cafile=")


def test_an_unset_key_password_is_named_alone_not_as_a_tls_file_problem(pki, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9093", "security": {
        "security_protocol": "SSL", "ssl_cafile": str(pki / "ca.pem"), "ssl_certfile": str(pki / "client.pem"),
        "ssl_keyfile": str(pki / "client-enc.key"), "ssl_key_password_env": "ESW_TEST_UNSET_PW"}},
        "accounts": []}))
    proc = _check_config(path, {"ESW_TEST_UNSET_PW": ""})
    assert proc.returncode == 2
    assert "pass phrase" not in (proc.stdout + proc.stderr).lower()
    assert proc.stderr.splitlines()[1:] == [
        "  kafka.security.ssl_key_password_env: environment variable ESW_TEST_UNSET_PW is not set or empty"]
