"""Where the API spends its own time on the contact list page, in CPU milliseconds.

    .venv/bin/python bench/profile_page.py --contacts 500
    .venv/bin/python bench/profile_page.py --contacts 500 --cprofile 200

The page is contacts_page.py's. Everything runs in this one process, so CPU
time (not wall time) can be compared step by step while the database, a
separate process, does its part; other processes' load shows up far less
than in wall time. Measured in interleaved batches (median and least per
step; the derived figures use the least):

- floor: plain graphql-core on build_schema(graph/schema.graphql) with the
  documents as dicts (parsed and validated once), orjson-encoded.
- fields: our schema executing the same selection on a ContactConnection
  built beforehand (Strawberry's resolvers and scalars, no database);
  fields_with_from_page builds the connection from the documents each time.
  These two leave out `totalCount`, which needs the database.
- execute: `schema.execute` of the whole page with a real context and the
  database (the driver's CPU included); raw: the same find + count with the
  bare driver; so execute - raw is the GraphQL layer's own cost.
- http: the same request through the Starlette app (httpx ASGI transport,
  client included), so http - execute is the HTTP layer's.

`--cprofile N` also profiles N requests through the app and lists the
functions with the most own and cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from contacts_page import PAGE, Floor, raw_page  # noqa: E402
from harness import SHOP, log  # noqa: E402

NO_COUNT = PAGE.replace("totalCount", "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=500, help="contacts to seed (default 500)")
    parser.add_argument("--first", type=int, default=50, help="page size (default 50)")
    parser.add_argument("--batches", type=int, default=20, help="interleaved batches (default 20)")
    parser.add_argument(
        "--per-batch", type=int, default=10, help="calls per step and batch (default 10)"
    )
    parser.add_argument(
        "--cprofile",
        type=int,
        default=0,
        metavar="N",
        help="also cProfile N requests (default 0: off)",
    )
    parser.add_argument(
        "--top", type=int, default=25, help="functions to list with --cprofile (default 25)"
    )
    args = parser.parse_args(argv)
    if args.contacts < args.first or not 1 <= args.first <= 250:
        parser.error("--first must be 1..250 and at most --contacts")
    return args


Step = Callable[[], Awaitable[Any]]


async def cpu_per_call(
    steps: dict[str, Step], batches: int, per_batch: int
) -> dict[str, dict[str, float]]:
    """CPU ms per call of each step: the median and the least over the batches."""
    for step in steps.values():
        for _ in range(3):
            await step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(batches):
        for name, step in steps.items():
            started = time.process_time()
            for _ in range(per_batch):
                await step()
            samples[name].append((time.process_time() - started) / per_batch * 1000)
    return {
        "median": {name: round(statistics.median(values), 3) for name, values in samples.items()},
        "min": {name: round(min(values), 3) for name, values in samples.items()},
    }


def fields_steps(docs: list[dict[str, Any]], currency: str | None, first: int) -> tuple[Step, Step]:
    """Our schema's execution of the page's fields, with `contacts` answered from memory."""
    import graphql
    import orjson
    from strawberry.execution.is_awaitable import optimized_is_awaitable
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    from graph.schema import build_schema
    from graph.types.contact import ContactConnection
    from loaders.keyset import Page

    page = Page(docs, has_next=True, has_previous=False, field="nameKey")
    held = {"connection": ContactConnection.from_page(page, currency, None, {})}  # type: ignore[arg-type]
    schema = build_schema()._schema  # a schema of its own: its `contacts` resolver is replaced
    schema.query_type.fields["contacts"].resolve = lambda root, info, **args: held["connection"]  # type: ignore[union-attr]
    document = graphql.parse(NO_COUNT)
    errors = graphql.validate(schema, document)
    if errors:
        raise RuntimeError(errors)

    def execute() -> bytes:
        result = graphql.execute(
            schema,
            document,
            variable_values={"first": first},
            executor_class=StrawberryGraphQLCoreExecutionContext,
            is_awaitable=optimized_is_awaitable,
        )
        assert not result.errors, result.errors  # type: ignore[union-attr]
        return orjson.dumps({"data": result.data})  # type: ignore[union-attr]

    async def fields() -> None:
        execute()

    async def fields_with_from_page() -> None:
        held["connection"] = ContactConnection.from_page(page, currency, None, {})  # type: ignore[arg-type]
        execute()

    return fields, fields_with_from_page


async def breakdown(
    server: harness.DatabaseServer, database: Any, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    from graph.context import Context
    from graph.schema import build_schema
    from graph.settings import Settings
    from loaders.container import Loaders
    from resolvers.shops import find_key

    found = await find_key(database, key)
    assert found is not None
    api_key, shop = found
    settings = Settings()
    schema = build_schema(settings)
    docs, total = await raw_page(database, args.first)
    variables = {"first": args.first}

    floor = Floor(NO_COUNT, variables)
    floor.use(docs, total)
    floor_with_count = Floor(PAGE, variables)
    floor_with_count.use(docs, total)
    fields, fields_with_from_page = fields_steps(docs, shop.currency, args.first)

    async def execute() -> None:
        context = Context(
            request=None, response=None, database=database, settings=settings, key=api_key, shop=shop,
            loaders=Loaders(database, shop.id),
        )  # fmt: skip
        result = await schema.execute(PAGE, variable_values=variables, context_value=context)
        assert not result.errors, result.errors

    async def raw() -> None:
        await raw_page(database, args.first)

    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"query": PAGE, "variables": variables}

        async def http() -> None:
            response = await client.post("/graphql", json=body, headers=headers)
            harness.check_graphql(response.status_code, response.content)

        log(f"breakdown: {args.batches} batches of {args.per_batch} calls per step ...")
        measured = await cpu_per_call(
            {
                "floor": harness.sync_timer(floor),
                "floor_with_total_count": harness.sync_timer(floor_with_count),
                "fields": fields,
                "fields_with_from_page": fields_with_from_page,
                "execute": execute,
                "raw": raw,
                "http": http,
            },
            args.batches,
            args.per_batch,
        )
    # Derived from the least cost per step: load from other processes only
    # ever adds to a batch, so the minimum is the steadiest estimate.
    cpu = measured["min"]
    return {
        "cpu_ms_per_page": measured,
        "derived_ms_from_min": {
            "fields_over_floor": harness.ratio(cpu["fields"], cpu["floor"]),
            "from_page": round(cpu["fields_with_from_page"] - cpu["fields"], 3),
            "graphql_layer (execute - raw)": round(cpu["execute"] - cpu["raw"], 3),
            "operation_rest (execute - raw - fields_with_from_page)": round(
                cpu["execute"] - cpu["raw"] - cpu["fields_with_from_page"], 3
            ),
            "http_layer (http - execute)": round(cpu["http"] - cpu["execute"], 3),
            "api_overhead_in_process (http - raw)": round(cpu["http"] - cpu["raw"], 3),
            "overhead_over_floor_in_process": harness.ratio(
                cpu["http"] - cpu["raw"], cpu["floor_with_total_count"]
            ),
        },
    }


async def profile_requests(
    server: harness.DatabaseServer, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"query": PAGE, "variables": {"first": args.first}}

        async def page() -> None:
            response = await client.post("/graphql", json=body, headers=headers)
            harness.check_graphql(response.status_code, response.content)

        for _ in range(10):
            await page()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.cprofile):
            await page()
        profile.disable()
    return {
        "requests": args.cprofile,
        "note": "wall time under cProfile (which inflates small calls); waits on the database show as poll/send",
        "by_own_time": top_functions(profile, "own_ms_per_request", args.top, args.cprofile),
        "by_cumulative_time": top_functions(
            profile, "cumulative_ms_per_request", args.top, args.cprofile
        ),
    }


def top_functions(
    profile: cProfile.Profile, key: str, count: int, requests: int
) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls_per_request": round(calls / requests, 1),
                "own_ms_per_request": round(own / requests * 1000, 4),
                "cumulative_ms_per_request": round(cumulative / requests * 1000, 4),
            }
        )
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:count]


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(harness.ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "profile_page",
        "root": str(harness.ROOT),
        "contacts": args.contacts,
        "first": args.first,
        "machine": harness.machine(),
    }
    with harness.database_server() as server:
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts ...")
            await harness.seed_contacts(database, SHOP, args.contacts)
            result["breakdown"] = await breakdown(server, database, key, args)
        if args.cprofile:
            result["cprofile"] = await profile_requests(server, key, args)
    return result


def main(argv: list[str] | None = None) -> int:
    harness.emit(harness.run(main_async(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
