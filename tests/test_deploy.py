"""deploy/: the compose file parses, its services reference files that exist, every nflow
command in it is one ``nflow`` accepts, its environment is a valid configuration, and the load
balancer sends traffic to exactly the nflow services. (Docker itself does not run here.)"""

from __future__ import annotations

import re
from typing import Any

import yaml

from harness import REPO
from nflow.cli import build_parser
from nflow.config import load_config

DEPLOY = REPO / "deploy"


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def nflow_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in data["services"].items()
        if "nflow" in " ".join(service.get("command") or [])
    }


def test_two_nflow_instances_postgres_redis_and_a_load_balancer() -> None:
    data = compose()
    services = data["services"]
    assert len(nflow_services(data)) == 2
    assert {"postgres", "redis", "lb"} <= set(services)
    for name, service in nflow_services(data).items():
        assert (DEPLOY / service["build"] / "Dockerfile").is_file(), name
        assert set(service["depends_on"]) == {"postgres", "redis"}


def test_every_nflow_command_is_valid_and_its_environment_a_valid_config() -> None:
    for name, service in nflow_services(compose()).items():
        command = service["command"]
        assert command[0] == "nflow"
        args = build_parser().parse_args(command[1:])
        assert args.command == "serve", name
        environ = {
            key: re.sub(r"\$\{[^}]*\}", "s" * 40, str(value))  # ${VAR:?...} as compose fills it
            for key, value in service["environment"].items()
        }
        config = load_config(None, environ=environ)
        assert config.database_nflow.driver == "postgres"
        assert config.rate_limit.backend == "redis" and config.session.backend == "redis"
        assert config.rate_limit.trusted_proxies, "behind nginx every client would share a bucket"


def test_the_load_balancer_config_exists_and_lists_exactly_the_nflow_services() -> None:
    data = compose()
    mounts = [v.split(":")[0] for v in data["services"]["lb"]["volumes"]]
    for mount in mounts:
        assert (DEPLOY / mount).is_file(), mount
    conf = (DEPLOY / "nginx.conf").read_text()
    upstream = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.MULTILINE)
    assert {host for host, _ in upstream} == set(nflow_services(data))
    # The port the image serves on (Dockerfile NFLOW_SERVER__PORT).
    dockerfile = (REPO / "Dockerfile").read_text()
    port = re.search(r"NFLOW_SERVER__PORT=(\d+)", dockerfile)
    assert port is not None and {p for _, p in upstream} == {port.group(1)}
    assert "X-Real-IP $remote_addr" in conf
