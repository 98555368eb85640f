"""Orders: ingestion throughput, MongoDB commands per recorded order, and the contacts+orders page.

    .venv/bin/python bench/orders_ingest.py --seconds 8 --contacts 1000

Prints one JSON document:

- ingestion: orders per second at 16 concurrent clients through the API
  (uvicorn, `orderRecord` with an INGEST key, a new externalId every time,
  orders spread over `--emails` customers so most land on known contacts),
  next to the same transaction done with a bare AsyncMongoClient by 16 tasks
  in this process (`raw_record`: find the order, find the contact, insert
  the order, insert or update the contact, commit). ratio = api / raw.
- commands_per_order: MongoDB commands for one `orderRecord`, counted in
  process (httpx ASGI transport + a PyMongo listener, key look-up cached):
  a new contact, a known contact, a replay, a replay that cancels.
- per_kind: one order at a time over HTTP, by kind (a new e-mail, an
  existing contact of the seeded shop, a replay of a recorded order),
  interleaved with `raw_record` doing the same; median ms, commands, and
  existing_over_new = API time for an existing contact / for a new e-mail
  (target <= 1.5).
- page: `contacts(first: 50) { nodes { email orders(first: 5) { nodes {
  externalId total { amount } } } } }`: commands at first 5, 50 and 250,
  and latency over HTTP next to the raw reads (find + one `$topN`
  aggregation) plus plain graphql-core on the committed SDL (the floor).
  page_ratio = api / (raw + floor).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, SideBySide, log, ratio, summary  # noqa: E402

RECORD = """
mutation Record($input: OrderInput!) {
  orderRecord(input: $input) { order { id } userErrors { code } }
}
"""

PAGE = """
query Page($first: Int!) {
  contacts(first: $first) {
    nodes { id email orders(first: 5) { nodes { externalId total { amount } } } }
  }
}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="measured seconds per ingestion run (default 8)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent clients (default 16)"
    )
    parser.add_argument(
        "--emails",
        type=int,
        default=500,
        help="distinct customers orders spread over (default 500)",
    )
    parser.add_argument(
        "--contacts", type=int, default=1000, help="seeded contacts for the page (default 1000)"
    )
    parser.add_argument(
        "--orders-per-contact", type=int, default=8, help="seeded orders each (default 8)"
    )
    parser.add_argument(
        "--iterations", type=int, default=40, help="timed page requests per subject (default 40)"
    )
    parser.add_argument(
        "--kind-iterations", type=int, default=60, help="timed orders per kind (default 60)"
    )
    return parser.parse_args(argv)


def order_input(n: int, emails: int) -> dict[str, Any]:
    placed = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n)
    return {
        "externalId": f"bench-{n}",
        "email": f"customer{n % emails}@example.com",
        "currencyCode": "EUR",
        "placedAt": placed.isoformat(),
        "firstName": "Bench",
        "lastName": f"Customer{n % emails}",
        "lineItems": [{"title": "Mug", "quantity": 1 + n % 3, "unitPrice": "12.50"}],
        "shipping": "4.90",
        "shippingAddress": {"line1": f"Street {n % emails}", "city": "Berlin", "countryCode": "DE"},
    }


# --- ingestion ---------------------------------------------------------------


