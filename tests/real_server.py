"""The real `contactgraph serve` process, for tests that talk to it with third-party clients.

Use the `real_server` fixture (module-scoped: one server per test file) by
importing it into a test module::

    from real_server import RunningServer, real_server_fixture  # noqa: F401

    def test_something(real_server: RunningServer) -> None:
        url, key = real_server          # "http://127.0.0.1:PORT", the demo shop's ADMIN key
        real_server.graphql_url         # url + "/graphql"; real_server.ws_url: ws://.../graphql

The server is `.venv/bin/contactgraph --data-dir <tmp dir> serve --port <free port>`
(the executable beside `sys.executable`), with the embedded database under the
temporary data dir. When the test run itself has `MONGODB_URI`, the server uses
that MongoDB with a database of its own, dropped when the server stops. Its
`Admin key: ...` line is the key; the fixture waits for `GET /healthz` to answer
200, and on the way out sends SIGTERM to the server's process group (SIGKILL
after 20 s, to the embedded database too). For a server outside a fixture, use
`running_server(data_dir)`.

Tests that need a client that is not Python (Node, a browser) call
`missing_client(reason)` when it is absent: in CI (`CI=true`) that fails the
test, locally it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, NoReturn

import httpx
import psutil
import pytest

from graph.embedded import free_port

CONTACTGRAPH = str(Path(sys.executable).with_name("contactgraph"))
READY_SECONDS = 60
STOP_SECONDS = 20
ADMIN_KEY = "Admin key: "


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_client(reason: str) -> NoReturn:
    """A client a test needs is not there: a failure in CI, a skip with `reason` elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI must have it)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


class RunningServer(NamedTuple):
    """A running `contactgraph serve`: its base URL and the demo shop's ADMIN key."""

    url: str
    key: str

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"{self.url.replace('http://', 'ws://', 1)}/graphql"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def graphql(self, query: str, variables: dict[str, object] | None = None) -> dict:
        """POSTs one operation with the key; the decoded JSON answer (asserted to be 200)."""
        response = httpx.post(
            self.graphql_url,
            json={"query": query, "variables": variables or {}},
            headers=self.headers,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


class _Output:
    """Collects the server's stdout and stderr lines as they come, so a failure can show them."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))

    def join(self) -> None:
        self._thread.join(timeout=5)

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _server_env(database: str | None) -> dict[str, str]:
    # The server reads its whole configuration from the environment: start it
    # from a clean one so nothing of the developer's shell leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "CONTACTGRAPH_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if database is not None:
        env["MONGODB_URI"] = os.environ["MONGODB_URI"]
        env["CONTACTGRAPH_DATABASE"] = database
        # A database of its own, new: what `contactgraph migrate` would do first.
        env["CONTACTGRAPH_MIGRATE_ON_START"] = "1"
    return env


def _wait_ready(process: subprocess.Popen[str], output: _Output, url: str) -> str:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.join()
            pytest.fail(f"contactgraph serve exited with {process.returncode}:\n{output}")
        keys = [line.removeprefix(ADMIN_KEY) for line in output.lines if line.startswith(ADMIN_KEY)]
        if keys:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return keys[0].strip()
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    pytest.fail(f"contactgraph serve was not ready within {READY_SECONDS} s:\n{output}")


def _stop(process: subprocess.Popen[str]) -> None:
    try:
        # The embedded database runs in a session of its own: note it now, to
        # kill it too should the server not stop it.
        descendants = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, psutil.NoSuchProcess):
        process.wait()
        return
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def _drop_database(name: str) -> None:
    from pymongo import MongoClient

    client: MongoClient = MongoClient(os.environ["MONGODB_URI"])
    try:
        client.drop_database(name)
    finally:
        client.close()


@contextmanager
def running_server(data_dir: Path) -> Iterator[RunningServer]:
    """Starts `contactgraph serve` on a free port with its data in `data_dir`; stops it on exit."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = (
        f"contactgraph_clients_{os.getpid()}_{port}" if os.environ.get("MONGODB_URI") else None
    )
    process = subprocess.Popen(
        [CONTACTGRAPH, "--data-dir", str(data_dir), "serve", "--port", str(port)],
        env=_server_env(database),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A process group of its own: the stop reaches uvicorn's workers too.
        start_new_session=True,
    )
    output = _Output(process)
    try:
        yield RunningServer(url, _wait_ready(process, output, url))
    finally:
        _stop(process)
        output.join()
        if process.stdout is not None:
            process.stdout.close()
        if database is not None:
            _drop_database(database)


# Named apart from its function so that importing it into a test module does
# not clash (for linters) with the `real_server` parameters of the tests.
@pytest.fixture(scope="module", name="real_server")
def real_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real `contactgraph serve` for the test module: `url, key = real_server`."""
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server
