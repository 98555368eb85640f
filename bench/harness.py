"""What every benchmark needs: a database, seeded data, the real API over HTTP, clocks and load.

Benchmarks print numbers (JSON on stdout, progress on stderr); they never
pass or fail. Everything here talks to real processes on loopback: the
embedded SecantusDB (or MONGODB_URI), and uvicorn running the app as
`contactgraph serve` does (factory `graph.http.app:app_from_env`, uvloop,
httptools; the access log only when asked for).

The machine is usually shared: measure things side by side in one run
(`SideBySide`), report medians with their spread (`summary`), and prefer CPU
time (`ProcessCpu`, `SideBySide.cpu`) where other processes' load would
swamp a wall-clock difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from pymongo import monitoring  # noqa: E402

from graph.embedded import EmbeddedServer, free_port  # noqa: E402
from loaders.mongo import Database, connect  # noqa: E402
from resolvers.migrations import migrate  # noqa: E402
from resolvers.shops import Role, create_key, ensure_shop  # noqa: E402

SHOP = "bench"
SCHEMA_SDL = ROOT / "graph" / "schema.graphql"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The benchmark's answer: one JSON document on stdout."""
    print(json.dumps(result, indent=2, default=str))


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "platform": platform.platform(),
    }


# --- the database -----------------------------------------------------------


@dataclass
class DatabaseServer:
    uri: str
    kind: str  # "embedded-secantusdb" or "mongodb-uri"
    name: str  # the database (namespace) this run owns
    pid: int | None = None  # the embedded server's process, to read its CPU time


@contextlib.contextmanager
def database_server(storage: str = ":memory:") -> Iterator[DatabaseServer]:
    """MONGODB_URI when set (a database of this run's own, dropped after), else an embedded server."""
    name = f"contactgraph_bench_{os.getpid()}"
    if os.environ.get("MONGODB_URI"):
        uri = os.environ["MONGODB_URI"]
        try:
            yield DatabaseServer(uri, "mongodb-uri", name)
        finally:
            from pymongo import MongoClient

            with MongoClient(uri) as client:
                client.drop_database(name)
        return
    with EmbeddedServer(storage) as server:
        pid = server.process.pid if server.process is not None else None
        yield DatabaseServer(server.uri, "embedded-secantusdb", name, pid)


@contextlib.asynccontextmanager
async def open_database(server: DatabaseServer, **options: Any) -> AsyncIterator[Database]:
    client = connect(server.uri, serverSelectionTimeoutMS=10_000, **options)
    try:
        database = Database(client[server.name])
        # What `contactgraph migrate` does once per deploy; the API then only checks.
        await migrate(database)
        yield database
    finally:
        await client.close()


async def seed_contacts(
    database: Database, shop: str, contacts: int, orders_per_contact: int = 0
) -> float:
    """Seed like `contactgraph seed --contacts N`; returns the seconds it took."""
    from graph.cli.seed import seed_shop

    started = time.perf_counter()
    await seed_shop(database, shop, contacts, orders_per_contact)
    return time.perf_counter() - started


async def admin_key(database: Database, shop: str = SHOP) -> str:
    await ensure_shop(database, shop)
    _, raw = await create_key(database, shop, Role.ADMIN, "Bench admin")
    return raw


class CommandCounter(monitoring.CommandListener):
    """Counts the MongoDB commands a client sends (handshakes and pings aside)."""

    IGNORED = frozenset({"hello", "ismaster", "isMaster", "endSessions", "ping", "buildInfo"})

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in self.IGNORED:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reset(self) -> None:
        self.names.clear()


# --- the API ----------------------------------------------------------------


