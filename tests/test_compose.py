"""docker-compose.yml and the Dockerfile, checked by reading them (Docker does not run here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from graph.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def container_ports(service: dict) -> set[int]:
    ports = set()
    for entry in service.get("ports", []):
        text = str(entry["target"]) if isinstance(entry, dict) else str(entry).split("/")[0]
        ports.add(int(text.rsplit(":", 1)[-1]))
    return ports


def healthcheck_command(service: dict) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in {"CMD", "CMD-SHELL"}
    return " ".join(test[1:])


def replica_set_name(mongo: dict) -> str:
    command = mongo["command"]
    args = command if isinstance(command, list) else shlex.split(command)
    return args[args.index("--replSet") + 1]


def test_the_three_services(services):
    assert set(services) == {"mongo", "api", "mailpit"}


def test_mongo_is_a_single_node_replica_set_of_version_8(services):
    mongo = services["mongo"]
    assert re.fullmatch(r"mongo:8(\.\d+)*", mongo["image"])
    name = replica_set_name(mongo)
    assert name
    check = healthcheck_command(mongo)
    assert "mongosh" in check
    # The health check initiates the set with this one member, reachable by its service name.
    assert "rs.initiate(" in check
    assert f"_id: '{name}'" in check
    assert "host: 'mongo:27017'" in check
    assert "isWritablePrimary" in check
    assert services["mongo"]["healthcheck"]["retries"] >= 10
    assert 27017 in container_ports(mongo)


def test_api_waits_for_a_healthy_mongo_and_points_at_it(services):
    api = services["api"]
    assert api["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "mailpit" in api["depends_on"]
    env = environment(api)
    uri = urlsplit(env["MONGODB_URI"])
    assert uri.scheme == "mongodb"
    assert uri.hostname == "mongo" and (uri.port or 27017) == 27017
    assert parse_qs(uri.query)["replicaSet"] == [replica_set_name(services["mongo"])]
    assert env["SMTP_URL"] == "smtp://mailpit:1025"
    assert env["CONTACTGRAPH_HOST"] == "0.0.0.0"
    assert 8000 in container_ports(api)
    assert api["build"] in (".", {"context": "."})
    assert "/healthz" in healthcheck_command(api)


def test_api_environment_is_valid_settings(services):
    env = environment(services["api"])
    settings = Settings.from_env(env)
    assert settings.mongodb_uri == env["MONGODB_URI"]
    assert settings.smtp_url == "smtp://mailpit:1025"
    assert settings.port == int(env.get("CONTACTGRAPH_PORT", 8000))
    assert settings.public_url == env["CONTACTGRAPH_PUBLIC_URL"]


def test_mailpit_catches_smtp_and_shows_a_web_ui(services):
    mailpit = services["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert {1025, 8025} <= container_ports(mailpit)


def test_dockerfile_installs_and_serves_without_an_embedded_database():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(line.startswith("RUN pip install .") for line in lines)
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for needed in ("pyproject.toml", "README.md", "graph", "resolvers", "loaders"):
        assert needed in copied
    assert lines[-1] == 'CMD ["contactgraph", "serve", "--host", "0.0.0.0"]'
    # The database comes from compose's MONGODB_URI, never baked into the image.
    assert not any("MONGODB_URI" in line for line in lines)
