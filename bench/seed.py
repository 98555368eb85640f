"""How fast `contactgraph seed` fills a shop: contacts (and orders) per second.

    .venv/bin/python bench/seed.py --contacts 10000 --orders-per-contact 2

Runs the seed as the command does (`graph.cli.seed.seed_shop`) against an
embedded server on a data dir of its own on disk, with the cache
`contactgraph serve` gives it (CONTACTGRAPH_EMBEDDED_CACHE_MB, 1024 MB by
default) unless `--cache-size` says otherwise (or MONGODB_URI, in a
database of its own, dropped after). Reports the wall time, the rates, this
process's CPU time and the database server's, the database server's peak
memory and its data and index sizes, and a check that every contact's
statistics agree with its orders.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

from graph.embedded import EmbeddedServer  # noqa: E402
from graph.settings import embedded_cache_mb  # noqa: E402

SHOP = harness.SHOP


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--orders-per-contact", type=int, default=2)
    parser.add_argument(
        "--memory",
        action="store_true",
        help="an in-memory embedded server instead of one on disk",
    )
    parser.add_argument(
        "--cache-size",
        default=None,
        help="the embedded server's WiredTiger cache, e.g. 512M (default: as serve runs it)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="contacts per transaction (default: the seed's)"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing statistics with the orders"
    )
    return parser.parse_args()


async def stats_disagreeing(database: Any) -> int:
    """Contacts whose orderCount / totalSpent differ from an aggregation over their orders."""
    from bson import Decimal128

    pipeline = [
        {"$match": {"shopId": SHOP, "status": {"$in": ["OPEN", "FULFILLED"]}}},
        {"$group": {"_id": "$contactId", "count": {"$sum": 1}, "spent": {"$sum": "$total"}}},
    ]
    counted = {
        doc["_id"]: (doc["count"], doc["spent"].to_decimal())
        async for doc in await database.orders.aggregate(pipeline)
    }
    wrong = 0
    async for contact in database.contacts.find(
        {"shopId": SHOP}, {"orderCount": 1, "totalSpent": 1}
    ):
        count, spent = counted.get(contact["_id"], (0, Decimal128("0").to_decimal()))
        if contact["orderCount"] != count or contact["totalSpent"].to_decimal() != spent:
            wrong += 1
    return wrong


async def run(args: argparse.Namespace, server: harness.DatabaseServer) -> dict[str, Any]:
    from graph.cli.seed import seed_shop

    cpu = harness.ProcessCpu(server.pid) if server.pid else None
    peak = PeakMemory(server.pid) if server.pid else None
    async with harness.open_database(server) as database:
        db_cpu = cpu.read() if cpu else None
        own_cpu = time.process_time()
        started = time.perf_counter()
        watching = asyncio.create_task(peak.watch()) if peak else None
        try:
            written = await seed_shop(
                database, SHOP, args.contacts, args.orders_per_contact, batch_size=args.batch
            )
        finally:
            if watching is not None:
                watching.cancel()
        seconds = time.perf_counter() - started
        own_cpu = time.process_time() - own_cpu
        result: dict[str, Any] = {
            "contacts": written.contacts,
            "orders": written.orders,
            "seconds": round(seconds, 2),
            "contacts_per_second": round(written.contacts / seconds, 1),
            "orders_per_second": round(written.orders / seconds, 1),
            "cpu_seconds": {"seed": round(own_cpu, 2)},
        }
        if cpu and db_cpu is not None:
            result["cpu_seconds"]["database"] = round(cpu.read() - db_cpu, 2)
        if peak is not None:
            result["database_peak_rss_mb"] = round(peak.peak / 2**20)
        stats = await database.db.command("dbStats")
        result["database_mb"] = {
            name: round(stats[name] / 2**20, 1)
            for name in ("dataSize", "storageSize", "indexSize")
            if name in stats
        }
        if not args.no_check:
            result[
                "contacts_whose_statistics_disagree_with_their_orders"
            ] = await stats_disagreeing(database)
    return result


class PeakMemory:
    """The largest resident size a process reaches while watched (sampled twice a second)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss

    async def watch(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.5)


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[harness.DatabaseServer]:
    if os.environ.get("MONGODB_URI"):
        with harness.database_server() as server:
            yield server
        return
    with contextlib.ExitStack() as stack:
        if args.memory:
            storage = ":memory:"
        else:
            storage = stack.enter_context(tempfile.TemporaryDirectory(prefix="seed-bench-"))
        with EmbeddedServer(storage, cache_size=args.cache_size) as embedded:
            pid = embedded.process.pid if embedded.process is not None else None
            yield harness.DatabaseServer(
                embedded.uri, "embedded-secantusdb", f"contactgraph_seed_{os.getpid()}", pid
            )


def main() -> None:
    args = arguments()
    result: dict[str, Any] = {"machine": harness.machine(), "command": sys.argv}
    with database(args) as server:
        result["database"] = server.kind
        if server.kind == "embedded-secantusdb":
            result["cache_size"] = args.cache_size or f"{embedded_cache_mb()}M"
        result["seed"] = asyncio.run(run(args, server))
    harness.emit(result)


if __name__ == "__main__":
    main()
