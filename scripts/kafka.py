#!/usr/bin/env python3
"""A real Apache Kafka (KRaft) on 127.0.0.1, for development and tests: one broker, or a cluster.

    python3 scripts/kafka.py fetch               resolve the broker jars with Maven into the cache
    python3 scripts/kafka.py up [--dir D]        format a log dir, start the broker, print host:port
         [--listeners plaintext,ssl,sasl_ssl]    also TLS listeners (details in D/connection.json)
         [--brokers 3]                           a KRaft cluster; prints host:port,host:port,...
    python3 scripts/kafka.py down [--dir D]      stop it (every node) and leave no process behind
    python3 scripts/kafka.py status [--dir D]    the bootstrap (or "down"); a cluster adds a line per node
    python3 scripts/kafka.py connection [--dir D]   print D/connection.json

Jars come from Maven Central (`org.apache.kafka:kafka_2.13` and its runtime dependencies) and are
kept in ${XDG_CACHE_HOME:-~/.cache}/email-status-worker/kafka-<version>/; Maven's own repository
(~/.m2) caches the downloads. Standard library only: this runs before any virtualenv exists.

Listeners. PLAINTEXT is always on: it is what `up` prints and returns, and it carries the
inter-broker traffic (the KRaft controller listener is PLAINTEXT too; all of it on loopback).
`--listeners` adds, on a free port of their own on every node:
  ssl       TLS with *mutual* authentication (ssl.client.auth=required): a client presents the
            client certificate. TLS without a client certificate is what sasl_ssl offers.
  sasl_ssl  TLS (server-authenticated only) plus SASL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN,
            all for one user `esw` with a random password.
At a fresh `up` a throwaway CA is made with openssl (EC P-256, 30 days) in D/tls/: the broker's
certificate (CN=localhost, SAN IP:127.0.0.1 and DNS:localhost, shared by every node) and a client
certificate (CN=esw) whose key is encrypted with a random password; the CA's key is deleted once
both are signed. The SCRAM credentials are written into the metadata log when the log dirs are
formatted (`kafka-storage format --add-scram`); PLAIN's are in the listener's JAAS configuration.
D/connection.json (mode 0600) tells clients all of it, per listener: bootstrap_servers,
security_protocol, ca_file, cert_file, key_file, key_password, sasl_mechanisms, username, password.

Clusters. `--brokers N` starts N combined broker+controller nodes (one JVM each, a static
controller quorum of all N; no separate controller processes to start) in D/node-<id>/, with
replication factor min(N, 3) for new and internal topics and min.insync.replicas 2 (N >= 3).
Brokers heartbeat every 500 ms and are fenced after 3 s without one, so a killed leader is
replaced within seconds. `node_pids`, `kill_node` and `start_node` drive single nodes for fault tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

KAFKA_VERSION = os.environ.get("ESW_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".run" / "kafka"

LISTENERS = ("plaintext", "ssl", "sasl_ssl")
SECURITY_PROTOCOL = {"plaintext": "PLAINTEXT", "ssl": "SSL", "sasl_ssl": "SASL_SSL"}
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_USER = "esw"


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


def metadata_brokers(port: int, timeout: float = 1.0) -> set[int] | None:
    """The ids of the brokers a node reports as registered and unfenced (a Metadata v4 request
    for no topics), or None when it does not answer."""
    client = b"esw-probe"
    body = struct.pack(">hhih", 3, 4, 2, len(client)) + client + struct.pack(">ib", 0, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exactly(s, 4))
            if not 12 <= size <= 1 << 20:
                return None
            data = _recv_exactly(s, size)
        correlation, _throttle, count = struct.unpack_from(">iii", data, 0)
        if correlation != 2:
            return None
        pos, ids = 12, set()
        for _ in range(count):
            (node_id,) = struct.unpack_from(">i", data, pos)
            (host_len,) = struct.unpack_from(">h", data, pos + 4)
            pos += 4 + 2 + host_len + 4  # node id, host, port
            (rack_len,) = struct.unpack_from(">h", data, pos)
            pos += 2 + max(rack_len, 0)
            ids.add(node_id)
        return ids
    except (OSError, struct.error):
        return None


def _recv_exactly(s: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _free_ports(count: int, first: int | None = None) -> list[int]:
    """`count` distinct free loopback ports (all held until chosen, so none is handed out twice)."""
    ports = [] if first is None else [first]
    held = []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    finally:
        for s in held:
            s.close()
    return ports


def _listener_names(listeners: Iterable[str] | str) -> tuple[str, ...]:
    """The client listeners to open, in a fixed order; plaintext always (inter-broker traffic and
    the readiness probe use it, and it is what `up` returns)."""
    asked = listeners.split(",") if isinstance(listeners, str) else list(listeners)
    asked = [name.strip().lower() for name in asked if name.strip()]
    unknown = sorted(set(asked) - set(LISTENERS))
    if unknown:
        raise ValueError(f"unknown listener(s) {', '.join(unknown)}; choose from {', '.join(LISTENERS)}")
    return tuple(name for name in LISTENERS if name == "plaintext" or name in asked)


def _nodes(state: Path) -> dict[int, Path]:
    """Each node's folder: D/node-<id> for a cluster, D itself for a single broker."""
    found = {}
    for folder in state.glob("node-*"):
        suffix = folder.name[len("node-"):]
        if suffix.isdigit() and folder.is_dir():
            found[int(suffix)] = folder
    return dict(sorted(found.items())) or {1: state}


