"""`contactgraph` as a newcomer runs it: the real executable in a process of its own.

`Serve` starts `contactgraph serve` and collects its output as it comes;
`run_cli` runs one command to its end. Both start from an environment
cleaned of MONGODB_* and CONTACTGRAPH_* so nothing of the developer's shell
leaks in (`cli_env(**extra)` adds what a test wants).
"""

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

CONTACTGRAPH = str(Path(sys.executable).with_name("contactgraph"))
START_SECONDS = 45


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "CONTACTGRAPH_"))}
    env.update(PYTHONUNBUFFERED="1", CONTACTGRAPH_KEY_CACHE_SECONDS="0", **extra)
    return env


class Serve:
    """One `contactgraph serve` process whose output is collected as it comes.

    `args` go before `serve` and `serve_args` after it; the port is given
    with `--port` unless `port_from_env`.
    """

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        port: int,
        *,
        port_from_env: bool = False,
        serve_args: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = port
        self.lines: list[str] = []
        if port_from_env:
            env = {**env, "CONTACTGRAPH_PORT": str(port)}
        port_args = [] if port_from_env else ["--port", str(port)]
        self.process = subprocess.Popen(
            [CONTACTGRAPH, *args, "serve", *port_args, *(serve_args or [])],
            env=env,
            cwd=cwd,
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


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONTACTGRAPH, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
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
