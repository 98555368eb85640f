"""The embedded MongoDB-compatible server (SecantusDB), run as a separate program.

contactgraph never imports SecantusDB (it is GPL-2.0): it starts its
`secantusd-py` command as a child process on a free loopback port and talks
to it over the MongoDB wire protocol like to any other server.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

SERVER_FILE = "server.json"
START_TIMEOUT_SECONDS = 60.0


class EmbeddedServerError(RuntimeError):
    pass


def _executable() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("secantusd-py")
    if not found:
        raise EmbeddedServerError(
            "secantusd-py was not found: install contactgraph's dependencies "
            "(pip install -e .) or set MONGODB_URI"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If contactgraph is killed outright, the database must not outlive it.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def ping(uri: str, timeout_ms: int = 1000) -> bool:
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


class EmbeddedServer:
    """One `secantusd-py` child process; `storage` is a directory or ':memory:'."""

    def __init__(self, storage: str | Path, cache_size: str = "256M") -> None:
        self.storage = str(storage)
        self.cache_size = cache_size
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> EmbeddedServer:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # A file, not a pipe: nobody reads the server's output while it runs,
        # and a full pipe would block it. It is read when the start fails.
        self._stderr = tempfile.TemporaryFile()
        command = [
            _executable(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            self.storage,
            "--log-level",
            "WARNING",
            "--cache-size",
            self.cache_size,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            # Its own session: a Ctrl-C in the terminal reaches contactgraph,
            # which then stops the database after the web server, in order.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")
                self._close_log()
                raise EmbeddedServerError(
                    f"the embedded database exited at start: {err.strip()[-2000:]}"
                )
            if ping(self.uri, timeout_ms=500):
                return self
            time.sleep(0.1)
        self.stop()
        raise EmbeddedServerError("the embedded database did not answer within a minute")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def record_running(data_dir: Path, uri: str) -> None:
    """Tell other `contactgraph` commands where the running server listens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SERVER_FILE
    path.write_text(json.dumps({"uri": uri, "pid": os.getpid()}))


def forget_running(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / SERVER_FILE).unlink()


def running_uri(data_dir: Path) -> str | None:
    """The address of the server a live `contactgraph serve` runs on this data dir, if any."""
    try:
        info = json.loads((data_dir / SERVER_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    uri = str(info["uri"])
    return uri if ping(uri) else None


@contextlib.contextmanager
def database_uri(mongodb_uri: str | None, data_dir: Path) -> Iterator[str]:
    """MONGODB_URI when set, else the running embedded server, else one started for the block."""
    if mongodb_uri:
        yield mongodb_uri
        return
    uri = running_uri(data_dir)
    if uri:
        yield uri
        return
    with EmbeddedServer(data_dir / "data") as server:
        yield server.uri
