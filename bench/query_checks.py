"""What the checks before execution cost, and what the per-key budget buys another shop.

Prints one JSON document:

- bomb: the fragment bomb (`fragment P{i} on Query { ...P{i+1} ...P{i+1} ...P{i+1} }`,
  naively 3**levels spreads) at 10, 14, 18 and 30 levels: parse, graphql-core's
  validation, our one-pass analysis (depth, aliases, cost), and the whole request
  from a PUBLIC key through the real server. Flat in the levels means linear.
- cost_check: the analysis of everyday documents (the contacts page of 50, the
  contact page) per request, next to the graphql-core floor for the same page
  (harness.Floor: plain graphql-core executing it from already-fetched dicts).
- throttle: the bucket's round trip (one findAndModify with an update pipeline)
  from this process, next to a plain find_one by _id on the same server; and the
  API's `{ __typename }` (cost 0, but still one round trip to report the budget).
- neighbours: a shop of --contacts contacts pages through `contacts(first: 50)`
  alone, then while another shop's READER key spends its whole bucket on
  contactStats reports (4 per request, 804 points) from --attackers clients;
  p50/p95 of the page in both phases and their ratio (target <= 2). With
  --contrast, the same load once more against a server whose budget never
  runs out.

The API runs with the production budget (CONTACTGRAPH_COST_LIMIT 1000,
CONTACTGRAPH_THROTTLE_BUCKET 2000, CONTACTGRAPH_THROTTLE_RESTORE 100) unless
the environment sets them.
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
from harness import SHOP, log, ratio, summary  # noqa: E402

OTHER = "bench-neighbour"
LEVELS = (10, 14, 18, 30)
PAGE = "query Page { contacts(first: 50) { nodes { id email displayName kind orderCount } } }"
REPORT = "{ " + " ".join(f"s{i}: contactStats {{ contacts customers }}" for i in range(4)) + " }"
CONTACTS_PAGE = """
query Page($first: Int!) {
  contacts(first: $first, sortKey: NAME) {
    totalCount
    nodes {
      id email firstName lastName displayName phone company kind labels
      hasAccount detailsLocked orderCount firstOrderAt lastOrderAt createdAt updatedAt
    }
  }
}
"""
CONTACT_PAGE = """
query ContactPage($id: ID!) {
  contact(id: $id) {
    id email displayName firstName lastName phone kind labels hasAccount
    orderCount lastOrderAt totalSpent { amount currencyCode }
    consent { state optInLevel }
    activity(first: 50) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id kind at author text order { id externalId status } }
    }
    orders(first: 5) {
      nodes { id externalId placedAt status total { amount currencyCode } }
    }
  }
}
"""


def fragment_bomb(levels: int) -> str:
    fragments = [
        f"fragment P{i} on Query {{ ...P{i + 1} ...P{i + 1} ...P{i + 1} }}" for i in range(levels)
    ]
    return " ".join(
        ["query { ...P0 }", *fragments, f"fragment P{levels} on Query {{ __typename }}"]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contacts", type=int, default=2000, help="contacts per shop (default 2000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=200,
        help="repetitions of each in-process timing (default 200)",
    )
    parser.add_argument(
        "--pages", type=int, default=60, help="timed pages per neighbours phase (default 60)"
    )
    parser.add_argument(
        "--page-every",
        type=float,
        default=0.6,
        help="seconds from one page to the next: a page is 52 points, so at the default restore "
        "rate of 100 per second 0.6 s keeps the paging key within its own budget (default 0.6)",
    )
    parser.add_argument(
        "--attackers",
        type=int,
        default=4,
        help="clients spending the other key's bucket (default 4)",
    )
    parser.add_argument(
        "--skip-neighbours", action="store_true", help="only the in-process and round-trip timings"
    )
    parser.add_argument(
        "--contrast",
        action="store_true",
        help="also run the loaded phase against a server whose budget never runs out",
    )
    return parser.parse_args(argv)


def timed(work: Any, repeat: int) -> dict[str, Any]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return summary(samples)


async def timed_async(work: Any, repeat: int) -> dict[str, Any]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - started)
    return summary(samples)


# --- in process ------------------------------------------------------------------


def bomb_in_process(repeat: int) -> dict[str, Any]:
    import graphql

    from graph.limits import analyse
    from graph.schema import build_schema

    schema = build_schema()._schema
    out: dict[str, Any] = {}
    for levels in LEVELS:
        text = fragment_bomb(levels)
        document = graphql.parse(text)
        operation = graphql.get_operation_ast(document)
        assert operation is not None
        shape = analyse(schema, document, operation)
        out[str(levels)] = {
            "bytes": len(text),
            "naive_spreads": 3**levels,
            "selection_sets_walked": shape.selection_sets_walked,
            "parse": timed(lambda text=text: graphql.parse(text), repeat),
            "graphql_core_validation": timed(
                lambda document=document: graphql.validate(schema, document), repeat
            ),
            "analysis": timed(
                lambda document=document, operation=operation: analyse(schema, document, operation),
                repeat,
            ),
        }
    return out


async def cost_check(database: Any, repeat: int) -> dict[str, Any]:
    import contacts_page
    import graphql

    from graph.limits import analyse
    from graph.schema import build_schema

    schema = build_schema()._schema
    variables = {"first": 50}
    floor = contacts_page.Floor(CONTACTS_PAGE, variables)
    docs, total = await contacts_page.raw_page(database, 50)
    floor.use(docs, total)
    out: dict[str, Any] = {"floor_contacts_page_50": timed(floor, repeat)}
    for name, query, values in (
        ("contacts_page_50", CONTACTS_PAGE, variables),
        ("contact_page", CONTACT_PAGE, {"id": "x"}),
    ):
        document = graphql.parse(query)
        operation = graphql.get_operation_ast(document)
        assert operation is not None
        cost = analyse(schema, document, operation, values).cost
        out[name] = {
            "cost": cost,
            "analysis": timed(
                lambda document=document, operation=operation, values=values: analyse(
                    schema, document, operation, values
                ),
                repeat,
            ),
        }
    out["analysis_over_floor"] = ratio(
        out["contacts_page_50"]["analysis"]["median_ms"],
        out["floor_contacts_page_50"]["median_ms"],
    )
    return out


async def throttle_round_trip(database: Any, repeat: int) -> dict[str, Any]:
    from bson import ObjectId

    from resolvers import clock
    from resolvers.throttle import Bucket, spend

    key = ObjectId()
    bucket = Bucket(10**9, 100)
    await database.throttle.insert_one(
        {"_id": ObjectId(), "shopId": SHOP}
    )  # a non-empty collection
    spent = await timed_async(lambda: spend(database, key, SHOP, 1, bucket, clock.now()), repeat)
    found = await timed_async(lambda: database.throttle.find_one({"_id": key}), repeat)
    return {
        "spend_findAndModify": spent,
        "find_one_by_id": found,
        "spend_over_find_one": ratio(spent["median_ms"], found["median_ms"]),
    }


# --- over HTTP ----------------------------------------------------------------------


async def bomb_over_http(port: int, key: str, repeat: int) -> dict[str, Any]:
    connection = await harness.HttpConnection(port).open()
    try:
        out = {}
        for levels in LEVELS:
            request = harness.graphql_request(fragment_bomb(levels), key)
            harness.check_graphql(*await connection.request(request))

            async def send(request: bytes = request) -> None:
                harness.check_graphql(*await connection.request(request))

            out[str(levels)] = await timed_async(send, repeat)
        control = harness.graphql_request("{ __typename }", key)
        out["control_typename"] = await timed_async(lambda: connection.request(control), repeat)
        return out
    finally:
        await connection.close()


async def page_latencies(port: int, key: str, pages: int, every: float = 0.0) -> dict[str, Any]:
    """Pages one after the other, each started `every` seconds after the last (or at once)."""
    connection = await harness.HttpConnection(port).open()
    request = harness.graphql_request(PAGE, key)
    samples: list[float] = []
    refused = 0
    try:
        for _ in range(pages):
            started = time.perf_counter()
            status, _body = await connection.request(request)
            done = time.perf_counter()
            if every:
                await asyncio.sleep(max(0.0, started + every - time.perf_counter()))
            if status == 429:
                refused += 1
                continue
            harness.check_graphql(status, _body)
            samples.append(done - started)
    finally:
        await connection.close()
    result = summary(samples)
    result["throttled"] = refused
    return result


async def spend_whole_bucket(
    port: int, key: str, clients: int, stop: asyncio.Event
) -> dict[str, int]:
    counts = {"granted": 0, "throttled": 0}

    async def client() -> None:
        connection = await harness.HttpConnection(port).open()
        request = harness.graphql_request(REPORT, key)
        try:
            while not stop.is_set():
                status, body = await connection.request(request)
                if status == 429:
                    counts["throttled"] += 1
                    await asyncio.sleep(0.05)  # an eager client: retries long before Retry-After
                else:
                    harness.check_graphql(status, body)
                    counts["granted"] += 1
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return counts


async def _loaded_phase(
    api: harness.ApiServer, page_key: str, reports_key: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, int], float]:
    stop = asyncio.Event()
    attack = asyncio.create_task(spend_whole_bucket(api.port, reports_key, args.attackers, stop))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    loaded = await page_latencies(api.port, page_key, args.pages, args.page_every)
    seconds = time.perf_counter() - started
    stop.set()
    return loaded, await attack, round(seconds, 1)


async def neighbours(
    server: harness.DatabaseServer, database: Any, args: argparse.Namespace
) -> dict[str, Any]:
    from resolvers.shops import Role, create_key

    async def key(shop: str, role: Role, name: str) -> str:
        # Fresh keys per phase: each phase starts with full buckets.
        return (await create_key(database, shop, role, name))[1]

    with harness.ApiServer(server, workers=1, key_cache_seconds=3600) as api:
        quiet = await key(SHOP, Role.ADMIN, "Quiet phase")
        await page_latencies(api.port, quiet, 5)  # warm-up
        log(f"neighbours: {args.pages} pages alone ...")
        alone = await page_latencies(api.port, quiet, args.pages, args.page_every)
        log(
            f"neighbours: {args.pages} pages while {args.attackers} clients spend the other key ..."
        )
        loaded, spent, seconds = await _loaded_phase(
            api, await key(SHOP, Role.ADMIN, "Loaded"), await key(OTHER, Role.READER, "R"), args
        )
    result: dict[str, Any] = {
        "page": PAGE,
        "report": REPORT,
        "page_alone": alone,
        "page_while_other_key_spends": loaded,
        "loaded_phase_seconds": seconds,
        "other_key_requests": spent,
        "p50_ratio": ratio(loaded.get("median_ms"), alone.get("median_ms")),
        "p95_ratio": ratio(loaded.get("p95_ms"), alone.get("p95_ms")),
    }
    if args.contrast:
        # The same load against a server whose budget never runs out: what the throttle buys.
        budget = os.environ["CONTACTGRAPH_THROTTLE_BUCKET"]
        os.environ["CONTACTGRAPH_THROTTLE_BUCKET"] = str(100_000_000)
        try:
            with harness.ApiServer(server, workers=1, key_cache_seconds=3600) as api:
                log(f"neighbours: {args.pages} pages while the other key has no budget ...")
                unthrottled, spent, seconds = await _loaded_phase(
                    api, await key(SHOP, Role.ADMIN, "C"), await key(OTHER, Role.READER, "C"), args
                )
        finally:
            os.environ["CONTACTGRAPH_THROTTLE_BUCKET"] = budget
        result["contrast_without_throttle"] = {
            "page_while_other_key_is_unlimited": unthrottled,
            "loaded_phase_seconds": seconds,
            "other_key_requests": spent,
            "p50_ratio": ratio(unthrottled.get("median_ms"), alone.get("median_ms")),
            "p95_ratio": ratio(unthrottled.get("p95_ms"), alone.get("p95_ms")),
        }
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    for name, value in (
        ("CONTACTGRAPH_COST_LIMIT", "1000"),
        ("CONTACTGRAPH_THROTTLE_BUCKET", "2000"),
        ("CONTACTGRAPH_THROTTLE_RESTORE", "100"),
    ):
        os.environ.setdefault(name, value)
    result: dict[str, Any] = {
        "machine": harness.machine(),
        "budget": {
            name: os.environ[name]
            for name in (
                "CONTACTGRAPH_COST_LIMIT",
                "CONTACTGRAPH_THROTTLE_BUCKET",
                "CONTACTGRAPH_THROTTLE_RESTORE",
            )
        },
    }
    log("bomb: in process ...")
    result["bomb"] = {"in_process": bomb_in_process(args.repeat)}
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            log(f"seeding {args.contacts} contacts in each of two shops ...")
            await harness.seed_contacts(database, SHOP, args.contacts)
            await harness.seed_contacts(database, OTHER, args.contacts)
            log("cost check and throttle round trip ...")
            result["cost_check"] = await cost_check(database, args.repeat)
            result["throttle"] = await throttle_round_trip(database, args.repeat)
            from resolvers.shops import Role, create_key

            _, public = await create_key(database, SHOP, Role.PUBLIC, "Web form")
            log("bomb over HTTP ...")
            with harness.ApiServer(server, workers=1, key_cache_seconds=3600) as api:
                result["bomb"]["request_from_public_key"] = await bomb_over_http(
                    api.port, public, max(20, args.repeat // 4)
                )
            if not args.skip_neighbours:
                result["neighbours"] = await neighbours(server, database, args)
    spends = result["throttle"]["spend_findAndModify"]
    control = result["bomb"]["request_from_public_key"]["control_typename"]
    result["summary"] = {
        "bomb_analysis_ms": {
            levels: result["bomb"]["in_process"][levels]["analysis"]["median_ms"]
            for levels in result["bomb"]["in_process"]
        },
        "bomb_request_ms": {
            levels: timing["median_ms"]
            for levels, timing in result["bomb"]["request_from_public_key"].items()
        },
        "cost_check_ms_per_request": result["cost_check"]["contacts_page_50"]["analysis"][
            "median_ms"
        ],
        "floor_ms": result["cost_check"]["floor_contacts_page_50"]["median_ms"],
        "cost_check_over_floor": result["cost_check"]["analysis_over_floor"],
        "throttle_round_trip_ms": spends["median_ms"],
        "api_control_request_ms": control["median_ms"],
    }
    if "neighbours" in result:
        result["summary"]["neighbour_p50_ratio"] = result["neighbours"]["p50_ratio"]
        result["summary"]["neighbour_p95_ratio"] = result["neighbours"]["p95_ratio"]
        if "contrast_without_throttle" in result["neighbours"]:
            contrast = result["neighbours"]["contrast_without_throttle"]
            result["summary"]["unthrottled_neighbour_p50_ratio"] = contrast["p50_ratio"]
            result["summary"]["unthrottled_neighbour_p95_ratio"] = contrast["p95_ratio"]
    return result


if __name__ == "__main__":
    harness.emit(harness.run(main(parse_args())))