def _node_bootstrap(folder: Path) -> str | None:
    try:
        return (folder / "bootstrap").read_text().strip()
    except OSError:
        return None


def _port(bootstrap: str) -> int:
    return int(bootstrap.rsplit(":", 1)[1])


OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _make_tls(tls: Path) -> str:
    """A throwaway CA and the certificates it signs, in `tls`: ca.pem; server.pem (the broker's
    PEM key store: key, certificate, CA); client.crt and client.key (encrypted). Returns the client
    key's password. The CA's key is deleted: nothing else is ever signed with it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        sys.exit("kafka.py: openssl is needed to make the certificates of the ssl and sasl_ssl listeners")
    tls.mkdir(mode=0o700, parents=True)
    password = secrets.token_hex(16)
    env = {**os.environ, "ESW_KEY_PASSWORD": password}
    cnf = tls / "openssl.cnf"
    cnf.write_text(OPENSSL_CNF)

    def run(*args: object, stdin: bytes | None = None) -> bytes:
        done = subprocess.run([openssl, *map(str, args)], input=stdin, capture_output=True, env=env, timeout=60)
        if done.returncode:
            sys.exit(f"kafka.py: openssl {args[0]} failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    ec = ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    ca_key, ca = tls / "ca.key", tls / "ca.pem"
    run("genpkey", *ec, "-out", ca_key)
    run("req", "-config", cnf, "-new", "-x509", "-sha256", "-days", 30, "-key", ca_key,
        "-subj", "/CN=email-status-worker throwaway CA", "-extensions", "ca", "-out", ca)
    for name, subject, encrypt in (("server", "/CN=localhost", ()),
                                   ("client", f"/CN={SASL_USER}", ("-aes-256-cbc", "-pass", "env:ESW_KEY_PASSWORD"))):
        key = tls / f"{name}.key"
        run("genpkey", *ec, *encrypt, "-out", key)
        passin = ("-passin", "env:ESW_KEY_PASSWORD") if encrypt else ()
        csr = run("req", "-config", cnf, "-new", "-sha256", "-key", key, *passin, "-subj", subject)
        run("x509", "-req", "-sha256", "-days", 30, "-CA", ca, "-CAkey", ca_key,
            "-set_serial", random.getrandbits(63) + 1, "-extfile", cnf, "-extensions", name,
            "-out", tls / f"{name}.crt", stdin=csr)
    server_key = tls / "server.key"
    (tls / "server.pem").write_bytes(server_key.read_bytes() + (tls / "server.crt").read_bytes() + ca.read_bytes())
    server_key.unlink()
    ca_key.unlink()
    cnf.unlink()
    return password


def _properties(node_id: int, folder: Path, ports: dict[str, int], voters: str, brokers: int,
                names: tuple[str, ...], tls: Path, sasl_password: str | None) -> str:
    clients = ",".join(f"{SECURITY_PROTOCOL[name]}://127.0.0.1:{ports[name]}" for name in names)
    protocols = "".join(f",{SECURITY_PROTOCOL[name]}:{SECURITY_PROTOCOL[name]}" for name in names[1:])
    replicas = min(brokers, 3)
    min_isr = 2 if replicas >= 3 else 1
    lines = [
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners={clients},CONTROLLER://127.0.0.1:{ports['controller']}",
        f"advertised.listeners={clients}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}",
        f"log.dirs={folder / 'data'}",
        "num.partitions=3",
        "auto.create.topics.enable=false",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=10",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        "transaction.state.log.num.partitions=10",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        # tests kill workers on purpose; short sessions make the hand-over quick
        "group.min.session.timeout.ms=1000",
        "log.cleaner.backoff.ms=1000",
    ]
    if brokers > 1:
        lines += [
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            # fault tests kill nodes: fence a silent broker (and move its leaderships) after 3 s, not 9
            "broker.heartbeat.interval.ms=500",
            "broker.session.timeout.ms=3000",
        ]
    if "ssl" in names or "sasl_ssl" in names:
        lines += [
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls / 'server.pem'}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls / 'ca.pem'}",
            "listener.name.ssl.ssl.client.auth=required",
        ]
    if sasl_password is not None:
        lines += [
            f"listener.name.sasl_ssl.sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
            "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule"
            f' required user_{SASL_USER}="{sasl_password}";',
        ] + [
            f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for mechanism in SASL_MECHANISMS if mechanism.startswith("SCRAM-")
        ]
    return "\n".join([*lines, ""])


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def up(state: Path, port: int | None = None, wait_secs: float = 90.0, *, fresh: bool = True,
       listeners: Iterable[str] | str = ("plaintext",), brokers: int = 1) -> str:
    """Start a broker (or a cluster of `brokers` nodes) whose data lives in `state`; return the
    PLAINTEXT bootstrap address ("127.0.0.1:<port>", comma-separated for a cluster). `listeners`
    adds "ssl" (mutual TLS) and/or "sasl_ssl"; `connection(state)` tells clients how to use them.
    With `fresh=False` an existing log dir is started again on its old ports (a restart of every
    node that is not running). A broker that is already up is returned as it is."""
    existing = status(state)
    if existing:
        return existing
    libs = fetch()
    cp = str(libs / "*")
    log4j = f"-Dlog4j2.configurationFile={cache_dir() / 'log4j2.properties'}"
    nodes = _nodes(state)
    if not fresh and all((folder / "server.properties").exists() for folder in nodes.values()):
        stopped = {node_id: _launch(folder, cp, log4j) for node_id, folder in nodes.items() if _pid(folder) is None}
        _wait_nodes(state, stopped, set(nodes), wait_secs)
        return ",".join(_node_bootstrap(folder) or "" for folder in nodes.values())
    names = _listener_names(listeners)
    if brokers < 1:
        raise ValueError("brokers must be at least 1")
    down(state)  # whatever half of an earlier broker still runs must not outlive its log dir
    for leftover in [*state.glob("node-*"), state / "tls", state / "data"]:
        shutil.rmtree(leftover, ignore_errors=True)
    for name in ("connection.json", "bootstrap", "broker.pid"):
        (state / name).unlink(missing_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    kinds = [*names, "controller"]
    ports = iter(_free_ports(brokers * len(kinds), first=port))
    node_ports = {node_id: {kind: next(ports) for kind in kinds} for node_id in range(1, brokers + 1)}
    folders = {node_id: state if brokers == 1 else state / f"node-{node_id}" for node_id in node_ports}
    voters = ",".join(f"{node_id}@127.0.0.1:{p['controller']}" for node_id, p in node_ports.items())
    tls = state / "tls"
    key_password = _make_tls(tls) if "ssl" in names or "sasl_ssl" in names else None
    sasl_password = secrets.token_hex(16) if "sasl_ssl" in names else None
    for node_id, folder in folders.items():
        (folder / "data").mkdir(parents=True, exist_ok=True)
        text = _properties(node_id, folder, node_ports[node_id], voters, brokers, names, tls, sasl_password)
        (folder / "server.properties").write_text(text)
        if sasl_password is not None:
            os.chmod(folder / "server.properties", 0o600)
        (folder / "bootstrap").write_text(f"127.0.0.1:{node_ports[node_id]['plaintext']}")
    bootstrap = ",".join(f"127.0.0.1:{p['plaintext']}" for p in node_ports.values())
    (state / "bootstrap").write_text(bootstrap)
    _write_private(state / "connection.json", json.dumps(
        _connection_details(node_ports, names, tls, key_password, sasl_password), indent=2) + "\n")
    scram = []
    if sasl_password is not None:
        for mechanism in SASL_MECHANISMS:
            if mechanism.startswith("SCRAM-"):
                scram += ["--add-scram", f"{mechanism}=[name={SASL_USER},password={sasl_password}]"]
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    first = folders[1]
    # the storage tool is a short-lived JVM: C1 alone starts it about a second sooner
    done = subprocess.run([_java(), "-XX:TieredStopAtLevel=1", log4j, "-cp", cp, "kafka.tools.StorageTool", "format",
                           f"--cluster-id={cluster_id}", "-c", str(first / "server.properties"), *scram],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    if done.returncode:
        sys.exit(f"kafka.py: formatting the log dir failed: {done.stderr.decode(errors='replace').strip()}")
    for node_id, folder in list(folders.items())[1:]:
        _copy_format(first / "data", folder / "data", node_id)
    started = {node_id: _launch(folder, cp, log4j) for node_id, folder in folders.items()}
    _wait_nodes(state, started, set(folders), wait_secs)
    return bootstrap


def _copy_format(source: Path, target: Path, node_id: int) -> None:
    """Format another node's log dir like `source`, without another storage-tool JVM (on two CPUs
    that is seconds): the same bootstrap records (bootstrap.checkpoint: metadata version, SCRAM
    users) and meta.properties with this node's id and a directory id of its own."""
    shutil.copyfile(source / "bootstrap.checkpoint", target / "bootstrap.checkpoint")
    directory_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    lines = []
    for line in (source / "meta.properties").read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append({"node.id": f"node.id={node_id}", "directory.id": f"directory.id={directory_id}"}.get(key, line))
    (target / "meta.properties").write_text("\n".join([*lines, ""]))


