"""`serve` right after a crash: the previous database process still holds the data for a few seconds.

After `kill -9` of contactgraph, its database child is told to stop (it dies
with its parent) and takes a few seconds to close its files, holding
WiredTiger.lock meanwhile. A new start waits for it, saying so, and gives up
with one clear line only if it never lets go. A database process the crashed
`serve` itself left behind is stopped by the next one, killed if it is stuck;
no other process is ever touched.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from serve_process import Serve, assert_gone, cli_env, gql

from graph import embedded
from graph.cli.main import main
from graph.embedded import (
    SERVER_FILE,
    DatabaseBusy,
    EmbeddedServer,
    free_port,
    leftover_database,
    record_running,
)

CREATE = (
    'mutation { contactCreate(input: {email: "before.crash@example.com"}) '
    "{ contact { id } userErrors { code } } }"
)
COUNT = "{ contacts { totalCount nodes { email } } }"
# Another process holding the database's lock as WiredTiger does (fcntl, first byte),
# until its standard input closes.
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def lock_held(storage: Path) -> Iterator[subprocess.Popen[str]]:
    storage.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(storage / embedded.LOCK_FILE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    try:
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    if holder.poll() is None:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    if holder.stdout is not None:
        holder.stdout.close()


def test_serve_comes_back_at_once_after_a_crash_and_keeps_the_data(tmp_path):
    data_dir = tmp_path / "cg"
    env = cli_env()
    first = Serve(["--data-dir", str(data_dir)], env, free_port())
    try:
        first.wait_ready()
        [key] = first.admin_keys()
        created = gql(first.url, key, CREATE).json()
        assert created["data"]["contactCreate"]["userErrors"] == []
        database = first.descendants()
        # The API process only, not its group: its database child outlives it for a moment.
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()

    second = Serve([], env, free_port(), serve_args=["--data-dir", str(data_dir)])
    try:
        second.wait_ready()
        assert second.admin_keys() == []  # the same database, not a new one
        body = gql(second.url, key, COUNT).json()
        assert body["data"]["contacts"] == {
            "totalCount": 1,
            "nodes": [{"email": "before.crash@example.com"}],
        }
        assert_gone(database)
        assert "Traceback" not in second.output
    finally:
        code = second.stop()
    assert code == 0, second.output


def test_a_stuck_database_left_by_a_crashed_serve_is_killed_by_the_next_serve(tmp_path):
    data_dir = tmp_path / "cg"
    env = cli_env()
    first = Serve(["--data-dir", str(data_dir)], env, free_port())
    try:
        first.wait_ready()
        [key] = first.admin_keys()
        assert gql(first.url, key, CREATE).json()["data"]["contactCreate"]["userErrors"] == []
        [database] = first.descendants()
        # Acknowledged writes reach the journal file a moment later (as on mongod without j: true).
        time.sleep(1.0)
        # Stopped, it cannot act on the stop its parent's death sends it: it holds the data.
        database.suspend()
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    time.sleep(1.0)
    assert database.is_running() and database.status() == psutil.STATUS_STOPPED

    second = Serve(["--data-dir", str(data_dir)], env, free_port())
    try:
        second.wait_ready()
        body = gql(second.url, key, COUNT).json()
        assert body["data"]["contacts"]["totalCount"] == 1
        assert_gone([database])
        assert (
            f"The previous database process (pid {database.pid}) did not stop by itself; "
            "stopping it ..." in second.lines
        )
    finally:
        code = second.stop()
    assert code == 0, second.output


def gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_the_database_a_crashed_serve_recorded_counts_as_left_over(tmp_path):
    data_dir = tmp_path / "cg"
    with EmbeddedServer(data_dir / "data") as server:
        assert server.process is not None
        record_running(data_dir, server.uri, server.process.pid)
        # serve (this process) still runs: its database is not left over.
        assert leftover_database(data_dir) is None
        info = json.loads((data_dir / SERVER_FILE).read_text())
        (data_dir / SERVER_FILE).write_text(json.dumps({**info, "pid": gone_pid()}))
        assert leftover_database(data_dir) == server.process.pid
        # The same process seen from another data dir is not that dir's database.
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / SERVER_FILE).write_text((data_dir / SERVER_FILE).read_text())
        assert leftover_database(tmp_path / "other") is None
    # Gone, or its number given to another program: nothing to stop.
    assert leftover_database(data_dir) is None
    (data_dir / SERVER_FILE).write_text(json.dumps({**info, "pid": gone_pid(), "databasePid": 1}))
    assert leftover_database(data_dir) is None


def test_a_process_that_is_not_the_recorded_database_is_never_stopped(tmp_path):
    storage = tmp_path / "cg" / "data"
    with lock_held(storage) as holder:
        # What a pid reused by another program after a crash would look like.
        (tmp_path / "cg" / SERVER_FILE).write_text(
            json.dumps(
                {"uri": "mongodb://127.0.0.1:1", "pid": gone_pid(), "databasePid": holder.pid}
            )
        )
        leftover = leftover_database(tmp_path / "cg")
        assert leftover is None
        with pytest.raises(DatabaseBusy):
            EmbeddedServer(storage, release_wait=0.5, leftover=leftover).start()
        assert holder.poll() is None


def test_a_start_waits_for_the_previous_process_to_let_go(tmp_path):
    storage = tmp_path / "data"
    heard: list[str] = []
    with lock_held(storage) as holder:
        server = EmbeddedServer(storage, release_wait=30, on_wait=heard.append)
        began = time.monotonic()
        # Let go a second from now, while the start is waiting.
        timer = threading.Timer(1.0, release, [holder])
        timer.start()
        try:
            server.start()
        finally:
            timer.join()
    try:
        assert time.monotonic() - began >= 1.0
        assert heard == [
            f"Waiting for the previous database process to release {storage} (up to 30 s) ..."
        ]
        assert embedded.ping(server.uri)
    finally:
        server.stop()


def test_a_start_gives_up_with_one_line_when_the_data_is_never_released(
    tmp_path, monkeypatch, capsys
):
    data_dir = tmp_path / "cg"
    monkeypatch.setattr(embedded, "RELEASE_WAIT_SECONDS", 1.0)
    for name in ("MONGODB_URI", "CONTACTGRAPH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with lock_held(data_dir / "data"):
        with pytest.raises(DatabaseBusy):
            EmbeddedServer(data_dir / "data", release_wait=0.5).start()
        code = main(["serve", "--data-dir", str(data_dir), "--port", str(free_port())])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        f"Waiting for the previous database process to release {data_dir / 'data'} (up to 1 s) ...",
        f"contactgraph: the database in {data_dir / 'data'} is still in use by another "
        "process after 1 s; stop that process (another contactgraph or secantusd-py "
        "on this data dir) and try again",
    ]
    assert "Traceback" not in out + err
    assert not (data_dir / "server.json").exists()