async def api_ingestion(
    server: harness.DatabaseServer, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Closed-loop clients, each sending the next unused order once its last one is answered."""
    budget = int(args.seconds * 2000) + 1000  # more orders than the API can take in the window
    requests = [
        harness.graphql_request(RECORD, key, {"input": order_input(n, args.emails)})
        for n in range(budget)
    ]
    latencies: list[float] = []
    with harness.ApiServer(server, workers=1) as api:
        connections = [
            await harness.HttpConnection(api.port).open() for _ in range(args.concurrency)
        ]
        queue = iter(requests)
        start = time.perf_counter()
        stop_at = start + args.seconds

        async def client(connection: harness.HttpConnection) -> int:
            done = 0
            for raw in queue:
                if time.perf_counter() >= stop_at:
                    break
                sent = time.perf_counter()
                status, body = await connection.request(raw)
                if status != 200 or b'"userErrors":[]' not in body:
                    raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")
                latencies.append(time.perf_counter() - sent)
                done += 1
            return done

        try:
            recorded = sum(await asyncio.gather(*(client(c) for c in connections)))
        finally:
            for connection in connections:
                await connection.close()
        elapsed = time.perf_counter() - start
    return {
        "orders": recorded,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(recorded / elapsed, 2),
        "latency": summary(latencies),
    }


def _raw_order(shop: str, data: dict[str, Any], contact_id: Any) -> dict[str, Any]:
    from bson import Decimal128, ObjectId

    lines = data["lineItems"]
    total = sum(Decimal(line["unitPrice"]) * line["quantity"] for line in lines) + Decimal(
        data.get("shipping", "0")
    )
    return {
        "_id": ObjectId(),
        "shopId": shop,
        "externalId": data["externalId"],
        "status": "OPEN",
        "email": data["email"],
        "emailKey": data["email"].lower(),
        "contactId": contact_id,
        "placedAt": dt.datetime.fromisoformat(data["placedAt"]),
        "currency": "EUR",
        "total": Decimal128(total),
        "lineItems": lines,
        "shippingAddress": data.get("shippingAddress"),
    }


async def raw_record(database: Any, shop: str, data: dict[str, Any]) -> None:
    """What `orderRecord` writes, in one transaction, straight through the driver."""
    from bson import ObjectId

    from loaders.contacts import LIST_PROJECTION

    email = data["email"].lower()

    async def work(session: Any) -> None:
        known = await database.orders.find_one(
            {"shopId": shop, "externalId": data["externalId"]}, session=session
        )
        if known is not None:
            return  # a replay that changes nothing
        contact = await database.contacts.find_one(
            {"shopId": shop, "emailKey": email}, LIST_PROJECTION, session=session
        )
        order = _raw_order(shop, data, contact["_id"] if contact else ObjectId())
        await database.orders.insert_one(order, session=session)
        placed, total = order["placedAt"], order["total"]
        entry = {"_id": ObjectId(), "kind": "ORDER_PLACED", "at": placed, "orderId": order["_id"]}
        if contact is None:
            await database.contacts.insert_one(
                {
                    "_id": order["contactId"],
                    "shopId": shop,
                    "email": data["email"],
                    "emailKey": email,
                    "kind": "CUSTOMER",
                    "orderCount": 1,
                    "totalSpent": total,
                    "firstOrderAt": placed,
                    "lastOrderAt": placed,
                    "activity": [entry],
                    "activityCount": 1,
                    "activityEmbedded": 1,
                },
                session=session,
            )
            return
        await database.contacts.update_one(
            {"_id": contact["_id"], "shopId": shop},
            {
                "$inc": {
                    "orderCount": 1,
                    "totalSpent": total,
                    "activityCount": 1,
                    "activityEmbedded": 1,
                },
                "$max": {"lastOrderAt": placed},
                "$min": {"firstOrderAt": placed},
                "$set": {"updatedAt": placed},
                "$push": {"activity": entry},
            },
            session=session,
        )

    async with database.client.start_session() as session:
        await session.with_transaction(work)


async def raw_ingestion(database: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The same transaction per order, straight through the driver, by as many tasks."""
    shop = "bench-raw"
    counter = iter(range(10**9))
    start = time.perf_counter()
    stop_at = start + args.seconds

    async def worker() -> int:
        done = 0
        while time.perf_counter() < stop_at:
            await raw_record(database, shop, order_input(next(counter), args.emails))
            done += 1
        return done

    recorded = sum(await asyncio.gather(*(worker() for _ in range(args.concurrency))))
    elapsed = time.perf_counter() - start
    return {
        "orders": recorded,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(recorded / elapsed, 2),
    }


# --- one order at a time, by kind ------------------------------------------------


def kind_order(external_id: str, email: str, n: int) -> dict[str, Any]:
    return order_input(n, 1) | {"externalId": external_id, "email": email}


async def per_kind(
    server: harness.DatabaseServer, database: Any, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Time and commands of one order by kind, through the API and through `raw_record`."""
    from loaders.mongo import Database, connect

    total = args.kind_iterations + 3  # SideBySide's warm-up included
    known = [
        c["email"]
        async for c in database.contacts.find({"shopId": SHOP}, {"email": 1}, limit=2 * total)
    ]
    if len(known) < 2 * total:
        raise SystemExit(f"--contacts must be at least {2 * total} for --kind-iterations")
    counter = harness.CommandCounter()
    client = connect(server.uri, event_listeners=[counter])
    raw_db = Database(client[server.name])
    numbers = iter(range(10**9))
    sent: dict[str, list[str]] = {}
    with harness.ApiServer(server, workers=1) as api:
        connection = await harness.HttpConnection(api.port).open()

        async def through_api(data: dict[str, Any]) -> None:
            raw = harness.graphql_request(RECORD, key, {"input": data})
            status, body = await connection.request(raw)
            if status != 200 or b'"userErrors":[]' not in body:
                raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")

        async def through_driver(name: str, data: dict[str, Any]) -> None:
            counter.reset()
            await raw_record(raw_db, SHOP, data)
            sent[name] = list(counter.names)

        def fresh(kind: str, email: str) -> dict[str, Any]:
            n = next(numbers)
            return kind_order(f"kind-{kind}-{n}", email, n)

        api_known, raw_known = iter(known[:total]), iter(known[total:])
        await through_api(kind_order("kind-replay-api", "replayed@example.com", 0))
        await through_driver("replay", kind_order("kind-replay-raw", "replayed-raw@example.com", 0))
        subjects = {
            "api_new": lambda: through_api(fresh("new", f"new-{next(numbers)}@example.com")),
            "raw_new": lambda: through_driver(
                "new", fresh("raw-new", f"raw-new-{next(numbers)}@example.com")
            ),
            "api_existing": lambda: through_api(fresh("known", next(api_known))),
            "raw_existing": lambda: through_driver("existing", fresh("raw-known", next(raw_known))),
            "api_replay": lambda: through_api(
                kind_order("kind-replay-api", "replayed@example.com", 0)
            ),
            "raw_replay": lambda: through_driver(
                "replay", kind_order("kind-replay-raw", "replayed-raw@example.com", 0)
            ),
        }
        try:
            timings = await SideBySide().run(subjects, iterations=args.kind_iterations)
        finally:
            await connection.close()
            await client.close()
    medians = {name: harness.median_ms(values) for name, values in timings.items()}
    kinds: dict[str, Any] = {}
    for kind in ("new", "existing", "replay"):
        api_ms, raw_ms = medians[f"api_{kind}"], medians[f"raw_{kind}"]
        kinds[kind] = {
            "api_median_ms": round(api_ms, 2),
            "raw_median_ms": round(raw_ms, 2),
            "api_over_raw": ratio(api_ms, raw_ms),
            "raw_commands": sent[kind],
            "api": summary(timings[f"api_{kind}"]),
        }
    return {
        "kinds": kinds,
        "existing_over_new": ratio(medians["api_existing"], medians["api_new"]),
        "raw_existing_over_new": ratio(medians["raw_existing"], medians["raw_new"]),
    }


# --- commands ------------------------------------------------------------------


async def command_counts(server: harness.DatabaseServer, key: str, emails: int) -> dict[str, Any]:
    from pymongo import monitoring

    counter = harness.CommandCounter()
    monitoring.register(counter)  # before the app's client exists, so it is seen
    out: dict[str, Any] = {"per_order": {}, "page_first": {}}
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}

        async def call(query: str, variables: dict[str, Any]) -> list[str]:
            counter.reset()
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            answer = harness.check_graphql(response.status_code, response.content)
            if answer["data"].get("orderRecord", {}).get("userErrors"):
                raise RuntimeError(f"refused: {answer['data']['orderRecord']['userErrors']}")
            return list(counter.names)

        await call("{ __typename }", {})  # the key look-up, then cached, is nobody's cost
        fresh = order_input(0, emails) | {
            "externalId": "bench-probe",
            "email": "never-seen@example.com",
        }
        out["per_order"]["new_contact"] = await call(RECORD, {"input": fresh})
        out["per_order"]["known_contact"] = await call(
            RECORD, {"input": fresh | {"externalId": "bench-known"}}
        )
        out["per_order"]["replay"] = await call(RECORD, {"input": fresh})
        out["per_order"]["replay_canceling"] = await call(
            RECORD, {"input": fresh | {"status": "CANCELED"}}
        )
        for first in (5, 50, 250):
            out["page_first"][str(first)] = await call(PAGE, {"first": first})
    return {
        "per_order": {k: len(v) for k, v in out["per_order"].items()},
        "per_order_commands": out["per_order"],
        "page_first": {k: len(v) for k, v in out["page_first"].items()},
        "page_commands": out["page_first"]["50"],
    }


# --- the page --------------------------------------------------------------------


async def raw_page(database: Any, first: int) -> list[dict[str, Any]]:
    from loaders.contacts import LIST_PROJECTION

    contacts = await database.contacts.find(
        {"shopId": SHOP}, LIST_PROJECTION, sort=[("createdAt", 1), ("_id", 1)], limit=first + 1
    ).to_list()
    contacts = contacts[:first]
    groups = await (
        await database.orders.aggregate(
            [
                # As the API reads: status in a stage of its own (see loaders/orders.py).
                {"$match": {"shopId": SHOP, "contactId": {"$in": [c["_id"] for c in contacts]}}},
                {"$match": {"status": {"$in": ["OPEN", "FULFILLED", "DRAFT"]}}},
                {
                    "$group": {
                        "_id": "$contactId",
                        "rows": {
                            "$topN": {
                                "n": 6,
                                "sortBy": {"placedAt": -1, "_id": -1},
                                "output": "$$ROOT",
                            }
                        },
                    }
                },
            ],
            batchSize=first + 1,
        )
    ).to_list()
    orders = {g["_id"]: g["rows"][:5] for g in groups}
    return [{**c, "orders": orders.get(c["_id"], [])} for c in contacts]


class Floor(harness.Floor):
    """The floor of PAGE, from the raw reads' documents."""

    def use(self, rows: list[dict[str, Any]]) -> None:
        from graph.types.node import encode_id

        def money(value: Any) -> dict[str, Any]:
            return {"amount": str(value.to_decimal()), "currencyCode": "EUR"}

        nodes = [
            {
                "id": encode_id("Contact", c["_id"]),
                "email": c["email"],
                "orders": {
                    "nodes": [
                        {"externalId": o.get("externalId"), "total": money(o["total"])}
                        for o in c["orders"]
                    ]
                },
            }
            for c in rows
        ]
        self.root = {"contacts": {"nodes": nodes}}


async def page_latency(
    server: harness.DatabaseServer, database: Any, key: str, args: argparse.Namespace
) -> dict[str, Any]:
    import orjson

    variables = {"first": 50}
    request = harness.graphql_request(PAGE, key, variables)
    floor = Floor(PAGE, variables)
    floor.use(await raw_page(database, 50))
    with harness.ApiServer(server, workers=1) as api:
        connection = await harness.HttpConnection(api.port).open()
        try:
            answer = harness.check_graphql(*await connection.request(request))
            if answer["data"] != orjson.loads(floor())["data"]:
                raise RuntimeError("the API's page differs from the raw driver's")

            async def over_http() -> None:
                status, body = await connection.request(request)
                if status != 200:
                    raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")

            async def raw() -> None:
                await raw_page(database, 50)

            timings = await SideBySide().run(
                {"api": over_http, "raw": raw, "floor": harness.sync_timer(floor)},
                iterations=args.iterations,
            )
        finally:
            await connection.close()
    api_ms, raw_ms, floor_ms = (harness.median_ms(timings[k]) for k in ("api", "raw", "floor"))
    return {
        "query": " ".join(PAGE.split()),
        "page_ratio": ratio(api_ms, raw_ms + floor_ms),
        "api_median_ms": round(api_ms, 3),
        "raw_median_ms": round(raw_ms, 3),
        "floor_median_ms": round(floor_ms, 3),
        "overhead_over_floor": ratio(api_ms - raw_ms, floor_ms),
        "api": summary(timings["api"]),
        "raw": summary(timings["raw"]),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from resolvers.shops import Role, create_key, ensure_shop

    result: dict[str, Any] = {"benchmark": "orders_ingest", "machine": harness.machine()}
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            await ensure_shop(database, SHOP, currency="EUR")
            key = await harness.admin_key(database)
            await ensure_shop(database, "bench-ingest", currency="EUR")
            _, ingest_key = await create_key(
                database, "bench-ingest", Role.INGEST, "Bench shop backend"
            )
            log(f"seeding {args.contacts} contacts with {args.orders_per_contact} orders each ...")
            result["seed_seconds"] = round(
                await harness.seed_contacts(database, SHOP, args.contacts, args.orders_per_contact),
                2,
            )
            result["commands"] = await command_counts(server, key, args.emails)
            log("page latency ...")
            result["page"] = await page_latency(server, database, key, args)
            # After the page: the raw side adds bare contacts to the page's shop.
            log(f"one order at a time by kind, {args.kind_iterations} each ...")
            result["per_kind"] = await per_kind(server, database, key, args)
            for kind, name in (
                ("new", "new_contact"),
                ("existing", "known_contact"),
                ("replay", "replay"),
            ):
                result["per_kind"]["kinds"][kind]["api_commands"] = result["commands"][
                    "per_order_commands"
                ][name]
            log(f"ingestion through the API, {args.concurrency} clients, {args.seconds} s ...")
            api = await api_ingestion(server, ingest_key, args)
            log(
                f"the same writes with the raw driver, {args.concurrency} tasks, "
                f"{args.seconds} s ..."
            )
            raw = await raw_ingestion(database, args)
            result["ingestion"] = {
                "concurrency": args.concurrency,
                "api": api,
                "raw": raw,
                "ratio": ratio(api["orders_per_second"], raw["orders_per_second"]),
            }
    return result


def main(argv: list[str] | None = None) -> int:
    harness.emit(asyncio.run(main_async(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
