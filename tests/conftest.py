"""Session fixtures: a real Kafka broker (or KAFKA_BOOTSTRAP_SERVERS), unique topics per test."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _kafka_script():
    spec = importlib.util.spec_from_file_location("esw_kafka_script", ROOT / "scripts" / "kafka.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """A broker for the whole session: the one named by KAFKA_BOOTSTRAP_SERVERS, or our own."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    script = _kafka_script()
    state = tmp_path_factory.mktemp("kafka")
    try:
        bootstrap = script.up(state)
    except SystemExit as exc:  # the script reports failures by exiting; make it a test error
        raise RuntimeError(f"could not start Kafka: {exc}") from None
    yield bootstrap
    script.down(state)


@pytest.fixture
def topic_prefix() -> str:
    """Each test gets its own topics."""
    return f"t{uuid.uuid4().hex[:12]}"
