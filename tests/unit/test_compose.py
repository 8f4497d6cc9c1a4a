"""docker-compose.yml, Dockerfile and deploy/, checked statically (no Docker engine here).

The compose file is interpolated as Docker Compose does (``$$``, ``${VAR:?message}``,
``${VAR:-default}``); the worker's shell command and its healthcheck are run here, with a
stand-in ``riverbed`` and a local HTTP server, to check what they would do in the
container.
"""

from __future__ import annotations

import http.server
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import grafana
from tests.helpers import ROOT

README = ROOT / "README.md"

# The variables the compose file must be given: none has a default in the file.
SECRETS = {
    "RIVERBED_SNAPSHOT_KEY": "a-test-only-secret-0123456789abcdef",
    "GRAFANA_ADMIN_USER": "ops",
    "GRAFANA_ADMIN_PASSWORD": "a-test-only-password",
}
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]+\}")  # compose: error when unset or empty
_VAR = re.compile(r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<plain>\w+)")
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` without VAR: ``docker compose`` refuses to start."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` as Docker Compose interpolates it from ``env``.

    Examples
    --------
    >>> interpolate("$${HOSTNAME} ${A:-x} ${B:?needed}", {"B": "b"})
    '${HOSTNAME} x b'

    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg, val = m.group("op"), m.group("arg") or "", env.get(name)
        if op in {":?", "?"}:
            if val is None or (op == ":?" and not val):
                raise MissingVariable(f"{name}: {arg}")
            return val
        if op in {":-", "-"}:
            return val if val is not None and (op == "-" or val) else arg
        if op in {":+", "+"}:
            return arg if val is not None and (op == "+" or val) else ""
        return val or ""

    return _VAR.sub(sub, value)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Every string of the parsed compose file interpolated."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def seconds(duration: str) -> float:
    """A compose duration (``75s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, ``(NAME, arguments)``, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = (ln.strip() for ln in text.splitlines())
    return [
        (ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "")
        for ln in lines
        if ln and not ln.startswith("#")
    ]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in dockerfile():
        if name == "ENV":
            env.update(kv.split("=", 1) for kv in shlex.split(args))
    return env


@pytest.fixture(scope="module")
def raw() -> dict:
    """The compose file as written (variables not interpolated)."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw: dict) -> dict:
    """The compose file as ``docker compose`` runs it, given the secrets."""
    return resolve(raw, SECRETS)


def worker_env(compose: dict) -> dict[str, str]:
    return {k: str(v) for k, v in compose["services"]["worker"]["environment"].items()}


def test_services_and_ports(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "worker", "prometheus"} <= set(services)
    assert "127.0.0.1:9092:9092" in services["kafka"]["ports"]
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    assert "6066" in services["worker"]["expose"]
    assert "ports" not in services["worker"]  # reached on the compose network only


