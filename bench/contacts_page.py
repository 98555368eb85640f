"""The contact list page: API latency vs. the raw driver plus the graphql-core floor, commands, throughput.

    .venv/bin/python bench/contacts_page.py --contacts 2000 --iterations 60

Seeds N contacts (as `contactgraph seed --contacts N`) on a database of its
own (embedded SecantusDB in memory, or MONGODB_URI), serves the real app
with uvicorn (uvloop, httptools) and prints one JSON document:

- page: `contacts(first: 50, sortKey: NAME) { totalCount nodes { <every
  scalar field of Contact> } }` over HTTP (1 worker), next to the same
  reads done with a bare AsyncMongoClient (find + count) and plain
  graphql-core executing the same query on build_schema(graph/schema.graphql)
  with the fetched documents as dicts (the floor any GraphQL server pays;
  parsed and validated once, as our caches do; `floor_with_parse` parses
  and validates every time). Measured interleaved, round by round, in one run.
  page_ratio = api / (raw + floor); overhead = api - raw;
  overhead_over_floor = overhead / floor (architecture.md's measure).
  `cpu` gives the same in CPU milliseconds (the API server process vs this
  process), which load from other processes on a shared machine distorts
  far less than wall time. `--baseline DIR` times another checkout's app in
  the same rounds, for before/after comparisons.
- commands_per_page: MongoDB commands for the page at first 10, 50, 250,
  counted in process (httpx ASGI transport + a PyMongo command listener).
- throughput: requests per second at 16 concurrent clients with 1 and 2
  workers, for the page and for a control query that never reaches the
  database, with the CPU cores the API, the database and the clients used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, SideBySide, log, ratio, summary  # noqa: E402

SCALAR_FIELDS = """
      id email firstName lastName displayName phone company kind labels
      hasAccount detailsLocked orderCount firstOrderAt lastOrderAt createdAt updatedAt
"""

PAGE = f"""
query Page($first: Int!) {{
  contacts(first: $first, sortKey: NAME) {{
    totalCount
    nodes {{{SCALAR_FIELDS}}}
  }}
}}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contacts", type=int, default=2000, help="contacts to seed (default 2000)"
    )
    parser.add_argument(
        "--iterations", type=int, default=60, help="timed page requests per subject (default 60)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    parser.add_argument(
        "--first", type=int, default=50, help="page size of the latency test (default 50)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker counts (default 1 2)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="clients of the throughput test (default 16)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="measured seconds per throughput run (default 15)",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=None,
        help="stop a throughput run after this many requests",
    )
    parser.add_argument(
        "--skip-throughput", action="store_true", help="only latency and command counts"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long to measure idle CPU burn first (default 10)",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also serve the app from another checkout (e.g. a git worktree of an earlier commit) "
        "and time it in the same interleaved rounds",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="throughput servers log every request, as `contactgraph serve` does",
    )
    parser.add_argument(
        "--throughput-of",
        nargs="+",
        choices=["page", "control"],
        default=["page", "control"],
        help="what the throughput runs send: the page, and/or a query that never reaches the database "
        "(default both)",
    )
    args = parser.parse_args(argv)
    if args.contacts < 1 or args.iterations < 1 or not 1 <= args.first <= 250:
        parser.error("--contacts and --iterations must be positive, --first 1..250")
    return args


# --- what the API is compared with ------------------------------------------


