"""Settings check-config let through and `run` could not use (config audit of 2026-12-06), each now
a problem with its key path, found in the same round as every other (worker.configchecks).
Expected messages written by hand."""

from __future__ import annotations

import pytest

from tests.integration.harness import worker_config
from worker.config import ConfigError, parse_config

ENV = {"K": "k"}
SENDCLOUD = {"name": "a", "provider": "sendcloud", "credentials": {"api_user": "u", "api_key_env": "K"},
             "webhook": {"enabled": False}}


def problems(accounts=(SENDCLOUD,), env=ENV, bootstrap="127.0.0.1:9092", **sections) -> list[str]:
    try:
        parse_config(worker_config(bootstrap, "p", list(accounts), **sections), env)
    except ConfigError as err:
        return err.problems
    return []


@pytest.mark.parametrize("servers", ["kafka:abc", "kafka:", "127.0.0.1:99999", "::: ,,", "kafka", "kafka:0",
                                     "kafka:9092,", "a b:9092", "kafka:９０９２"])
def test_a_bootstrap_address_that_is_not_host_port(servers):
    [problem] = problems(bootstrap=servers)
    assert problem.startswith("kafka.bootstrap_servers: ")
    assert problem.endswith(" is not host:port (a host name or IP address, a colon, a port from 1 to 65535)")


@pytest.mark.parametrize("servers", ["kafka:9092", "k1:9092,k2:9093, k3:1", "127.0.0.1:65535", "[::1]:9092",
                                     "my-kafka.ns.svc.cluster.local:9094"])
def test_good_bootstrap_addresses(servers):
    assert problems(bootstrap=servers) == []


def test_the_environments_override_is_named_as_such():
    assert problems(env={**ENV, "KAFKA_BOOTSTRAP_SERVERS": "kafka:abc"}) == [
        "KAFKA_BOOTSTRAP_SERVERS: 'kafka:abc' is not host:port (a host name or IP address, a colon, a port from 1 "
        "to 65535)"]


@pytest.mark.parametrize("key", ["replication_factor", "output_partitions"])
def test_zero_is_not_a_count(key):
    assert problems(kafka={key: 0}) == [f"kafka.{key}: 0 is not a count: -1 (the broker's default) or at least 1"]
    assert problems(kafka={key: -1}) == problems(kafka={key: 1}) == []


@pytest.mark.parametrize(("host", "bad"), [("not a host!", True), ("0.0.0.0", False), ("::", False), ("", False),
                                           ("worker.local", False)])
def test_the_listening_host(host, bad):
    assert problems(http={"host": host}) == ([f"http.host: {host!r} is not a host name or IP address"] if bad else [])


@pytest.mark.parametrize(("topic", "bad"), [("a b/c", True), ("", True), ("..", True), ("x" * 250, True),
                                            ("mail.sent-v1_x", False), ("x" * 249, False)])
def test_the_sent_topic_is_a_kafka_topic_name(topic, bad):
    expected = [f"inputs.sent_topic: {topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"]
    assert problems(inputs={"sent_topic": topic}) == (expected if bad else [])


@pytest.mark.parametrize(("url", "problem"), [
    ("http://", "is not an http(s) URL with a host"),
    ("https://", "is not an http(s) URL with a host"),
    ("http:// bad host", "is not an http(s) URL with a host"),
    ("http://x y", "is not an http(s) URL with a host"),
    ("http://x:99999", "has a port that is not a number from 0 to 65535"),
    ("http://[::1", "is not an http(s) URL with a host"),        # urlsplit raised: a traceback (review)
])
def test_a_base_url_needs_a_host(url, problem):
    assert problems(accounts=[{**SENDCLOUD, "base_url": url}]) == [f"accounts[0].base_url: {url!r} {problem}"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000", "https://api.sendcloud.net/apiv2/", "http://[::1]:80/x"])
def test_good_base_urls(url):
    assert problems(accounts=[{**SENDCLOUD, "base_url": url}]) == []


def test_every_problem_at_once():
    assert len(problems(bootstrap="kafka:abc", kafka={"output_partitions": 0}, http={"host": "not a host!"},
                        inputs={"sent_topic": "a b"}, accounts=[{**SENDCLOUD, "base_url": "http://"}])) == 5


def test_a_missing_key_is_one_line():
    with pytest.raises(ConfigError) as err:
        parse_config({}, ENV)
    assert err.value.problems.count("(top level): missing required key(s) kafka, accounts") == 1
