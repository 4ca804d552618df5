#!/usr/bin/env python3
"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, for development and tests.

    python3 scripts/kafka.py fetch               resolve the broker jars with Maven into the cache
    python3 scripts/kafka.py up [--dir D]        format a log dir, start the broker, print host:port
    python3 scripts/kafka.py down [--dir D]      stop it and leave no process behind
    python3 scripts/kafka.py status [--dir D]

Jars come from Maven Central (`org.apache.kafka:kafka_2.13` and its runtime dependencies) and are
kept in ${XDG_CACHE_HOME:-~/.cache}/email-status-worker/kafka-<version>/; Maven's own repository
(~/.m2) caches the downloads. Standard library only: this runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

KAFKA_VERSION = os.environ.get("ESW_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".run" / "kafka"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "email-status-worker" / f"kafka-{KAFKA_VERSION}"


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.email-status-worker</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <!-- Kafka logs through slf4j 1.x; this routes it to log4j2 so the broker's log is readable -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaServer
logger.server.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
"""


def fetch() -> Path:
    """Resolve the broker's jars once; later calls return the cached folder at once."""
    libs = cache_dir() / "libs"
    stamp = cache_dir() / "complete"
    if stamp.exists():
        return libs
    if shutil.which("mvn") is None:
        sys.exit("kafka.py: Maven (mvn) is needed to resolve the Kafka jars from Maven Central")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pom.xml").write_text(POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
        partial = cache_dir() / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cmd = ["mvn", "-q", "-B", "dependency:copy-dependencies",
               f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
        print(f"kafka.py: resolving org.apache.kafka:kafka_2.13:{KAFKA_VERSION} with Maven ...", file=sys.stderr)
        subprocess.run(cmd, cwd=tmp, check=True, stdout=sys.stderr)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
    (cache_dir() / "log4j2.properties").write_text(LOG4J2)
    stamp.write_text(KAFKA_VERSION + "\n")
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = Path(home, "bin", "java") if home else shutil.which("java")
    if not java:
        sys.exit("kafka.py: Java 17+ is needed to run the broker")
    return str(java)


def api_versions_ok(port: int, timeout: float = 1.0) -> bool:
    """True when the broker answers an ApiVersions request (it serves clients, not just listens)."""
    client = b"esw-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(10)
            return len(head) >= 10 and struct.unpack(">ih", head[4:10]) == (1, 0)
    except OSError:
        return False


def up(state: Path, port: int | None = None, wait_secs: float = 90.0, *, fresh: bool = True) -> str:
    """Start a broker whose data lives in `state`; return its bootstrap address. With
    `fresh=False` an existing log dir is started again on its old ports (a broker restart)."""
    existing = status(state)
    if existing:
        return existing
    libs = fetch()
    props = state / "server.properties"
    cp = str(libs / "*")
    log4j = f"-Dlog4j2.configurationFile={cache_dir() / 'log4j2.properties'}"
    if not fresh and props.exists():
        port = int((state / "bootstrap").read_text().rsplit(":", 1)[1])
        return _start(state, props, port, cp, log4j, wait_secs)
    shutil.rmtree(state / "data", ignore_errors=True)
    (state / "data").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller = free_port()
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={state / 'data'}",
        "num.partitions=3",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=10",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # tests kill workers on purpose; short sessions make the hand-over quick
        "group.min.session.timeout.ms=1000",
        "log.cleaner.backoff.ms=1000",
        "",
    ]))
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run([_java(), log4j, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                    "-c", str(props)], check=True, stdout=subprocess.DEVNULL)
    return _start(state, props, port, cp, log4j, wait_secs)


def _start(state: Path, props: Path, port: int, cp: str, log4j: str, wait_secs: float) -> str:
    log = open(state / "broker.log", "ab")
    proc = subprocess.Popen(
        [_java(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true", log4j,
         "-cp", cp, "kafka.Kafka", str(props)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    (state / "broker.pid").write_text(str(proc.pid))
    (state / "bootstrap").write_text(f"127.0.0.1:{port}")
    deadline = time.monotonic() + wait_secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"kafka.py: the broker exited with {proc.returncode}; see {state / 'broker.log'}")
        if api_versions_ok(port):
            return f"127.0.0.1:{port}"
        time.sleep(0.25)
    down(state)
    sys.exit(f"kafka.py: the broker did not answer within {wait_secs:.0f} s; see {state / 'broker.log'}")


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "broker.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def status(state: Path) -> str | None:
    pid = _pid(state)
    if pid is None:
        return None
    bootstrap = (state / "bootstrap").read_text().strip()
    return bootstrap if api_versions_ok(int(bootstrap.rsplit(":", 1)[1])) else None


def down(state: Path, grace: float = 20.0) -> None:
    pid = _pid(state)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
    (state / "broker.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie that is not ours still answers kill(0); /proc tells
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (log dir, pid, log)")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    args = parser.parse_args()
    state = args.dir.resolve()
    if args.command == "fetch":
        print(fetch())
    elif args.command == "up":
        state.mkdir(parents=True, exist_ok=True)
        print(up(state, args.port))
    elif args.command == "down":
        down(state)
    else:
        found = status(state)
        print(found or "down")
        sys.exit(0 if found else 1)


if __name__ == "__main__":
    main()