def _connection_details(node_ports: dict[int, dict[str, int]], names: tuple[str, ...], tls: Path,
                        key_password: str | None, sasl_password: str | None) -> dict:
    details: dict = {
        "bootstrap_servers": ",".join(f"127.0.0.1:{p['plaintext']}" for p in node_ports.values()),
        "brokers": len(node_ports),
        "nodes": {str(node_id): {name: f"127.0.0.1:{port}" for name, port in p.items()}
                  for node_id, p in node_ports.items()},
        "listeners": {},
    }
    for name in names:
        entry: dict = {
            "bootstrap_servers": ",".join(f"127.0.0.1:{p[name]}" for p in node_ports.values()),
            "security_protocol": SECURITY_PROTOCOL[name],
        }
        if name in ("ssl", "sasl_ssl"):
            entry["ca_file"] = str(tls / "ca.pem")
        if name == "ssl":
            entry.update(cert_file=str(tls / "client.crt"), key_file=str(tls / "client.key"), key_password=key_password)
        if name == "sasl_ssl":
            entry.update(sasl_mechanisms=list(SASL_MECHANISMS), username=SASL_USER, password=sasl_password)
        details["listeners"][name] = entry
    return details


def connection(state: Path) -> dict:
    """How clients reach the broker(s) in `state`: the content of `state`/connection.json."""
    return json.loads((state / "connection.json").read_text())


