"""The CSV export: rows per second through the endpoint vs. the raw cursor, and the server's memory.

    .venv/bin/python bench/export_csv.py --sizes 10000,100000

For each size N, seeds N contacts (`contactgraph seed`) in a database of
its own (embedded SecantusDB in memory with a 2 GB cache, or MONGODB_URI), serves the real app
with uvicorn (one worker, as `contactgraph serve`) and prints one JSON
document with, per size:

- endpoint: `GET /exports/contacts.csv` (everyone, default order), read to
  the end over a socket: seconds, rows per second, bytes;
- raw_cursor: the same `find` (filter, projection, sort, batch size) on a
  bare AsyncMongoClient in this process, iterated to the end;
- raw_cursor_and_rows: the raw cursor plus building and encoding the CSV
  rows in this process (what the endpoint does, minus HTTP);
- memory: the server's resident set before the export (idle, after one
  warm-up export of 100 rows) and its peak while exporting, sampled every
  10 ms; `peak_above_idle_mb` is the number the target (< 150 MB, flat as N
  grows) is about.

ratio = endpoint seconds / raw cursor seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, log, ratio  # noqa: E402

URL = "/exports/contacts.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="contact counts, comma-separated")
    parser.add_argument(
        "--repeats", type=int, default=2, help="exports per size and subject (default 2)"
    )
    return parser.parse_args(argv)


class PeakRss:
    """Samples a process's resident set size in a thread while a block runs."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@contextlib.contextmanager
def database_server() -> Iterator[harness.DatabaseServer]:
    """MONGODB_URI when set, else an embedded server in memory with room for 100,000 contacts.

    An in-memory server holds only what fits its cache; the default 256 MB
    fills up near 40,000 seeded contacts.
    """
    if os.environ.get("MONGODB_URI"):
        with harness.database_server() as server:
            yield server
        return
    from graph.embedded import EmbeddedServer

    with EmbeddedServer(":memory:", cache_size="2G") as embedded:
        yield harness.DatabaseServer(
            embedded.uri, "embedded-secantusdb", f"contactgraph_bench_{os.getpid()}"
        )


async def download(port: int, key: str, query: str = "") -> tuple[float, int, int]:
    """(seconds, bytes, rows) of one export read to the end on a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    writer.write(
        f"GET {URL}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise harness.HttpError(head.decode(errors="replace"))
    size = lines = 0
    while chunk := await reader.read(1 << 16):
        size += len(chunk)
        lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - started
    writer.close()
    # Chunked transfer framing adds two line ends per chunk; the CSV rows end in CRLF.
    return elapsed, size, lines


async def raw_export(database: Any, with_rows: bool) -> tuple[float, int]:
    from loaders.contact_stream import contact_batches
    from resolvers.csv_rows import EXPORT_PROJECTION, contact_row, csv_text

    started = time.perf_counter()
    rows = 0
    async for batch in contact_batches(
        database, {"shopId": SHOP}, "createdAt", projection=EXPORT_PROJECTION
    ):
        rows += len(batch)
        if with_rows:
            csv_text(contact_row(doc, None) for doc in batch).encode()
    return time.perf_counter() - started, rows


async def measure(size: int, repeats: int) -> dict[str, Any]:
    with database_server() as base:
        server = harness.DatabaseServer(base.uri, base.kind, f"{base.name}_{size}")
        async with harness.open_database(server) as database:
            log(f"seeding {size} contacts ...")
            seeded = await harness.seed_contacts(database, SHOP, size)
            key = await harness.admin_key(database)
            result: dict[str, Any] = {"contacts": size, "seed_seconds": round(seeded, 1)}
            with harness.ApiServer(server) as api:
                assert api.process is not None
                await download(api.port, key, "?sortKey=EMAIL")  # warm-up: imports, pools, caches
                idle = PeakRss(api.process.pid).rss()
                endpoint, peaks, raw, raw_rows = [], [], [], []
                # Interleaved, repeat by repeat, so load from elsewhere hits all subjects alike.
                for _ in range(repeats):
                    with PeakRss(api.process.pid) as sampler:
                        seconds, size_bytes, lines = await download(api.port, key)
                    endpoint.append(seconds)
                    peaks.append(sampler.peak)
                    raw.append(await raw_export(database, with_rows=False))
                    raw_rows.append(await raw_export(database, with_rows=True))
            best = min(endpoint)
            raw_best = min(s for s, _ in raw)
            result.update(
                endpoint={
                    "seconds": round(best, 3),
                    "rows_per_second": round(size / best),
                    "bytes": size_bytes,
                    "line_ends_seen": lines,
                },
                raw_cursor={
                    "seconds": round(raw_best, 3),
                    "rows_per_second": round(size / raw_best),
                    "rows": raw[0][1],
                },
                raw_cursor_and_rows={
                    "seconds": round(min(s for s, _ in raw_rows), 3),
                    "rows_per_second": round(size / min(s for s, _ in raw_rows)),
                },
                ratio=ratio(best, raw_best),
                memory={
                    "idle_mb": round(idle / 2**20, 1),
                    "peak_mb": round(max(peaks) / 2**20, 1),
                    "peak_above_idle_mb": round((max(peaks) - idle) / 2**20, 1),
                },
            )
            log(f"{size}: {result}")
            if server.kind == "mongodb-uri":
                await database.client.drop_database(server.name)
            return result


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = [await measure(size, args.repeats) for size in sizes]
    harness.emit({"machine": harness.machine(), "export": results})


if __name__ == "__main__":
    import uvloop  # the loop the server runs on too

    uvloop.run(main())