class ApiServer:
    """uvicorn serving the real app in child processes on a free loopback port."""

    def __init__(
        self,
        server: DatabaseServer,
        workers: int = 1,
        key_cache_seconds: int = 5,
        root: Path = ROOT,
        access_log: bool = False,
    ) -> None:
        self.server = server
        self.access_log = access_log  # `contactgraph serve` logs every request (log level info)
        self.workers = workers
        self.key_cache_seconds = key_cache_seconds
        self.root = Path(root)  # another checkout serves its own code (see --baseline)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._output: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "graph.http.app:app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers),
            "--loop", "uvloop", "--http", "httptools",
            # info: each worker's "Application startup complete" tells when all are up.
            "--log-level", "info", "--access-log" if self.access_log else "--no-access-log",
            # Interleaved rounds leave a connection idle for seconds at a
            # time; uvicorn's default (5 s) would close it under the client.
            "--timeout-keep-alive", "300",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> ApiServer:
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            MONGODB_URI=self.server.uri,
            CONTACTGRAPH_DATABASE=self.server.name,
            CONTACTGRAPH_KEY_CACHE_SECONDS=str(self.key_cache_seconds),
            PYTHONPATH=os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")])),
        )
        # Benchmarks measure work, not the per-key budget: a bench that studies
        # throttling sets these itself.
        env.setdefault("CONTACTGRAPH_THROTTLE_BUCKET", "100000000")
        env.setdefault("CONTACTGRAPH_COST_LIMIT", "1000000")
        self._output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited at start:\n{self.output()[-3000:]}")
            if _healthy(self.port):
                if self.workers > 1:
                    self._wait_for_workers(deadline)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer within {timeout} s:\n{self.output()[-3000:]}")

    def _wait_for_workers(self, deadline: float) -> None:
        # The first worker up answers /healthz; the others share the socket
        # only once their lifespan has run, which their log line tells.
        while time.monotonic() < deadline:
            if self.output().count("Application startup complete") >= self.workers:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"not all {self.workers} uvicorn workers started:\n{self.output()[-3000:]}"
        )

    def output(self) -> str:
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this object started
                process.wait()
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _healthy(port: int) -> bool:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@contextlib.asynccontextmanager
async def in_process_api(server: DatabaseServer, **settings: Any) -> AsyncIterator[Any]:
    """The app inside its lifespan, behind an httpx client on the ASGI transport (no sockets)."""
    import httpx
    from asgi_lifespan import LifespanManager

    from graph.http.app import create_app
    from graph.settings import Settings

    settings.setdefault("throttle_bucket", 100_000_000)
    settings.setdefault("cost_limit", 1_000_000)
    app = create_app(Settings(mongodb_uri=server.uri, database=server.name, **settings))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client


# --- a small HTTP/1.1 client ------------------------------------------------


class HttpError(RuntimeError):
    pass


class HttpConnection:
    """One keep-alive HTTP/1.1 connection.

    Hand-written so the client's own cost stays far below the server's: the
    load generator shares the machine's cores with the server it measures.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> HttpConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self.writer.wait_closed()
            self.writer = self.reader = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise HttpError("response without Content-Length")
        return status, await self.reader.readexactly(length)


def graphql_request(
    query: str, key: str, variables: dict[str, Any] | None = None, path: str = "/graphql"
) -> bytes:
    """The bytes of a POST /graphql, built once and sent many times."""
    body = orjson.dumps({"query": query, "variables": variables or {}})
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def check_graphql(status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        raise HttpError(f"HTTP {status}: {body[:500]!r}")
    answer = orjson.loads(body)
    if answer.get("errors"):
        raise HttpError(f"GraphQL errors: {answer['errors']}")
    return answer


# --- the floor ----------------------------------------------------------------


class Floor:
    """Plain graphql-core on the committed SDL, resolving from already-fetched dicts in `root`.

    What any GraphQL server pays for the same answer: parsed and validated
    once (as our caches do), then executed and encoded; `with_parse` also
    parses and validates every time.
    """

    def __init__(self, query: str, variables: dict[str, Any]) -> None:
        import graphql

        self.graphql = graphql
        self.query = query
        self.schema = graphql.build_schema(SCHEMA_SDL.read_text())
        self.document = graphql.parse(query)
        errors = graphql.validate(self.schema, self.document)
        if errors:
            raise RuntimeError(f"the query does not validate against schema.graphql: {errors}")
        self.variables = variables
        self.root: dict[str, Any] = {}

    def __call__(self) -> bytes:
        return self._run(self.document)

    def with_parse(self) -> bytes:
        document = self.graphql.parse(self.query)
        errors = self.graphql.validate(self.schema, document)
        assert not errors, errors
        return self._run(document)

    def _run(self, document: Any) -> bytes:
        result = self.graphql.execute(
            self.schema, document, root_value=self.root, variable_values=self.variables
        )
        assert not result.errors, result.errors
        return orjson.dumps({"data": result.data})


# --- clocks -----------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, Any]:
    """Milliseconds: median with the spread around it (IQR, p95) to show the noise."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return {"n": 0}
    quartiles = statistics.quantiles(ordered, n=4) if n >= 2 else [ordered[0]] * 3
    median = statistics.median(ordered)
    return {
        "n": n,
        "median_ms": round(median * 1000, 3),
        "p95_ms": round(ordered[min(n - 1, int(0.95 * n))] * 1000, 3),
        "min_ms": round(ordered[0] * 1000, 3),
        "iqr_ms": round((quartiles[2] - quartiles[0]) * 1000, 3),
        "iqr_over_median": round((quartiles[2] - quartiles[0]) / median, 3) if median else None,
    }


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