def _launch(folder: Path, cp: str, log4j: str) -> subprocess.Popen:
    # Cluster nodes start three JVMs at once: C1 alone halves their start-up CPU (on two CPUs that
    # is 9 s instead of 16), at a lower peak throughput that tests do not need. A single broker
    # keeps the full JIT: the benchmarks run on it.
    jit = ["-XX:TieredStopAtLevel=1"] if folder.name.startswith("node-") else []
    with open(folder / "broker.log", "ab") as log:
        proc = subprocess.Popen(
            [_java(), "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", *jit, "-Djava.awt.headless=true", log4j,
             "-cp", cp, "kafka.Kafka", str(folder / "server.properties")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    (folder / "broker.pid").write_text(str(proc.pid))
    return proc


def _wait_nodes(state: Path, started: dict[int, subprocess.Popen], expected: set[int], wait_secs: float) -> None:
    """Until every started node answers on its PLAINTEXT port and, in a cluster, reports every
    node of `expected` as a registered, unfenced broker. On failure the started nodes are stopped."""
    nodes = _nodes(state)
    cluster = len(nodes) > 1
    pending = dict(started)
    deadline = time.monotonic() + wait_secs
    while pending and time.monotonic() < deadline:
        for node_id, proc in list(pending.items()):
            name = f"node {node_id}" if cluster else "the broker"
            if proc.poll() is not None:
                _stop([p.pid for p in started.values()])
                sys.exit(f"kafka.py: {name} exited with {proc.returncode}; see {nodes[node_id] / 'broker.log'}")
            port = _port(_node_bootstrap(nodes[node_id]) or ":0")
            if api_versions_ok(port) and (not cluster or expected <= (metadata_brokers(port) or set())):
                del pending[node_id]
        if pending:
            time.sleep(0.25)
    if pending:
        _stop([p.pid for p in started.values()])
        which = "the broker" if not cluster else "node(s) " + ", ".join(map(str, pending))
        logs = ", ".join(str(nodes[node_id] / "broker.log") for node_id in pending)
        sys.exit(f"kafka.py: {which} did not answer within {wait_secs:.0f} s; see {logs}")


def _pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "broker.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def node_status(state: Path) -> dict[int, str | None]:
    """Each node's PLAINTEXT address when it runs and answers, else None."""
    result: dict[int, str | None] = {}
    for node_id, folder in _nodes(state).items():
        bootstrap = _node_bootstrap(folder) if _pid(folder) is not None else None
        result[node_id] = bootstrap if bootstrap and api_versions_ok(_port(bootstrap)) else None
    return result


def status(state: Path) -> str | None:
    """The PLAINTEXT bootstrap when every node runs and answers, else None."""
    nodes = node_status(state)
    return ",".join(nodes.values()) if all(nodes.values()) else None  # type: ignore[arg-type]


def node_pids(state: Path) -> dict[int, int]:
    """{node id: pid} of the nodes whose process is alive."""
    pids = {node_id: _pid(folder) for node_id, folder in _nodes(state).items()}
    return {node_id: pid for node_id, pid in pids.items() if pid is not None}


TERMINATING = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def kill_node(state: Path, node_id: int, sig: int = signal.SIGKILL, wait_secs: float = 30.0) -> None:
    """Send `sig` to one node's process group. For SIGKILL, SIGTERM, SIGINT and SIGHUP, wait until
    the process is gone (TimeoutError after `wait_secs`); other signals (SIGSTOP...) return at once."""
    folder = _nodes(state).get(node_id)
    if folder is None:
        raise ValueError(f"no node {node_id} in {state}")
    pid = _pid(folder)
    if pid is None:
        raise ProcessLookupError(f"node {node_id} is not running")
    os.killpg(pid, sig)
    if sig not in TERMINATING:
        return
    deadline = time.monotonic() + wait_secs
    while _alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node_id} (pid {pid}) still runs {wait_secs:.0f} s after signal {sig}")
        time.sleep(0.05)
    (folder / "broker.pid").unlink(missing_ok=True)


def start_node(state: Path, node_id: int, wait_secs: float = 90.0) -> str:
    """Start a stopped node again from its log dir, on its old ports; return its PLAINTEXT address
    once it answers (in a cluster: once it is registered and unfenced again)."""
    folder = _nodes(state).get(node_id)
    if folder is None or not (folder / "server.properties").exists():
        raise ValueError(f"no node {node_id} in {state}")
    if _pid(folder) is None:
        libs = fetch()
        log4j = f"-Dlog4j2.configurationFile={cache_dir() / 'log4j2.properties'}"
        proc = _launch(folder, str(libs / "*"), log4j)
        _wait_nodes(state, {node_id: proc}, {node_id}, wait_secs)
    return _node_bootstrap(folder) or ""


def down(state: Path, grace: float = 20.0) -> None:
    """Stop every node (SIGTERM, then SIGKILL after `grace` seconds) and leave no process behind."""
    nodes = _nodes(state)
    running = {pid: folder for pid, folder in ((_pid(folder), folder) for folder in nodes.values()) if pid is not None}
    # In a cluster the last node standing is the KRaft leader: once its broker has closed its logs
    # (the clean-shutdown marker) it only waits 5 s for a successor that cannot be elected without
    # the others. It is killed then; the metadata log is recovered at every start anyway.
    markers = {pid: folder / "data" / ".kafka_cleanshutdown" for pid, folder in running.items()} if len(nodes) > 1 else {}
    _stop(list(running), grace, markers)
    for folder in nodes.values():
        (folder / "broker.pid").unlink(missing_ok=True)


def _stop(pids: list[int], grace: float = 20.0, markers: dict[int, Path] | None = None) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        for pid in pids:
            if _alive(pid):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            alive = [pid for pid in pids if _alive(pid)]
            if not alive:
                return
            if markers and len(alive) == 1 and alive[0] in markers and markers[alive[0]].exists():
                try:
                    os.killpg(alive[0], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)


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
    # kill(0) also answers for a zombie that is not ours, and for a JVM whose main thread has ended
    # while others still shut it down (its /proc/<pid>/stat says "Z" then too): alive while any
    # of its threads is not a zombie
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            if Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                return True
        except (OSError, IndexError):
            continue
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch", "up", "down", "status", "connection"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (log dir, pid, log)")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    parser.add_argument("--listeners", default="plaintext",
                        help="comma-separated, of plaintext (always on), ssl (mutual TLS), sasl_ssl")
    parser.add_argument("--brokers", type=int, default=1, help="nodes in the KRaft cluster (default 1)")
    args = parser.parse_args()
    state = args.dir.resolve()
    if args.command == "fetch":
        print(fetch())
    elif args.command == "up":
        try:
            names = _listener_names(args.listeners)
        except ValueError as exc:
            parser.error(str(exc))
        if args.brokers < 1:
            parser.error("--brokers must be at least 1")
        state.mkdir(parents=True, exist_ok=True)
        print(up(state, args.port, listeners=names, brokers=args.brokers))
        if names != ("plaintext",) or args.brokers > 1:
            print(f"kafka.py: connection details in {state / 'connection.json'}", file=sys.stderr)
    elif args.command == "down":
        down(state)
    elif args.command == "connection":
        print((state / "connection.json").read_text(), end="")
    else:
        nodes = _nodes(state)
        answering = node_status(state)
        found = ",".join(answering.values()) if all(answering.values()) else None  # type: ignore[arg-type]
        print(found or ("degraded" if any(answering.values()) else "down"))
        if len(nodes) > 1:  # a cluster: a line per node
            pids = node_pids(state)
            for node_id, folder in nodes.items():
                word = "up" if answering[node_id] else ("not answering" if node_id in pids else "down")
                print(f"node {node_id} {_node_bootstrap(folder)} pid {pids.get(node_id, '-')} {word}")
        sys.exit(0 if found else 1)


if __name__ == "__main__":
    main()
