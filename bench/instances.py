"""Requests per second of one API instance against two instances on one database.

    .venv/bin/python bench/instances.py [--contacts 1000] [--clients 32] [--seconds 15]

Each instance is a separate `uvicorn` process (one worker) on the same
database, as two `contactgraph serve` processes behind a load balancer would
be; the clients are split evenly between the instances. Two things are
measured, each first with one instance and then with two, in one run:

- the contact list page (`contacts(first: 50)`), which needs the database;
- a control query that never reaches the database (`__typename`), which
  shows how the API itself scales when a second instance gets its own core.

On the embedded server the page is bound by the single database process,
so a second instance cannot add much there; the CPU use of each process is
printed so the numbers say which process was the limit. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, log, ratio  # noqa: E402

PAGE = """
query Page { contacts(first: 50) { nodes { id email displayName kind orderCount createdAt } } }
"""
CONTROL = "query Control { __typename }"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000, help="contacts seeded (default 1000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    return parser.parse_args(argv)


async def measure(
    server: harness.DatabaseServer, apis: list[harness.ApiServer], request: bytes, args: Any
) -> dict[str, Any]:
    """All instances loaded at once, the clients split evenly; their rates add up."""
    watch = {f"api_{i}": harness.ProcessCpu(api.process.pid) for i, api in enumerate(apis)}  # type: ignore[union-attr]
    if server.pid is not None:
        watch["database"] = harness.ProcessCpu(server.pid)
    share = args.clients // len(apis)
    runs = await asyncio.gather(
        *(
            harness.throughput(
                api.port,
                request,
                concurrency=share,
                seconds=args.seconds,
                watch=watch if i == 0 else None,
            )
            for i, api in enumerate(apis)
        )
    )
    latencies = [run["latency_under_load"] for run in runs]
    return {
        "instances": len(apis),
        "clients": share * len(apis),
        "requests_per_second": round(sum(run["requests_per_second"] or 0 for run in runs), 2),
        "per_instance": [run["requests_per_second"] for run in runs],
        "latency_median_ms": [entry.get("median_ms") for entry in latencies],
        "latency_p95_ms": [entry.get("p95_ms") for entry in latencies],
        "cpu_cores_used": runs[0].get("cpu_cores_used"),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "instances", "contacts": args.contacts}
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts on {server.kind} ...")
            await harness.seed_contacts(database, SHOP, args.contacts)
        requests = {
            "page": harness.graphql_request(PAGE, key),
            "control": harness.graphql_request(CONTROL, key),
        }
        for name, request in requests.items():
            entry: dict[str, Any] = {}
            for count in (1, 2):
                apis = [
                    harness.ApiServer(server, workers=1, key_cache_seconds=3600)
                    for _ in range(count)
                ]
                try:
                    for api in apis:
                        api.start()
                    log(
                        f"{name}: {count} instance(s), {args.clients} clients, {args.seconds} s ..."
                    )
                    entry[f"instances_{count}"] = await measure(server, apis, request, args)
                finally:
                    for api in apis:
                        api.stop()
            entry["two_over_one"] = ratio(
                entry["instances_2"]["requests_per_second"],
                entry["instances_1"]["requests_per_second"],
            )
            result[name] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result = harness.run(main_async(args))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = harness.machine()
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    harness.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