@dataclass
class SideBySide:
    """Several measurements taken in turn, iteration by iteration.

    Interleaving means a burst of load from elsewhere on the machine hits
    all of them alike instead of one, so their ratios stay honest. Besides
    wall time (`timings`) it keeps this process's CPU time per call (`cpu`):
    the driver's and graphql-core's own work, which other processes' load
    does not inflate the way it inflates wall time.
    """

    timings: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    async def run(
        self,
        subjects: dict[str, Callable[[], Awaitable[Any]]],
        iterations: int,
        warmup: int = 3,
    ) -> dict[str, list[float]]:
        for name in subjects:
            self.timings.setdefault(name, [])
            self.cpu.setdefault(name, [])
        for i in range(warmup + iterations):
            for name, subject in subjects.items():
                cpu = time.process_time()
                started = time.perf_counter()
                await subject()
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu
                if i >= warmup:
                    self.timings[name].append(elapsed)
                    self.cpu[name].append(cpu)
        return self.timings


class ProcessCpu:
    """CPU seconds (user + system) of a process and its children, e.g. uvicorn and its workers.

    The kernel counts in clock ticks (10 ms), so read it around many
    requests, not one; `idle_rate` is what the process burns doing nothing
    (cores), to show that it is next to nothing.
    """

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)

    def read(self) -> float:
        total = 0.0
        for process in [self.process, *self.process.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system
        return total

    def idle_rate(self, seconds: float = 2.0) -> float:
        before = self.read()
        time.sleep(seconds)
        return (self.read() - before) / seconds


def sync_timer(work: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """An in-process step (no I/O) in the same interleaved loop as the async ones."""

    async def run() -> Any:
        return work()

    return run


# --- load -------------------------------------------------------------------


async def throughput(
    port: int,
    raw_request: bytes,
    *,
    concurrency: int = 16,
    seconds: float = 10.0,
    warmup_seconds: float = 2.0,
    max_requests: int | None = None,
    watch: dict[str, ProcessCpu] | None = None,
) -> dict[str, Any]:
    """Requests per second of `concurrency` clients, each on its own keep-alive connection.

    Each client sends its next request as soon as the previous answer is in
    (closed loop). Only requests completed after the warm-up count; the run
    ends after `seconds` or `max_requests`, whichever comes first. `watch`
    names processes (API, database) whose CPU use over the measured window
    is reported next to this process's (the clients'), in cores.
    """
    connections = [await HttpConnection(port).open() for _ in range(concurrency)]
    latencies: list[float] = []
    failures: list[str] = []
    completed = 0
    start_at = time.perf_counter() + warmup_seconds
    stop_at = start_at + seconds

    last_done = start_at

    async def client(connection: HttpConnection) -> None:
        nonlocal completed, last_done
        while True:
            sent = time.perf_counter()
            if sent >= stop_at or (max_requests is not None and completed >= max_requests):
                return
            status, body = await connection.request(raw_request)
            done = time.perf_counter()
            if status != 200 or b'"errors"' in body:
                failures.append(f"{status}: {body[:200]!r}")
                return
            # Count what completes inside the window; requests still in
            # flight when it closes are finished but not counted.
            if start_at <= done <= stop_at:
                completed += 1
                latencies.append(done - sent)
                last_done = max(last_done, done)

    cpu_readings: list[dict[str, float]] = []

    def read_cpu() -> dict[str, float]:
        readings = {name: process.read() for name, process in (watch or {}).items()}
        readings["clients"] = time.process_time()
        readings["at"] = time.perf_counter()
        return readings

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        cpu_readings.append(read_cpu())
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu_readings.append(read_cpu())

    window = asyncio.create_task(cpu_window())
    try:
        await asyncio.gather(*(client(c) for c in connections))
        # The window's length, or up to the last completion when max_requests ended it early.
        measured = (
            stop_at if max_requests is None or completed < max_requests else last_done
        ) - start_at
    finally:
        for connection in connections:
            await connection.close()
    if failures:
        window.cancel()
        raise HttpError(f"{len(failures)} failed requests, first: {failures[0]}")
    result: dict[str, Any] = {
        "concurrency": concurrency,
        "requests": completed,
        "seconds": round(measured, 3),
        "requests_per_second": round(completed / measured, 2) if measured > 0 else None,
        "latency_under_load": summary(latencies),
    }
    if completed == 0:
        result["note"] = (
            "no request completed inside the window: one takes longer than that at this concurrency"
        )
    if not window.done():
        window.cancel()  # ended early by max_requests: no CPU window
    elif len(cpu_readings) == 2:
        first, last = cpu_readings
        elapsed = last["at"] - first["at"]
        result["cpu_cores_used"] = {
            name: round((last[name] - first[name]) / elapsed, 3) for name in last if name != "at"
        }
    return result


def run(main: Awaitable[Any]) -> Any:
    """asyncio.run on uvloop, as the server runs: the client and the raw driver get the same loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[arg-type]


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, digits)
