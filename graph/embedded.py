"""The embedded MongoDB-compatible server (SecantusDB), run as a separate program.

contactgraph never imports SecantusDB (it is GPL-2.0): it starts its
`secantusd-py` command as a child process on a free loopback port and talks
to it over the MongoDB wire protocol like to any other server.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SERVER_FILE = "server.json"
START_TIMEOUT_SECONDS = 60.0
# After a crash the previous database process takes a few seconds to close
# its files; a new start waits this long for it before giving up.
RELEASE_WAIT_SECONDS = 15.0
# A leftover of a crashed `serve` that still holds its files this long after
# being told to stop is stuck: it is killed, and WiredTiger recovers at the start.
LEFTOVER_GRACE_SECONDS = 5.0
# WiredTiger holds an fcntl lock on the first byte of this file while it runs.
LOCK_FILE = "WiredTiger.lock"
_HELD_BY_ANOTHER = "already being managed by another process"


class EmbeddedServerError(RuntimeError):
    pass


class DatabaseBusy(EmbeddedServerError):
    """Another process keeps the data directory's database open."""


class NoDatabase(EmbeddedServerError):
    """A command other than `serve` found no database to work on."""


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
    # Imported here: `contactgraph --help` and the commands that stop early never load the driver.
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _answers(uri: str, timeout_ms: int = 1000) -> bool:
    """`ping` for a server that is up, through the async client.

    A command that finds serve's database running asks it once; the sync
    client's monitor threads would keep that command's process alive for
    half a second after its work is done.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from pymongo import AsyncMongoClient
    from pymongo.errors import PyMongoError

    async def answer() -> bool:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=timeout_ms)
        try:
            await client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            await client.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(answer())
    with ThreadPoolExecutor(1) as thread:  # called from async code: a loop of its own
        return thread.submit(asyncio.run, answer()).result()


def lock_is_held(storage: Path) -> bool:
    """Whether a database process (another than this one) has the storage directory open."""
    try:
        fd = os.open(storage / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False  # no database there yet, or one this process cannot open: the start will say
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        return False
    finally:
        os.close(fd)


def has_database(data_dir: Path) -> bool:
    """Whether `serve` has ever created its database under this data dir."""
    return (data_dir / "data" / "WiredTiger").is_file()


class EmbeddedServer:
    """One `secantusd-py` child process; `storage` is a directory or ':memory:'.

    `cache_size` is WiredTiger's ("512M", "2G"); by default
    CONTACTGRAPH_EMBEDDED_CACHE_MB (graph/settings.py).

    A directory still held by a previous database process (one that outlived
    a crashed `contactgraph` by a few seconds) is waited for, up to
    `release_wait` seconds; `on_wait` hears once that the start is waiting.
    `leftover` is the pid of the database process a crashed `serve` left on
    this storage (`leftover_database`): it is told to stop, and killed if it
    still holds the files after LEFTOVER_GRACE_SECONDS.
    """

    def __init__(
        self,
        storage: str | Path,
        cache_size: str | None = None,
        *,
        release_wait: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        leftover: int | None = None,
    ) -> None:
        self.storage = str(storage)
        if cache_size is None:
            from graph.settings import embedded_cache_mb

            cache_size = f"{embedded_cache_mb()}M"
        self.cache_size = cache_size
        self.release_wait = RELEASE_WAIT_SECONDS if release_wait is None else release_wait
        self.on_wait = on_wait
        self.leftover = leftover
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> EmbeddedServer:
        if self.storage == ":memory:":
            return self._start_once()
        storage = Path(self.storage)
        storage.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        deadline = began + self.release_wait
        stuck = self.leftover
        if stuck is not None:
            # Told once more: the stop its crashed parent sent may never have come.
            _signal(stuck, signal.SIGTERM)
        told = False
        while True:
            if stuck is not None and time.monotonic() - began >= LEFTOVER_GRACE_SECONDS:
                if lock_is_held(storage):
                    if self.on_wait is not None:
                        self.on_wait(
                            f"The previous database process (pid {stuck}) did not stop by itself; "
                            "stopping it ..."
                        )
                    _signal(stuck, signal.SIGKILL)
                stuck = None
            if not lock_is_held(storage):
                try:
                    return self._start_once()
                except DatabaseBusy:
                    pass  # taken between the look and the start: wait like for any other holder
            if time.monotonic() >= deadline:
                raise DatabaseBusy(
                    f"the database in {storage.absolute()} is still in use by another process "
                    f"after {self.release_wait:g} s; stop that process (another contactgraph "
                    "or secantusd-py on this data dir) and try again"
                )
            if not told and self.on_wait is not None:
                self.on_wait(
                    f"Waiting for the previous database process to release {storage.absolute()} "
                    f"(up to {self.release_wait:g} s) ..."
                )
                told = True
            time.sleep(0.2)

    def _start_once(self) -> EmbeddedServer:
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
            # Absolute: the next `serve` recognises a leftover process by it (leftover_database).
            self.storage if self.storage == ":memory:" else str(Path(self.storage).absolute()),
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
                self.process = None
                if _HELD_BY_ANOTHER in err:
                    raise DatabaseBusy(f"the database in {self.storage} is in use")
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


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def record_running(data_dir: Path, uri: str, database_pid: int | None = None) -> None:
    """Tell other `contactgraph` commands where the running server listens.

    `database_pid` lets the next `serve` recognise the database process this
    one leaves behind if it crashes.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SERVER_FILE
    path.write_text(json.dumps({"uri": uri, "pid": os.getpid(), "databasePid": database_pid}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_database(data_dir: Path) -> int | None:
    """The pid of the database process a crashed `serve` on this data dir left running, if any.

    Only a process `serve` recorded, whose `serve` is gone, and that still
    runs `secantusd-py` on this data dir's storage (a pid the system has
    given to another program since is left alone). Linux only: elsewhere None.
    """
    try:
        info = json.loads((data_dir / SERVER_FILE).read_text())
        serve_pid, database_pid = int(info["pid"]), int(info["databasePid"])
        command = Path(f"/proc/{database_pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _alive(serve_pid):
        return None
    storage = str((data_dir / "data").absolute()).encode()
    runs_database = any(part.endswith(b"secantusd-py") for part in command)
    return database_pid if runs_database and storage in command else None


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
    return uri if _answers(uri) else None


@contextlib.contextmanager
def database_uri(
    mongodb_uri: str | None, data_dir: Path, on_wait: Callable[[str], None] | None = None
) -> Iterator[str]:
    """MONGODB_URI when set, else the running embedded server, else one started for the block.

    Never a new database: NoDatabase when the data dir holds none, so a
    command run in the wrong folder says so instead of working on an empty one.
    """
    if mongodb_uri:
        yield mongodb_uri
        return
    uri = running_uri(data_dir)
    if uri:
        yield uri
        return
    if not has_database(data_dir):
        raise NoDatabase(
            f"no database in {data_dir.absolute()}: run this command where `contactgraph serve` "
            "keeps its data, or name that folder with --data-dir (or CONTACTGRAPH_DATA_DIR), "
            "or set MONGODB_URI"
        )
    leftover = leftover_database(data_dir)
    with EmbeddedServer(data_dir / "data", on_wait=on_wait, leftover=leftover) as server:
        yield server.uri
