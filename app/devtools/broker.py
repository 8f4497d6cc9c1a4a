"""The local Apache Kafka broker: fetched by Maven, KRaft single node, 127.0.0.1 only.

``riverbed broker start|stop|status|fetch`` and the test suite's session fixture use
this module alike, so the broker a newcomer sees is the broker the tests ran against.

* The jars are resolved by Maven from Maven Central at the version pinned in
  ``deploy/kafka/pom.xml`` into ``.cache/kafka/<version>/libs`` (ignored), once.
* Storage is formatted once per data directory (``.riverbed/broker-<port>``, ignored).
* The broker runs in its own session; its PID is recorded and ``stop`` only ever
  signals that PID, after checking it still is a Kafka broker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riverbed.config import PROJECT_ROOT, Settings
from riverbed.exceptions import BrokerError
from riverbed.ports import ephemeral_ports

__all__ = ["LocalBroker", "SecureListeners", "answers_metadata", "kafka_version"]

logger = logging.getLogger(__name__)

DEPLOY = PROJECT_ROOT / "deploy" / "kafka"
CACHE = PROJECT_ROOT / ".cache" / "kafka"
STATE = PROJECT_ROOT / ".riverbed"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
MIN_JAVA = 17


def kafka_version() -> str:
    """The Kafka version pinned in ``deploy/kafka/pom.xml``."""
    text = (DEPLOY / "pom.xml").read_text()
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if not m:
        msg = "deploy/kafka/pom.xml has no <kafka.version>"
        raise BrokerError(msg)
    return m.group(1).strip()


FREE_PORTS_FROM = 10000  # the lowest port free_ports picks


def free_ports(n: int = 1) -> int:
    """A base port with the ``n`` ports from it free on 127.0.0.1 (a supervisor's and
    its worker processes', or a broker's listeners): the tests and benchmarks use it.

    The ports are picked outside the kernel's ephemeral range (below it, or above it
    when it starts too low): a port in it may become the local end of any outgoing
    connection between this check and the server's bind, and stay so for that
    connection's life (a supervisor's worker process, binding seconds later on a busy
    machine, once found its port held by another test's Kafka client). Outside it, only
    another server can take one.

    Examples
    --------
    >>> base = free_ports(3)
    >>> low, high = ephemeral_ports()
    >>> base + 3 <= low or base > high
    True

    """
    low, high = ephemeral_ports()
    if low - n > FREE_PORTS_FROM:
        span = (FREE_PORTS_FROM, low - n)
    elif 65535 - n > high + 1:
        span = (high + 1, 65535 - n)
    else:
        msg = f"no room for {n} ports outside the ephemeral range {low}-{high}"
        raise BrokerError(msg)
    pick = random.SystemRandom()  # never a seeded sequence shared by test processes
    for _ in range(200):
        base = pick.randrange(*span)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    msg = f"no {n} free ports in a row on 127.0.0.1"
    raise BrokerError(msg)


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


async def _metadata(bootstrap: str, timeout: float, client_args: dict[str, Any]) -> bool:
    from riverbed.kafka import clients

    client = clients.client(
        clients.Connection(bootstrap, client_args), request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


def answers_metadata(bootstrap: str, timeout: float = 3.0, **client_args: Any) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request (asked with
    aiokafka ``client_args``: security protocol, TLS, SASL; PLAINTEXT by default)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_metadata(bootstrap, timeout, client_args))
    finally:
        quiet.setLevel(level)


def _java_major() -> int:
    java = shutil.which("java")
    if not java:
        msg = (
            f"Java {MIN_JAVA}+ is needed to run the local Kafka broker and `java` is not "
            "on PATH (Debian: apt-get install openjdk-17-jre-headless)"
        )
        raise BrokerError(msg)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        msg = f"cannot read the Java version from `java -version`: {out.stderr.strip()!r}"
        raise BrokerError(msg)
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0" style
        major = int(m.group(2))
    if major < MIN_JAVA:
        msg = f"Java {MIN_JAVA}+ is needed for Kafka {kafka_version()}; found Java {major}"
        raise BrokerError(msg)
    return major


_SASL_NAME = re.compile(r"[A-Za-z0-9._@-]+")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class SecureListeners:
    """TLS and SASL listeners a :class:`LocalBroker` opens beside its PLAINTEXT one.

    SASL_SSL on ``sasl_ssl_port`` (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, each for
    every one of ``users``) and SSL on ``ssl_port`` requiring a client certificate
    (mutual TLS). Both present ``certfile`` (PEM chain, whose names must include
    127.0.0.1) with its unencrypted PEM ``keyfile``; client certificates must be
    signed by a CA of ``cafile``. The controller and the PLAINTEXT listener stay as
    they are, on 127.0.0.1. The test suite makes its own CA (tests/integration/test_security.py).
    """

    sasl_ssl_port: int
    ssl_port: int
    certfile: Path
    keyfile: Path
    cafile: Path
    users: dict[str, str] = field(default_factory=dict)
    # Kafka's StandardAuthorizer with allow.everyone.if.no.acl.found=false: the SASL and
    # TLS principals may do only what ACLs grant; PLAINTEXT (and the controller, and the
    # brokers among themselves) are User:ANONYMOUS, a super user, for the tests' admin.
    authorizer: bool = False

    def __post_init__(self) -> None:
        for name, password in self.users.items():
            if not (_SASL_NAME.fullmatch(name) and _SASL_NAME.fullmatch(password)):
                msg = f"SASL user {name!r}: names and passwords may hold letters, digits, ._@-"
                raise BrokerError(msg)

    def properties(self, host: str, port: int, controller_port: int, keystore: Path) -> str:
        """server.properties lines that replace the template's listeners and add security."""
        plain = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        secured = f"SASL_SSL://{host}:{self.sasl_ssl_port},SSL://{host}:{self.ssl_port}"
        lines = [
            "# Secured listeners (riverbed.devtools.broker.SecureListeners)",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port},{secured}",
            f"advertised.listeners=PLAINTEXT://{host}:{port},{secured}",
            "listener.security.protocol.map="
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
            "sasl.enabled.mechanisms=PLAIN," + ",".join(SCRAM_MECHANISMS),
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain};",
            *(
                f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config={scram}"
                for m in SCRAM_MECHANISMS
            ),
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.cafile}",
            "listener.name.ssl.ssl.client.auth=required",
        ]
        if self.authorizer:
            lines += [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "allow.everyone.if.no.acl.found=false",
                "super.users=User:ANONYMOUS",
            ]
        return "\n".join(lines) + "\n"

    def scram_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users (KRaft)."""
        return [
            arg
            for user, password in self.users.items()
            for m in SCRAM_MECHANISMS
            for arg in ("--add-scram", f"{m}=[name={user},password={password}]")
        ]


@dataclass
class LocalBroker:
    """One single-node KRaft broker+controller on 127.0.0.1.

    Parameters
    ----------
    port
        Client (PLAINTEXT) port.
    controller_port
        KRaft controller port; ``port + 1`` by default.
    data_dir
        Storage, config, log and PID file; ``.riverbed/broker-<port>`` by default.
    heap
        JVM heap (``-Xmx``), small enough to sit beside the tests on 2 cores.
        ``KAFKA_OPTS`` in the environment adds JVM options, as with Kafka's own
        scripts (e.g. ``-Xlog:gc:file=gc.log:time`` to see the broker's GC pauses).
    secure
        Extra SASL_SSL and SSL (mutual TLS) listeners; none by default.

    """

    port: int = 9092
    controller_port: int = 0
    data_dir: Path = field(default=Path())
    heap: str = "512m"
    host: str = "127.0.0.1"
    secure: SecureListeners | None = None
    # One node of a LocalCluster: its id, the cluster's controller quorum, replication
    # (internal topics and default.replication.factor), min.insync.replicas, cluster id.
    node_id: int = 1
    voters: str = ""
    replication: int = 1
    min_insync: int = 1
    cluster_id: str = ""
    # How long the controller waits for a silent node before it fences it and moves its
    # leaderships (broker.session.timeout.ms; heartbeats at a quarter of it, at most
    # Kafka's 2 s): Kafka's 9 s on one node, shorter on a LocalCluster.
    fence_after_ms: int = 9000
    # A Linux network namespace to run in (`ip netns exec`): the multi-host tests.
    netns: str = ""

    def __post_init__(self) -> None:
        if not self.controller_port:
            self.controller_port = self.port + 1
        if self.data_dir == Path():
            self.data_dir = STATE / f"broker-{self.port}"
        if not self.voters:
            self.voters = f"{self.node_id}@{self.host}:{self.controller_port}"

    @classmethod
    def from_settings(cls, settings: Settings, *, port: int | None = None) -> LocalBroker:
        """The local broker at ``RIVERBED_BROKER``'s first address, or on ``port``.

        Raises
        ------
        BrokerError
            When that address is not on this machine (the local broker binds 127.0.0.1).

        """
        host, _, own_port = settings.broker[0].rpartition(":")
        if port is None and host not in {"127.0.0.1", "localhost"}:
            msg = (
                f"RIVERBED_BROKER={settings.bootstrap} is not on this machine; the local "
                "broker only binds 127.0.0.1 (use --port, or unset RIVERBED_BROKER)"
            )
            raise BrokerError(msg)
        return cls(port=port or int(own_port))

    @classmethod
    def start_unless_running(cls, settings: Settings) -> LocalBroker | None:
        """Start the local broker unless a broker answers at ``RIVERBED_BROKER``.

        Returns the broker this call started (the caller stops it), else None.
        """
        from riverbed.kafka.security import client_args

        if answers_metadata(settings.bootstrap, **client_args(settings)):
            return None
        broker = cls.from_settings(settings)
        broker.start()
        return broker

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def libs(self) -> Path:
        return CACHE / kafka_version() / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    # -- fetch -----------------------------------------------------------------------
    def fetch(self) -> Path:
        """Resolve the broker's jars with Maven into the cache, once; return the folder."""
        libs = self.libs
        if (libs / ".complete").exists():
            return libs
        mvn = shutil.which("mvn")
        if not mvn:
            msg = (
                "Maven is needed once to fetch the Kafka broker jars from Maven Central and "
                "`mvn` is not on PATH (Debian: apt-get install maven)"
            )
            raise BrokerError(msg)
        tmp = libs.with_name(f"libs.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(DEPLOY / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        logger.info("fetching Kafka %s jars with Maven", kafka_version())
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            msg = f"Maven could not fetch Kafka {kafka_version()} (exit {proc.returncode}):\n{tail}"
            raise BrokerError(msg)
        (tmp / ".complete").write_text(kafka_version() + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        return libs

    # -- status ----------------------------------------------------------------------
    def pid(self) -> int | None:
        """PID of the broker this data directory started, if it is still running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # Guard against PID reuse: only a JVM running kafka.Kafka with our config is ours.
        if b"kafka.Kafka" in cmdline and str(self.data_dir).encode() in cmdline:
            return pid
        return None

    def running(self) -> bool:
        return answers_metadata(self.bootstrap, timeout=2.0)

    # -- start -----------------------------------------------------------------------
    def _java_cmd(self, main: str, *args: str) -> list[str]:
        return [
            *(["ip", "netns", "exec", self.netns] if self.netns else []),
            "java",
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            # The client compiler only (C1): a broker that starts, serves tests and demos
            # on a small machine and stops spends more CPU in C2's compiler threads than
            # C2's code gives back. Measured (2 cores): start-up 4.2 -> 2.5 s of CPU,
            # 200,000 events produced and read back 3.2 -> 2.1 s; the format tool's JVM
            # 2.0 -> 1.1 s. KAFKA_OPTS=-XX:TieredStopAtLevel=4 (later: wins) restores C2.
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.properties'}",
            *shlex.split(os.environ.get("KAFKA_OPTS", "")),
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        template = (DEPLOY / "server.properties.in").read_text()
        cfg = self.data_dir / "server.properties"
        cfg.write_text(
            template.format(
                host=self.host,
                port=self.port,
                controller_port=self.controller_port,
                log_dir=self.data_dir / "kraft-logs",
                node_id=self.node_id,
                voters=self.voters,
                replication=self.replication,
                min_insync=self.min_insync,
                fence_after_ms=self.fence_after_ms,
                heartbeat_ms=max(100, min(2000, self.fence_after_ms // 4)),
            )
        )
        if self.secure is not None:
            # A PEM key store holds the key and its certificate chain in one file.
            keystore = self.data_dir / "keystore.pem"
            secure = self.secure
            keystore.write_text(secure.keyfile.read_text() + secure.certfile.read_text())
            keystore.chmod(0o600)
            with cfg.open("a") as f:  # later keys win in a .properties file
                f.write(secure.properties(self.host, self.port, self.controller_port, keystore))
        return cfg

    def _format(self, cfg: Path) -> None:
        if (self.data_dir / "kraft-logs" / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or _kafka_cluster_id()
        args = ["format", f"--cluster-id={cluster_id}", "-c", str(cfg)]
        if self.secure is not None:
            args += self.secure.scram_args()  # SCRAM users live in the cluster's metadata
        proc = subprocess.run(
            self._java_cmd("kafka.tools.StorageTool", *args),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            msg = f"formatting the broker storage failed: {(proc.stderr or proc.stdout).strip()}"
            raise BrokerError(msg)

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the broker (or find it running) and wait until it answers metadata.

        Returns the bootstrap address. A second ``start`` is harmless.
        """
        if self.running():
            return self.bootstrap
        ports = [self.port, self.controller_port]
        if self.secure is not None:
            ports += [self.secure.sasl_ssl_port, self.secure.ssl_port]
        for p in ports:
            if _port_open(self.host, p):
                msg = (
                    f"port {p} on {self.host} is taken by a program that is not a Kafka broker; "
                    "stop it or choose another port (riverbed broker start --port N)"
                )
                raise BrokerError(msg)
        t0 = time.monotonic()
        proc = self.launch()
        return self.wait_ready(proc, t0, timeout)

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the JVM (formatting its storage the first time); do not wait for it."""
        _java_major()
        self.fetch()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self._write_config()
        self._format(cfg)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(cfg)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.data_dir,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], t0: float, timeout: float) -> str:
        """Wait until the launched broker answers metadata; its bootstrap address."""
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
                msg = f"the Kafka broker exited with {proc.returncode}; its log ends:\n{tail}"
                raise BrokerError(msg)
            if answers_metadata(self.bootstrap, timeout=2.0):
                logger.info("broker ready in %.1f s", time.monotonic() - t0)
                return self.bootstrap
            time.sleep(0.2)  # poll interval while waiting for the condition above
        self.stop()
        msg = f"the Kafka broker did not answer within {timeout:.0f} s; see {self.log_file}"
        raise BrokerError(msg)

    # -- stop ------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT_S, *, graceful: bool = True) -> bool:
        """Stop the broker this data directory started; False when none was running.

        ``graceful=False`` kills it at once, for a broker whose data is deleted next (a
        node of a cluster whose others are gone waits out a controlled shutdown).
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
        deadline = time.monotonic() + timeout  # killed: gone in milliseconds
        while time.monotonic() < deadline and self.pid() is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)  # poll interval while the JVM shuts down
        if graceful and self.pid() is not None:
            logger.warning("broker %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Delete this broker's data directory (it must be stopped)."""
        if self.pid() is not None:
            msg = "stop the broker before wiping its data"
            raise BrokerError(msg)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class LocalCluster:
    """``nodes`` KRaft brokers+controllers on 127.0.0.1, replicated as in production:
    every node a voter of the controller quorum, default.replication.factor
    min(3, nodes) and min.insync.replicas one less (at least 1).

    Node i (from 1) takes client port ``port + 2(i-1)`` and the controller port after
    it; its data in ``data_dir/node-i``. ``riverbed broker start --nodes 3``.
    """

    port: int = 9092
    nodes: int = 3
    data_dir: Path = field(default=Path())
    heap: str = "384m"
    # A node killed -9 is fenced, and its partitions led elsewhere, after 5 s of silence
    # instead of Kafka's 9 s: the failover drills on this cluster wait it out per kill.
    fence_after_ms: int = 5000

    def __post_init__(self) -> None:
        if self.data_dir == Path():
            self.data_dir = STATE / f"cluster-{self.port}"

    @property
    def brokers(self) -> list[LocalBroker]:
        voters = ",".join(f"{i + 1}@127.0.0.1:{self.port + 2 * i + 1}" for i in range(self.nodes))
        replication = min(3, self.nodes)
        return [
            LocalBroker(port=self.port + 2 * i, data_dir=self.data_dir / f"node-{i + 1}",
                        heap=self.heap, node_id=i + 1, voters=voters, replication=replication,
                        min_insync=max(1, replication - 1), cluster_id=self._cluster_id(),
                        fence_after_ms=self.fence_after_ms)
            for i in range(self.nodes)
        ]  # fmt: skip

    def node(self, node_id: int) -> LocalBroker:
        return self.brokers[node_id - 1]

    def _cluster_id(self) -> str:
        """One id for every node's storage, kept beside them."""
        path = self.data_dir / "cluster.id"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(_kafka_cluster_id())
        return path.read_text().strip()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start every node at once (a node waits for a quorum of controllers), and wait
        until each answers metadata; the bootstrap address of all of them."""
        t0 = time.monotonic()
        launched = [(b, b.launch()) for b in self.brokers if b.pid() is None]
        try:
            for b, proc in launched:
                b.wait_ready(proc, t0, timeout)
        except BrokerError:
            self.stop()
            raise
        return self.bootstrap

    def stop(self, timeout: float = STOP_TIMEOUT_S, *, graceful: bool = True) -> bool:
        """Stop every node this data directory started, all at once (one by one, the
        last would wait for a quorum of controllers that is gone); False when none was
        running."""
        with concurrent.futures.ThreadPoolExecutor(self.nodes) as pool:
            return any(list(pool.map(lambda b: b.stop(timeout, graceful=graceful),
                                     self.brokers)))  # fmt: skip

    def wipe(self) -> None:
        for b in self.brokers:
            b.wipe()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _kafka_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    It may start with "-", hence `--cluster-id=ID` (one argument) when formatting.
    """
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