def plain_rows(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fetched documents as graphql-core's default resolver reads them (keys = field names)."""
    from graph.types.node import encode_id
    from loaders.contact_search import display_name

    return [
        {**doc, "id": encode_id("Contact", doc["_id"]), "displayName": display_name(doc)}
        for doc in docs
    ]


class Floor(harness.Floor):
    def use(self, docs: list[dict[str, Any]], total: int) -> None:
        self.root = {"contacts": {"totalCount": total, "nodes": plain_rows(docs)}}


async def raw_page(database: Any, first: int) -> tuple[list[dict[str, Any]], int]:
    """The same reads the API makes, with the bare driver."""
    from loaders.contacts import LIST_PROJECTION

    match = {"shopId": SHOP}
    docs = await database.contacts.find(
        match, LIST_PROJECTION, sort=[("nameKey", 1), ("_id", 1)], limit=first + 1
    ).to_list()
    total = await database.contacts.count_documents(match)
    return docs[:first], total


# --- the measurements ---------------------------------------------------------


async def latency(
    server: harness.DatabaseServer, database: Any, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    variables = {"first": args.first}
    request = harness.graphql_request(PAGE, key, variables)
    floor = Floor(PAGE, variables)
    docs, total = await raw_page(database, args.first)
    floor.use(docs, total)

    # A long key cache: the page's own cost, not a key look-up every 5 s.
    roots = {"api": harness.ROOT}
    if args.baseline:
        roots["baseline"] = Path(args.baseline).resolve()  # noqa: ASYNC240 - once, at start
    with contextlib.ExitStack() as stack:
        apis = {
            name: stack.enter_context(
                harness.ApiServer(server, workers=1, key_cache_seconds=3600, root=root)
            )
            for name, root in roots.items()
        }
        cpus = {name: harness.ProcessCpu(api.process.pid) for name, api in apis.items()}  # type: ignore[union-attr]
        connections = {
            name: await harness.HttpConnection(api.port).open() for name, api in apis.items()
        }
        try:
            subjects: dict[str, Any] = {}
            for name, connection in connections.items():
                answer = harness.check_graphql(*await connection.request(request))
                _same_page(answer, floor(), args.first)
                subjects[name] = _over_http(connection, request)

            async def raw() -> None:
                await raw_page(database, args.first)

            subjects.update(
                raw=raw,
                floor=harness.sync_timer(floor),
                floor_with_parse=harness.sync_timer(floor.with_parse),
            )
            # While a request waits on the database, a process still burns
            # some CPU on timers (uvicorn's main loop ticks ten times a
            # second, the driver polls): measured idle, per second, and
            # taken off per second of waiting, or a slow database would
            # look like API work. The kernel counts in 10 ms ticks, hence
            # a long idle window.
            idle_before = {name: cpu.read() for name, cpu in cpus.items()}
            bench_idle_before = time.process_time()
            await asyncio.sleep(args.idle_seconds)
            idle = {
                name: (cpu.read() - idle_before[name]) / args.idle_seconds
                for name, cpu in cpus.items()
            }
            bench_idle = (time.process_time() - bench_idle_before) / args.idle_seconds
            log(f"latency: {args.iterations} rounds of {' / '.join(subjects)} ...")
            side = SideBySide()
            cpu_before = {name: cpu.read() for name, cpu in cpus.items()}
            timings = await side.run(subjects, iterations=args.iterations, warmup=args.warmup)
            busy = {name: cpu.read() - cpu_before[name] for name, cpu in cpus.items()}
        finally:
            for connection in connections.values():
                await connection.close()

    raw_ms = harness.median_ms(timings["raw"])
    floor_ms = harness.median_ms(timings["floor"])
    # Means, like the server's CPU (a total over all its requests).
    raw_cpu_measured = statistics.fmean(side.cpu["raw"]) * 1000
    raw_waiting = bench_idle * statistics.fmean(timings["raw"]) * 1000
    raw_cpu = raw_cpu_measured - raw_waiting
    floor_cpu = statistics.fmean(side.cpu["floor"]) * 1000
    floor_parse_ms = harness.median_ms(timings["floor_with_parse"])
    requests = args.iterations + args.warmup

    def measures(name: str) -> dict[str, Any]:
        api_ms = harness.median_ms(timings[name])
        overhead = api_ms - raw_ms
        api_cpu_measured = busy[name] / requests * 1000
        api_waiting = idle[name] * statistics.fmean(timings[name]) * 1000
        api_cpu = api_cpu_measured - api_waiting
        return {
            "page_ratio": ratio(api_ms, raw_ms + floor_ms),
            "api_median_ms": round(api_ms, 3),
            "raw_median_ms": round(raw_ms, 3),
            "floor_median_ms": round(floor_ms, 3),
            "overhead_ms": round(overhead, 3),
            "overhead_over_floor": ratio(overhead, floor_ms),
            "cpu": {
                "api_server_ms": round(api_cpu, 3),
                "raw_driver_ms": round(raw_cpu, 3),
                "floor_ms": round(floor_cpu, 3),
                "overhead_ms": round(api_cpu - raw_cpu, 3),
                "overhead_over_floor": ratio(api_cpu - raw_cpu, floor_cpu),
                "idle_burn_taken_off_ms": {
                    "api_server": round(api_waiting, 3),
                    "raw_driver": round(raw_waiting, 3),
                },
                "idle_burn_ms_per_s": {
                    "api_server": round(idle[name] * 1000, 3),
                    "raw_driver": round(bench_idle * 1000, 3),
                },
                "uncorrected": {
                    "api_server_ms": round(api_cpu_measured, 3),
                    "raw_driver_ms": round(raw_cpu_measured, 3),
                    "overhead_over_floor": ratio(api_cpu_measured - raw_cpu_measured, floor_cpu),
                },
            },
            "floor_with_parse": {
                "median_ms": round(floor_parse_ms, 3),
                "page_ratio": ratio(api_ms, raw_ms + floor_parse_ms),
                "overhead_over_floor": ratio(overhead, floor_parse_ms),
            },
        }

    result: dict[str, Any] = {
        "query": " ".join(PAGE.split()),
        "variables": variables,
        **measures("api"),
    }
    result["notes"] = {
        "cpu": "mean CPU ms per page: the whole API server process (HTTP, GraphQL, driver) vs this "
        "process doing the same reads with the bare driver, and the floor; other processes' load "
        "inflates it far less than wall time. Each side's idle burn (timers while waiting on the "
        "database) is measured beforehand and taken off per second of waiting",
        "floor_with_parse": "graphql-core parsing and validating the query every time, "
        "as a server without caches would",
    }
    result["api"] = summary(timings["api"])
    result["raw"] = summary(timings["raw"])
    result["floor"] = summary(timings["floor"])
    if "baseline" in apis:
        before = measures("baseline")
        before["root"] = str(roots["baseline"])
        before["api"] = summary(timings["baseline"])
        before["api_median_over_current"] = ratio(before["api_median_ms"], result["api_median_ms"])
        before["cpu_overhead_over_current"] = ratio(
            before["cpu"]["overhead_ms"], result["cpu"]["overhead_ms"]
        )
        result["baseline"] = before
    return result


def _over_http(connection: harness.HttpConnection, request: bytes) -> Any:
    async def page() -> None:
        status, body = await connection.request(request)
        if status != 200:
            raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")

    return page


def _same_page(answer: dict[str, Any], floor_json: bytes, first: int) -> None:
    """The API and the floor must be producing the same page, or the comparison means nothing."""
    import orjson

    mine = answer["data"]["contacts"]
    theirs = orjson.loads(floor_json)["data"]["contacts"]
    if mine["totalCount"] != theirs["totalCount"] or [n["id"] for n in mine["nodes"]] != [
        n["id"] for n in theirs["nodes"]
    ]:
        raise RuntimeError("the API's page differs from the raw driver's page")
    if len(mine["nodes"]) != min(first, mine["totalCount"]):
        raise RuntimeError(f"expected {first} contacts, got {len(mine['nodes'])}")


async def commands_per_page(
    server: harness.DatabaseServer, key: str, sizes: list[int]
) -> dict[str, Any]:
    from pymongo import monitoring

    counter = harness.CommandCounter()
    monitoring.register(counter)  # before the app's client exists, so it is seen
    counts: dict[str, int] = {}
    names: dict[str, list[str]] = {}
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}

        async def page(first: int) -> None:
            response = await client.post(
                "/graphql", json={"query": PAGE, "variables": {"first": first}}, headers=headers
            )
            harness.check_graphql(response.status_code, response.content)

        await page(1)  # the key look-up (then cached) is not the page's cost
        for first in sizes:
            counter.reset()
            await page(first)
            counts[str(first)] = len(counter.names)
            names[str(first)] = sorted(counter.names)
    return {"first": counts, "commands": names}


CONTROL = "{ __typename }"


async def load(
    server: harness.DatabaseServer, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Requests per second of the page, and of a query that never reaches the database (the control).

    On the embedded server the page is bound by the database process, which
    more API workers cannot speed up; the control shows how the API itself
    scales with workers on this machine. CPU use per process says which is which.
    """
    requests = {
        "page": harness.graphql_request(PAGE, key, {"first": args.first}),
        "control": harness.graphql_request(CONTROL, key),
    }
    subjects = {name: requests[name] for name in args.throughput_of}
    result: dict[str, Any] = {}
    for name, request in subjects.items():
        runs: dict[str, Any] = {}
        for workers in args.workers:
            with harness.ApiServer(server, workers=workers, access_log=args.access_log) as api:
                watch = {"api": harness.ProcessCpu(api.process.pid)}  # type: ignore[union-attr]
                if server.pid is not None:
                    watch["database"] = harness.ProcessCpu(server.pid)
                log(
                    f"throughput of {name}: {workers} worker(s), {args.concurrency} clients, {args.seconds} s ..."
                )
                runs[f"workers_{workers}"] = await harness.throughput(
                    api.port,
                    request,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    max_requests=args.max_requests,
                    watch=watch,
                )
        entry: dict[str, Any] = {
            "query": " ".join((PAGE if name == "page" else CONTROL).split()),
            "runs": runs,
        }
        if "workers_1" in runs and "workers_2" in runs:
            entry["two_over_one_worker"] = ratio(
                runs["workers_2"]["requests_per_second"], runs["workers_1"]["requests_per_second"]
            )
        result[name] = entry
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "contacts_page",
        "contacts": args.contacts,
        "machine": harness.machine(),
    }
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts on {server.kind} ...")
            result["seed_seconds"] = round(
                await harness.seed_contacts(database, SHOP, args.contacts), 2
            )
            sizes = [n for n in (10, 50, 250) if n <= args.contacts] or [args.contacts]
            result["commands_per_page"] = await commands_per_page(server, key, sizes)
            result["page"] = await latency(server, database, key, args)
            if not args.skip_throughput:
                result["throughput"] = await load(server, key, args)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result = harness.run(main_async(args))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    harness.emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
