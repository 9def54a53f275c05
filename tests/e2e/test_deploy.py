"""deploy/ says only what simgate understands: the Grafana dashboard asks for series a real
server exports, the systemd units pass systemd's own checker, and the compose file,
Containerfile and units name real commands and settings."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from simgate.cli import app
from simgate.config import Settings
from tests.conftest import required_tool, wait_until
from tests.e2e.gateway import PASSWORD, SIM2, USER, start_run

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "simgate.json"
UNITS = ("simgate.service", "simgate-agent.service")
# read by simgate's clients and agent, beside the server's Settings
CLIENT_VARIABLES = {"SIMGATE_SERVER", "SIMGATE_USERNAME", "SIMGATE_PASSWORD", "SIMGATE_TOKEN",
                    "SIMGATE_CLIENT_CONFIG"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "and", "or", "unless", "offset", "inf", "nan"}


def known_variable(name: str) -> bool:
    settings = {f"SIMGATE_{field.upper()}" for field in Settings.model_fields}
    return name in settings | CLIENT_VARIABLES


def parses(command: list[str]) -> None:
    """The command line is one the `simgate` CLI takes (its options exist)."""
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"simgate {' '.join(command)}: {result.output}"


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    found = [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"]
             for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append((f"variable {variable['name']}",
                          query["query"] if isinstance(query, dict) else query))
    return found


def names_in(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values) out
    labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    call = re.match(r"\s*label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*$", expr)
    if call:
        return {call.group(1)}, {call.group(2)}
    metrics = {word for word in re.findall(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
               if word.lower() not in PROMQL_WORDS and not word[0].isdigit()}
    return metrics, labels


FAMILIES = 4  # simgate_messages, _sim_ready, _sim_signal, _device_last_seen_seconds


def exported_series(tmp_path) -> dict[str, set[str]]:
    """Each metric family a real server exports, with the labels of its samples: a
    `simgate run` with a message sent, scraped once every family has samples."""
    process = start_run(tmp_path)

    def series() -> dict[str, set[str]] | None:
        found: dict[str, set[str]] = {}
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for sample in family.samples:
                found.setdefault(sample.name, set()).update(sample.labels)
        return found if len(found) >= FAMILIES else None

    try:
        with httpx.Client(base_url=process.url, auth=(USER, PASSWORD), timeout=10) as client:
            asyncio.run(wait_until(lambda: client.get("/3rdparty/v1/devices").json(), 30))
            sent = client.post("/3rdparty/v1/messages", json={
                "textMessage": {"text": "metrics"}, "phoneNumbers": [SIM2]})
            assert sent.status_code == 202, sent.text
            return asyncio.run(wait_until(series, 30))
    finally:
        process.stop()


def test_the_grafana_dashboard_asks_only_for_series_the_server_exports(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    series = exported_series(tmp_path)
    assert {"simgate_messages", "simgate_sim_ready"} <= set(series), series
    for where, expr in queries(dashboard):
        metrics, labels = names_in(expr)
        assert metrics, f"{where}: no metric in {expr!r}"
        unknown = metrics - set(series)
        assert not unknown, f"{where}: {sorted(unknown)} not exported ({sorted(series)})"
        offered = set().union(*(series[m] for m in metrics))
        assert labels <= offered, f"{where}: labels {sorted(labels - offered)} not on {metrics}"
    legends = {t.get("legendFormat", "") for p in dashboard["panels"] for t in p["targets"]}
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", " ".join(legends)))
    assert used <= set().union(*series.values()), used
    # the checker itself can fail: a made-up name is caught
    assert names_in('sum by (sim) (rate(simgate_bogus_total{device="x"}[5m]))') == (
        {"simgate_bogus_total"}, {"sim", "device"})


@pytest.mark.parametrize("unit", UNITS)
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path, unit):
    analyze = required_tool("systemd-analyze", "systemd")
    text = (DEPLOY / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    program, *arguments = shlex.split(exec_start)
    parses([a for a in arguments if not a.startswith("$")][:1])  # serve / agent
    # verify wants the program to exist: this machine's simgate stands in for /opt/simgate
    here = shutil.which("simgate") or sys.executable
    (tmp_path / unit).write_text(text.replace(program, here))
    checked = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True,
                             text=True, timeout=60)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert not re.search(r"Unknown|ignoring|Failed|invalid", output, re.I), output
    for name in re.findall(r"^Environment=(SIMGATE_\w+)=", text, re.M):
        assert known_variable(name), f"{unit}: {name} is no simgate setting"
    assert "DynamicUser=yes" in text and "ProtectSystem=strict" in text


def test_the_compose_file_runs_serve_on_its_postgresql():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    postgres, simgate = services["postgres"], services["simgate"]
    assert simgate["command"] == ["serve"]
    parses(simgate["command"])
    parses(services["agent"]["command"])
    environment = simgate["environment"]
    url = environment["SIMGATE_DATABASE_URL"]
    match = re.fullmatch(r"postgresql://(\w+):[^@]+@(\w+):5432/(\w+)", url)
    assert match, url
    user, host, database = match.groups()
    assert host == "postgres" and user == postgres["environment"]["POSTGRES_USER"]
    assert database == postgres["environment"]["POSTGRES_DB"]
    assert environment["SIMGATE_HOST"] == "0.0.0.0"
    assert simgate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        for variable in service.get("environment", {}):
            if variable.startswith("SIMGATE_"):
                assert known_variable(variable), f"{name}: {variable} is no simgate setting"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), volume
    assert (DEPLOY / services["simgate"]["build"]["context"]
            / services["simgate"]["build"]["dockerfile"]).exists()


def test_the_containerfile_runs_serve_as_a_user_and_checks_health():
    text = (DEPLOY / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*/health", text, re.M | re.S)
    assert json.loads(re.search(r"^CMD (.*)$", text, re.M).group(1)) == ["serve"]
    assert json.loads(re.search(r"^ENTRYPOINT (.*)$", text, re.M).group(1)) == ["simgate"]
    for name in re.findall(r"\b(SIMGATE_\w+)=", text):
        assert known_variable(name), name


def test_the_replicas_compose_file_joins_them_on_one_store_and_one_bus():
    compose = yaml.safe_load((DEPLOY / "compose.replicas.yaml").read_text())
    services = compose["services"]
    replicas = [s for name, s in services.items() if name.startswith("simgate-")]
    assert len(replicas) >= 2
    for replica in replicas:
        parses(replica["command"])
        environment = replica["environment"]
        assert environment["SIMGATE_BUS_URL"] == "redis://redis:6379/0"
        assert re.fullmatch(r"postgresql://\w+:[^@]+@postgres:5432/\w+",
                            environment["SIMGATE_DATABASE_URL"])
        for variable in environment:
            assert known_variable(variable), f"{variable} is no simgate setting"
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
    caddy = (DEPLOY / "Caddyfile").read_text()
    names = [n for n in services if n.startswith("simgate-")]
    assert all(f"{name}:3000" in caddy for name in names)
    assert "health_uri /health/ready" in caddy
    mounted = services["proxy"]["volumes"][0].split(":")[0]
    assert (DEPLOY / mounted).exists()
