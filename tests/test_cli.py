"""`contactgraph serve` and `contactgraph keys` as a newcomer runs them: real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from graph.embedded import free_port
from resolvers.shops import find_key

CONTACTGRAPH = str(Path(sys.executable).with_name("contactgraph"))
START_SECONDS = 45


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "CONTACTGRAPH_"))}
    env.update(PYTHONUNBUFFERED="1", CONTACTGRAPH_KEY_CACHE_SECONDS="0", **extra)
    return env


class Serve:
    """One `contactgraph serve` process whose output is collected as it comes."""

    def __init__(
        self, args: list[str], env: dict[str, str], port: int, *, port_from_env: bool = False
    ) -> None:
        self.port = port
        self.lines: list[str] = []
        if port_from_env:
            env = {**env, "CONTACTGRAPH_PORT": str(port)}
        self.process = subprocess.Popen(
            [CONTACTGRAPH, *args, "serve", *([] if port_from_env else ["--port", str(port)])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}:\n{self.output}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"serve did not become ready:\n{self.output}")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"serve did not stop on {sig!r}:\n{self.output}")
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def admin_keys(self) -> list[str]:
        return [
            line.removeprefix("Admin key: ")
            for line in self.lines
            if line.startswith("Admin key: ")
        ]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONTACTGRAPH, *args], env=env, capture_output=True, text=True, timeout=60
    )


def gql(url: str, key: str, query: str, variables: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def assert_gone(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            assert process.status() == psutil.STATUS_ZOMBIE, f"{process} still runs"
        except psutil.NoSuchProcess:
            pass


CREATE = (
    'mutation { contactCreate(input: {email: "first@example.com"}) '
    "{ contact { id } userErrors { code } } }"
)
COUNT = "{ contacts { totalCount nodes { email } } }"


def test_serve_embedded_then_restart_and_manage_keys(tmp_path):
    data_dir = tmp_path / "cg"
    env = cli_env()
    port = free_port()

    # First start: a fresh data dir gets the demo shop and one ADMIN key.
    first = Serve(["--data-dir", str(data_dir)], env, port)
    try:
        first.wait_ready()
        [admin_key] = first.admin_keys()
        assert f"Playground: http://127.0.0.1:{port}/graphql" in first.lines
        assert (data_dir / "data").is_dir()
        children = first.descendants()
        assert any("secantusd" in " ".join(p.cmdline()) for p in children), children

        created = gql(first.url, admin_key, CREATE).json()
        assert created["data"]["contactCreate"]["userErrors"] == []

        # `keys` commands talk to the running server through the data dir.
        made = run_cli(
            [
                "--data-dir",
                str(data_dir),
                "keys",
                "create",
                "--shop",
                "demo",
                "--role",
                "reader",
                "--name",
                "Reporting",
            ],
            env,
        )
        assert made.returncode == 0, made.stderr
        reader_key = made.stdout.strip().splitlines()[-1]
        assert reader_key.startswith("cg_reader_")
        assert gql(first.url, reader_key, COUNT).json()["data"]["contacts"]["totalCount"] == 1
        refused = gql(first.url, reader_key, CREATE).json()
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

        listed = run_cli(["--data-dir", str(data_dir), "keys", "list", "--shop", "demo"], env)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if "Reporting" in line]
        assert len(rows) == 1 and "READER" in rows[0] and "active" in rows[0]
        assert reader_key not in listed.stdout and admin_key not in listed.stdout  # only prefixes
        key_id = rows[0].split()[0]

        revoked = run_cli(["--data-dir", str(data_dir), "keys", "revoke", key_id], env)
        assert revoked.returncode == 0, revoked.stderr
        assert gql(first.url, reader_key, COUNT).status_code == 401
        relisted = run_cli(["--data-dir", str(data_dir), "keys", "list", "--shop", "demo"], env)
        assert "revoked" in next(
            line for line in relisted.stdout.splitlines() if "Reporting" in line
        )
    finally:
        code = first.stop(signal.SIGTERM)
    assert code == 0, first.output
    assert_gone(children)
    assert not (data_dir / "server.json").exists()

    # Second start on the same data (named by the environment this time): no
    # new key, the data survived; Ctrl-C stops it.
    second = Serve(
        [], {**env, "CONTACTGRAPH_DATA_DIR": str(data_dir)}, free_port(), port_from_env=True
    )
    try:
        second.wait_ready()
        assert second.admin_keys() == []
        children = second.descendants()
        body = gql(second.url, admin_key, COUNT).json()
        assert body["data"]["contacts"] == {
            "totalCount": 1,
            "nodes": [{"email": "first@example.com"}],
        }
    finally:
        code = second.stop(signal.SIGINT)
    assert code == 0, second.output
    assert_gone(children)


async def test_with_mongodb_uri_no_embedded_server_starts(tmp_path, settings, database):
    env = cli_env(MONGODB_URI=settings.mongodb_uri or "", CONTACTGRAPH_DATABASE=settings.database)
    unused_dir = tmp_path / "never"

    made = run_cli(
        [
            "--data-dir",
            str(unused_dir),
            "keys",
            "create",
            "--shop",
            "cli-shop",
            "--role",
            "STAFF",
            "--name",
            "Clerk",
        ],
        env,
    )
    assert made.returncode == 0, made.stderr
    raw = made.stdout.strip().splitlines()[-1]
    found = await find_key(database, raw)
    assert found is not None
    key, shop = found
    assert (key.role.value, key.name, shop.id) == ("STAFF", "Clerk", "cli-shop")

    server = Serve(["--data-dir", str(unused_dir)], env, free_port())
    try:
        server.wait_ready()
        assert server.descendants() == []
        assert "embedded database" not in server.output
        assert gql(server.url, raw, COUNT).json()["data"]["contacts"]["totalCount"] == 0
    finally:
        code = server.stop()
    assert code == 0, server.output
    assert not unused_dir.exists()


def test_bad_arguments_and_settings_stop_at_once(tmp_path):
    result = run_cli(
        [
            "--data-dir",
            str(tmp_path),
            "keys",
            "create",
            "--shop",
            "demo",
            "--role",
            "ROOT",
            "--name",
            "x",
        ],
        cli_env(),
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    result = run_cli(["--data-dir", str(tmp_path), "serve"], cli_env(CONTACTGRAPH_PORT="eighty"))
    assert result.returncode == 2
    assert "CONTACTGRAPH_PORT must be a whole number" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started or written