def test_kafka_image_matches_the_local_broker_version(compose: dict) -> None:
    from riverbed.devtools.broker import kafka_version

    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_worker_is_built_from_the_project_and_configured(compose: dict) -> None:
    from riverbed.config import SPECS, Settings

    worker = compose["services"]["worker"]
    assert worker["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    env = worker_env(compose)
    known = {s.env for s in SPECS}
    assert set(env) <= known
    settings = Settings.from_env(env)  # every value is valid
    assert settings.web_host == "0.0.0.0"  # Prometheus and the healthcheck reach it
    internal = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["RIVERBED_BROKER"].removeprefix("kafka://") in internal


def test_every_service_restarts(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in RESTART_POLICIES, name


def test_secrets_are_required_variables_never_values(raw: dict) -> None:
    worker = raw["services"]["worker"]["environment"]
    grafana = raw["services"]["grafana"]["environment"]
    for value, var in [
        (worker["RIVERBED_SNAPSHOT_KEY"], "RIVERBED_SNAPSHOT_KEY"),
        (grafana["GF_SECURITY_ADMIN_USER"], "GRAFANA_ADMIN_USER"),
        (grafana["GF_SECURITY_ADMIN_PASSWORD"], "GRAFANA_ADMIN_PASSWORD"),
    ]:
        m = REQUIRED.fullmatch(str(value))
        assert m and m.group(1) == var, value
    # No secret-looking setting of any service has a value written in the file.
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"KEY|PASSWORD|SECRET|TOKEN|CREDENTIAL", key):
                assert REQUIRED.fullmatch(str(value)), f"{name}: {key}"
    # Without any one of them, compose refuses to start (instead of a default).
    for var in SECRETS:
        with pytest.raises(MissingVariable, match=var):
            resolve(raw, {k: v for k, v in SECRETS.items() if k != var})
        with pytest.raises(MissingVariable, match=var):
            resolve(raw, {**SECRETS, var: ""})


def test_grafana_has_no_anonymous_admin(compose: dict) -> None:
    env = {k: str(v).lower() for k, v in compose["services"]["grafana"]["environment"].items()}
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"  # Grafana's default
    assert env.get("GF_AUTH_ANONYMOUS_ORG_ROLE", "viewer") != "admin"
    assert env.get("GF_AUTH_DISABLE_LOGIN_FORM", "false") == "false"
    assert env.get("GF_USERS_ALLOW_SIGN_UP", "false") == "false"


def test_kafka_data_is_on_a_named_volume(raw: dict) -> None:
    kafka = raw["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = dict(v.split(":")[:2][::-1] for v in kafka["volumes"])  # target -> source
    source = mounts[log_dirs]
    # A named volume, declared at the top level: `docker compose down` keeps it (an
    # anonymous one is replaced on the next `up`, a bind mount is not a volume).
    assert not source.startswith((".", "/", "~")), source
    assert source in (raw.get("volumes") or {})
    # The storage on the volume is formatted once; the same cluster id reuses it.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", str(kafka["environment"]["CLUSTER_ID"]))


def test_mounted_files_exist(compose: dict) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            src = volume.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), src


def test_worker_runs_a_supervisor_advertising_its_container(compose: dict, tmp_path: Path) -> None:
    """The worker's shell command, run with a stand-in riverbed: what it would exec."""
    from riverbed.config import Settings
    from riverbed.supervisor.process import child_env

    worker = compose["services"]["worker"]
    argv = [*worker["entrypoint"], *worker["command"]]
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3, argv
    fake = tmp_path / "riverbed"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$RIVERBED_WEB_ADVERTISED_URL" "$@"\n')
    fake.chmod(0o755)
    env = worker_env(compose)
    # Docker sets HOSTNAME to the container id, resolvable on the compose network.
    run_env = {**env, "HOSTNAME": "0123456789ab", "PATH": f"{tmp_path}:/usr/bin:/bin"}
    res = subprocess.run(argv, env=run_env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    url, *args = res.stdout.splitlines()
    assert args[:3] == ["worker", "--processes", "auto"], args
    assert url == f"http://0123456789ab:{env['RIVERBED_WEB_PORT']}"
    settings = Settings.from_env({**env, "RIVERBED_WEB_ADVERTISED_URL": url})
    assert settings.processes >= 1
    # Slot i advertises the same container with its own port, for /predict forwarding.
    slot1 = child_env(settings, 1, {})["RIVERBED_WEB_ADVERTISED_URL"]
    assert slot1 == f"http://0123456789ab:{settings.web_port + 2}"


def test_worker_stops_gracefully_before_sigkill(compose: dict) -> None:
    from riverbed.supervisor.process import STOP_TIMEOUT_S

    grace = compose["services"]["worker"].get("stop_grace_period", "10s")
    assert seconds(grace) > STOP_TIMEOUT_S


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = type(self).status if self.path == "/ready" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    _Ready.status = 200
    server.shutdown()
    server.server_close()


def test_worker_healthcheck_asks_the_supervisor_ready(
    compose: dict, ready_server: http.server.ThreadingHTTPServer
) -> None:
    """The healthcheck command, run against a stand-in /ready: 200 passes, else fails."""
    worker = compose["services"]["worker"]
    check = worker["healthcheck"]
    assert check["test"][0] == "CMD", check["test"]
    argv = check["test"][1:]
    # The image has python (its base image), not curl.
    base = next(args for name, args in dockerfile() if name == "FROM")
    assert argv[0] == "python" and base.startswith("python:"), (argv, base)
    code = argv[-1]
    m = re.search(r"http://127\.0\.0\.1:(\d+)/ready\b", code)
    assert m and m.group(1) == worker_env(compose)["RIVERBED_WEB_PORT"], code
    assert seconds(check["start_period"]) >= 30  # topics made, models restored first
    port = ready_server.server_address[1]
    local = [
        sys.executable,
        *argv[1:-1],
        code.replace(m.group(0), f"http://127.0.0.1:{port}/ready"),
    ]

    def exit_status() -> int:
        return subprocess.run(local, capture_output=True, timeout=30, check=False).returncode

    _Ready.status = 200
    assert exit_status() == 0
    _Ready.status = 503  # a worker process not ready (restoring, or restarted)
    assert exit_status() != 0
    ready_server.shutdown()
    ready_server.server_close()
    assert exit_status() != 0  # nothing listening


def test_image_runs_as_a_non_root_user() -> None:
    instructions = dockerfile()
    users = [args.strip() for name, args in instructions if name == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    runs = " ".join(args for name, args in instructions if name == "RUN")
    if not user.isdigit():
        assert re.search(rf"useradd\b[^&;]*\s{re.escape(user)}\b", runs), "user not created"
    env = dockerfile_env()
    assert env["RIVERBED_WEB_HOST"] == "0.0.0.0"
    data_dir = env["RIVERBED_DATA_DIR"]
    # The worker processes write under it (slot-0, slot-1, ...): owned by the user.
    assert re.search(rf"chown\s+(-R\s+)?{re.escape(user)}(:\S+)?\s+{re.escape(data_dir)}\b", runs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored  # the secrets file never enters the build context


def test_prometheus_scrapes_one_supervisor_per_worker_container(compose: dict) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "riverbed"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["names"][0] in compose["services"]
    assert sd["port"] == int(worker_env(compose)["RIVERBED_WEB_PORT"])  # the supervisor's


def test_prometheus_rule_files_are_mounted_next_to_its_config(compose: dict) -> None:
    """A rule file is read relative to prometheus.yml: each must be mounted beside it."""
    config_dir = ROOT / "deploy/prometheus"
    config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
    mounts = {}  # target -> source
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    (config_file,) = [
        arg.split("=", 1)[1]
        for arg in compose["services"]["prometheus"]["command"]
        if arg.startswith("--config.file=")
    ]
    assert mounts[config_file] == "./deploy/prometheus/prometheus.yml"
    assert config.get("rule_files"), "no alerting rules loaded"
    for rule_file in config["rule_files"]:
        assert not Path(rule_file).is_absolute() and "*" not in rule_file, rule_file
        target = str(Path(config_file).parent / rule_file)
        assert target in mounts, f"{rule_file} is not mounted at {target}"
        assert (ROOT / mounts[target]).resolve() == (config_dir / rule_file).resolve()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool comes with prometheus")
def test_prometheus_config_is_valid() -> None:
    res = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert re.search(r"port:\s*6066", text)


def _exported_series() -> set[str]:
    """The series names the worker and its supervisor export, from the code."""
    from prometheus_client import CollectorRegistry

    import riverbed.supervisor.gateway
    from riverbed.serving.metrics import RiverbedMetrics

    metrics = RiverbedMetrics.create(CollectorRegistry())
    # Every scrape-time family is yielded even with no partition assigned.
    metrics.register_collector(lambda: {"partitions": {}}, lambda _p: None)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = {
        f.name + suffix for f in metrics.registry.collect() for suffix in suffixes.get(f.type, [""])
    }
    gateway = Path(riverbed.supervisor.gateway.__file__).read_text()
    return names | set(re.findall(r'add_sample\("(riverbed_\w+)"', gateway))


def _readme_labels() -> dict[str, set[str]]:
    """README's metrics table: series name -> its labels (parenthesised notes dropped)."""
    table: dict[str, set[str]] = {}
    histogram = ("_bucket", "_count", "_sum")
    for row in re.findall(r"^\| (`riverbed_.*?) \| ([^|]+) \|(.*)\|$", README.read_text(), re.M):
        cell = row[2]
        while re.search(r"\([^()]*\)", cell):  # innermost first: "(..., RecallAtFPR(0.01))"
            cell = re.sub(r"\([^()]*\)", "", cell)
        cell = cell.split(":")[0]
        labels = {x.strip() for x in cell.split(",") if x.strip()}
        for name in re.findall(r"`(riverbed_\w+)`", row[0]):
            table[name] = labels
            if "histogram" in row[1]:
                table |= {name + suffix: labels for suffix in histogram}
    return table


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset"}  # fmt: skip
_SELECTOR = re.compile(r"\b([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")


def _metric_names(expr: str) -> list[str]:
    """The series names a PromQL expression reads (not functions, labels or keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    words = re.findall(r"\b([A-Za-z_:][\w:]*)\b(?!\s*\()", e)
    return [w for w in words if w not in _PROMQL_WORDS]


def test_metric_names_of_a_promql_expression() -> None:
    expr = (
        'histogram_quantile(0.5, sum by (le) (rate(riverbed_x_bucket{job=~"$app"}[1m]))) '
        '/ on (partition) group_left riverbed_y{partition=~"a b"} or up'
    )
    assert _metric_names(expr) == ["riverbed_x_bucket", "riverbed_y", "up"]


def test_grafana_dashboard_queries_metrics_the_worker_exports(compose: dict) -> None:
    assert "127.0.0.1:3000:3000" in compose["services"]["grafana"]["ports"]
    exported = _exported_series()
    assert {"riverbed_champion", "riverbed_worker_up", "riverbed_promotions_total"} <= exported
    readme = _readme_labels()
    dash = grafana.load()
    queries = [t.expr for t in grafana.targets(dash)]
    for v in grafana.variables(dash):
        m = grafana.LABEL_VALUES.fullmatch(grafana.variable_query(v))
        assert m, v["name"]
        queries.append(m["match"])
    for expr in queries:
        names = _metric_names(expr)
        assert names, expr
        for name in names:
            # up: Prometheus' own series of each scrape target
            assert name == "up" or name in exported, (name, expr)
            assert name == "up" or name in readme, f"{name} is not in README's metrics table"


def test_grafana_dashboard_panels_have_a_datasource_and_targets() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in provisioned["datasources"] if d["type"] == "prometheus"}
    dash = grafana.load()
    panels = [p for row in dash["panels"] for p in [row, *row.get("panels", [])]]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 10
    for p in graphs:
        assert p["datasource"]["type"] == "prometheus" and p["datasource"]["uid"] in uids, p
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t.get("legendFormat"), (p["title"], t)
            assert t.get("datasource", p["datasource"]) == p["datasource"]
            if "riverbed_model_metric" in t["expr"]:
                # one legend name per series: 2 partitions x 2 windows x 2 candidates
                assert {"{{model}}", "{{metric}}", "{{partition}}"} <= set(
                    re.findall(r"\{\{\w+\}\}", t["legendFormat"])
                ) or ("$model" in p["title"] and "window=" in t["expr"]), t
                # Accuracy and MAE alike: no percent
                assert p["fieldConfig"]["defaults"]["unit"] in {"none", "short"}, p["title"]
    exprs = " ".join(t.expr for t in grafana.targets(dash))
    for name in ["riverbed_promotions_total", "riverbed_champion", "riverbed_ready", "up{",
                 "riverbed_worker_up", "riverbed_learning_gaps_total",
                 "riverbed_snapshot_age_seconds"]:  # fmt: skip
        assert name in exprs, name
    rows = [p for p in dash["panels"] if p["type"] == "row" and p.get("repeat") == "model"]
    assert len(rows) == 1, "a row per candidate"
    in_row = [t for t in grafana.targets(dash) if t.repeat == "model"]
    assert in_row and all("riverbed_model_metric" in t.expr for t in in_row)


def test_grafana_dashboard_variables_are_defined_and_used() -> None:
    dash = grafana.load()
    defined = {v["name"]: v for v in grafana.variables(dash)}
    assert set(defined) == {"app", "instance", "partition", "model"}
    readme = _readme_labels()
    texts = [t.expr for t in grafana.targets(dash)]
    texts += [grafana.variable_query(v) for v in defined.values()]
    used = {a or b for text in texts for a, b in grafana.VARIABLE.findall(text)}
    used |= {p.get("repeat") for p in dash["panels"]} - {None}
    assert used == set(defined), used
    for name, v in defined.items():
        assert v["type"] == "query" and v["datasource"]["type"] == "prometheus", name
        assert grafana.LABEL_VALUES.fullmatch(grafana.variable_query(v)), name
        if v.get("includeAll"):
            assert v["allValue"] == ".*", name  # every matcher is a regex (=~)
    assert defined["model"]["multi"], "the row is repeated by model"
    for t in grafana.targets(dash):
        selectors = _SELECTOR.findall(t.expr)
        assert len(selectors) == len(_metric_names(t.expr)), f"a bare series name: {t.expr}"
        for name, matchers in selectors:
            wanted = {"job": "app", "instance": "instance"}
            labels = readme.get(name, set())
            wanted |= {label: label for label in ("partition", "model") if label in labels}
            for label, var in wanted.items():
                assert f'{label}=~"${var}"' in matchers, (t.panel, t.expr, label)
