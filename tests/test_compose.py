"""docker-compose.yml and the Dockerfile, checked by reading them (Docker does not run here)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from graph.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# What an operator exports before `docker compose up`.
OPERATOR_ENV = {"MONGO_PASSWORD": "0f3c9a7d51e24b8c9a0d6e1f2b3c4d5e"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` (an unset required one raises)."""

    def value(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise LookupError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return _VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


def environment(service: dict, env: dict[str, str] | None = None) -> dict[str, str]:
    values = service.get("environment") or {}
    if isinstance(values, list):  # the "KEY=value" form
        values = dict(item.split("=", 1) for item in values)
    return {k: interpolate(str(v), OPERATOR_ENV if env is None else env) for k, v in values.items()}


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


def mongod_args(mongo: dict) -> list[str]:
    command = mongo["command"]
    return command if isinstance(command, list) else shlex.split(command)


def replica_set_name(mongo: dict) -> str:
    args = mongod_args(mongo)
    return args[args.index("--replSet") + 1]


def test_the_services(services):
    assert set(services) == {"mongo", "migrate", "api", "mailpit", "tests"}
    # `docker compose up` leaves the test runner out.
    assert services["tests"]["profiles"] == ["tests"]


def test_the_api_starts_after_its_database_was_migrated(services):
    migrate = services["migrate"]
    assert migrate["command"] == ["contactgraph", "migrate"]
    assert migrate["build"] == services["api"]["build"]
    assert migrate["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    # Both reach the same database.
    for name in ("MONGODB_URI", "CONTACTGRAPH_DATABASE"):
        assert environment(migrate)[name] == environment(services["api"])[name]


def test_the_test_suite_runs_against_the_compose_mongodb(services):
    tests = services["tests"]
    assert tests["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert environment(tests)["MONGODB_URI"] == environment(services["api"])["MONGODB_URI"]
    command = " ".join(tests["command"])
    assert "pip install -q -e '.[test]'" in command and "pytest" in command


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


def test_mongo_requires_authentication_with_credentials_from_the_environment(services):
    mongo = services["mongo"]
    env = environment(mongo)
    assert env["MONGO_INITDB_ROOT_USERNAME"] == "contactgraph"
    assert env["MONGO_INITDB_ROOT_PASSWORD"] == OPERATOR_ENV["MONGO_PASSWORD"]
    # No password of its own: without MONGO_PASSWORD compose refuses to start.
    with pytest.raises(LookupError, match="MONGO_PASSWORD"):
        environment(mongo, env={})
    assert (
        environment(mongo, {**OPERATOR_ENV, "MONGO_USERNAME": "ops"})["MONGO_INITDB_ROOT_USERNAME"]
        == "ops"
    )
    # The health check (which initiates the set) has to log in.
    check = healthcheck_command(mongo)
    assert "-u" in check.split() and "-p" in check.split()
    assert "$$MONGO_INITDB_ROOT_PASSWORD" in check  # read in the container, not written here
    assert "--authenticationDatabase admin" in " ".join(check.split())


def test_mongo_members_authenticate_with_a_key_file_made_on_the_first_start(services):
    mongo = services["mongo"]
    args = mongod_args(mongo)
    key_file = args[args.index("--keyFile") + 1]
    entrypoint = mongo["entrypoint"]
    assert entrypoint[:2] == ["bash", "-c"]
    script = interpolate(entrypoint[2], OPERATOR_ENV)
    assert f"key={key_file}" in script
    assert 'head -c 756 /dev/urandom | base64 -w 0 > "$key"' in script  # 1,008 base64 characters
    assert 'chown mongodb:mongodb "$key"' in script
    assert 'chmod 400 "$key"' in script  # mongod refuses a key file others can read
    assert script.rstrip().endswith('exec docker-entrypoint.sh "$@"')
    # Kept in a volume: the key stays the same across restarts.
    volume = f"{Path(key_file).parent}"
    assert any(v.endswith(f":{volume}") for v in mongo["volumes"])


def test_mongo_is_not_published_to_the_host(services):
    mongo = services["mongo"]
    assert "ports" not in mongo
    assert container_ports(mongo) == set()


def test_api_waits_for_a_healthy_mongo_and_logs_in(services):
    api = services["api"]
    assert api["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert "mailpit" in api["depends_on"]
    env = environment(api)
    uri = urlsplit(env["MONGODB_URI"])
    assert uri.scheme == "mongodb"
    assert uri.hostname == "mongo" and (uri.port or 27017) == 27017
    assert (uri.username, uri.password) == ("contactgraph", OPERATOR_ENV["MONGO_PASSWORD"])
    query = parse_qs(uri.query)
    assert query["replicaSet"] == [replica_set_name(services["mongo"])]
    assert query["authSource"] == ["admin"]
    assert env["SMTP_URL"] == "smtp://mailpit:1025"
    assert env["CONTACTGRAPH_HOST"] == "0.0.0.0"
    assert env["CONTACTGRAPH_LOG_FORMAT"] == "json"
    assert 8000 in container_ports(api)
    assert api["build"] in (".", {"context": "."})
    assert "/readyz" in healthcheck_command(api)


def test_api_environment_is_valid_settings(services):
    env = environment(services["api"])
    settings = Settings.from_env(env)
    assert settings.mongodb_uri == env["MONGODB_URI"]
    assert settings.smtp_url == "smtp://mailpit:1025"
    assert settings.port == int(env.get("CONTACTGRAPH_PORT", 8000))
    assert settings.public_url == env["CONTACTGRAPH_PUBLIC_URL"]
    assert settings.log_format == "json"
    assert settings.metrics_token is None  # /metrics only when the operator sets a token
    token = "f" * 32
    with_token = environment(services["api"], {**OPERATOR_ENV, "CONTACTGRAPH_METRICS_TOKEN": token})
    assert Settings.from_env(with_token).metrics_token == token


def test_api_is_given_time_to_finish_requests_when_stopped(services):
    grace = services["api"]["stop_grace_period"]
    assert re.fullmatch(r"\d+s", grace)
    assert int(grace[:-1]) > Settings().shutdown_grace_seconds


def test_mailpit_catches_smtp_and_shows_a_web_ui(services):
    mailpit = services["mailpit"]
    # A release's own tag (vX.Y.Z), never `latest`.
    assert re.fullmatch(r"axllent/mailpit:v1\.\d+\.\d+", mailpit["image"])
    assert {1025, 8025} <= container_ports(mailpit)


def dockerfile_lines() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [
        " ".join(line.split())
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_dockerfile_installs_and_serves_without_an_embedded_database():
    lines = dockerfile_lines()
    assert lines[0] == "FROM python:3.11-slim"
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for needed in ("pyproject.toml", "README.md", "graph", "resolvers", "loaders"):
        assert needed in copied
    assert lines[-1] == 'CMD ["contactgraph", "serve", "--host", "0.0.0.0"]'
    # The database comes from compose's MONGODB_URI, never baked into the image.
    assert not any("MONGODB_URI" in line for line in lines)
    [install] = [line for line in lines if line.startswith("RUN ")]
    assert "pip install -r /tmp/requirements.txt" in install
    assert "pip install --no-deps ." in install
    assert "not d.startswith('secantusdb')" in install


def test_the_image_requirements_are_the_pinned_dependencies_but_the_embedded_database():
    # What the Dockerfile's RUN line computes, from the same pyproject.toml.
    [install] = [line for line in dockerfile_lines() if line.startswith("RUN ")]
    program = re.search(r'python -c "(.+?)" > /tmp/requirements.txt', install).group(1)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [
        d
        for d in project["dependencies"] + project["optional-dependencies"]["otel"]
        if not d.startswith("secantusdb")
    ]
    # Inside the shell's double quotes `\\n` stays as it is, and Python reads it as a newline.
    made = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    requirements = made.stdout.split()
    assert requirements == wanted
    assert all("==" in r for r in requirements)  # pinned
    assert not any(r.startswith("secantusdb") for r in requirements)
    assert any(r.startswith("prometheus-client==") for r in requirements)


def test_dockerfile_runs_as_a_user_without_privileges_and_logs_json():
    lines = dockerfile_lines()
    [user] = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in {"root", "0"}
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "CONTACTGRAPH_LOG_FORMAT=json" in env
    assert "STOPSIGNAL SIGTERM" in lines


def test_the_readme_says_how_to_get_the_first_admin_key_with_compose():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Docker compose") :]
    section = section[: section.index("\n## ", 1)]
    assert "MONGO_PASSWORD" in section
    assert "docker compose exec api contactgraph keys create --shop demo --role ADMIN" in section
