"""The contact page and `noteAdd`: API p50/p95 vs. the raw driver plus the graphql-core floor.

    .venv/bin/python bench/contact_page.py --contacts 1000 --iterations 200

Seeds N contacts with orders (as `contactgraph seed`), then builds one
"page" contact through the API itself: `--activity` entries (notes, with an
`orderRecord` for it every tenth), so its log has spilled into the archive
and its newest 50 entries mix notes and orders. Serves the real app with
uvicorn (1 worker) and prints one JSON document:

- page: `contact(id) { <details> consent activity(first: 50) { totalCount
  pageInfo nodes { ... order { ... } } } orders(first: 5) { ... } }` over
  HTTP, next to the same data read with a bare AsyncMongoClient (the
  contact with its newest 51 entries by `$slice`, its newest orders, the
  orders the entries name: three commands) and plain graphql-core executing
  the same query on build_schema(graph/schema.graphql) with those documents
  as dicts (the floor). Before timing, the API's answer is checked equal to
  the floor's.
- note_add: `noteAdd(contactId, text) { note { ... } userErrors { ... } }`
  over HTTP on one contact, next to the same write with the bare driver on
  a twin contact (the same `findAndModify` pushing the entry, and the same
  archive move whenever the log passes its bound, so both pay for a spill
  once per 100 notes: it shows in max, not in p50) and the floor executing
  the mutation's answer.
- commands: MongoDB commands per page and per noteAdd, counted in process.

Measured interleaved, round by round. ratio = api / (raw + floor) at p50 and
p95; overhead_over_floor = (api - raw) / floor at the median
(architecture.md's measure).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, Floor, SideBySide, log, ratio, summary  # noqa: E402

AUTHOR = "Bench admin"  # harness.admin_key names its key so
NOTE_TEXT = "Called back about the delivery date; prefers e-mail in the morning."

PAGE = """
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

NOTE_ADD = """
mutation NoteAdd($contactId: ID!, $text: String!) {
  noteAdd(contactId: $contactId, text: $text) {
    note { id kind at author text }
    userErrors { field message code }
  }
}
"""

ORDER_RECORD = """
mutation Record($input: OrderInput!) {
  orderRecord(input: $input) { order { id } userErrors { field code message } }
}
"""

SHOWN_STATUSES = ("OPEN", "FULFILLED", "DRAFT")  # orders(first: 5)'s defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contacts", type=int, default=1000, help="contacts to seed (default 1000)"
    )
    parser.add_argument(
        "--orders-per-contact", type=int, default=4, help="seeded orders each (default 4)"
    )
    parser.add_argument(
        "--activity",
        type=int,
        default=250,
        help="entries written to the page contact through the API (default 250)",
    )
    parser.add_argument(
        "--iterations", type=int, default=200, help="timed rounds per subject (default 200)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long to measure the processes' idle CPU burn first (default 10)",
    )
    return parser.parse_args(argv)


# --- documents as the floor's dicts ------------------------------------------


def _ts(value: dt.datetime | None) -> str | None:
    from graph.types.scalars import serialize_datetime

    if value is None:
        return None
    return serialize_datetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))


def _money(value: Any, currency: str) -> dict[str, Any]:
    from graph.types.scalars import serialize_decimal

    return {"amount": serialize_decimal(value.to_decimal()), "currencyCode": currency}


def _order(doc: dict[str, Any], currency: str) -> dict[str, Any]:
    from graph.types.node import encode_id

    return {
        "id": encode_id("Order", doc["_id"]),
        "externalId": doc.get("externalId"),
        "placedAt": _ts(doc.get("placedAt")),
        "status": doc["status"],
        "total": _money(doc["total"], currency),
    }


def _entry(
    doc: dict[str, Any], contact_id: Any, orders: dict[Any, dict[str, Any]]
) -> dict[str, Any]:
    from graph.types.node import encode_id

    order = orders.get(doc.get("orderId"))
    return {
        "id": encode_id("ActivityEntry", doc["_id"], contact_id),
        "kind": doc["kind"],
        "at": _ts(doc["at"]),
        "author": doc.get("author"),
        "text": doc.get("text"),
        "order": None
        if order is None
        else {
            "id": encode_id("Order", order["_id"]),
            "externalId": order.get("externalId"),
            "status": order["status"],
        },
    }


def page_data(raw: dict[str, Any], currency: str) -> dict[str, Any]:
    """The raw documents in the query's shape, as a GraphQL server's resolvers would hand them over."""
    from graph.types.node import encode_id
    from loaders.keyset import encode_cursor

    contact, orders, named = raw["contact"], raw["orders"], raw["named_orders"]
    entries = contact.get("activity") or []
    shown = entries[:50]
    first, last = contact.get("firstName"), contact.get("lastName")
    display = " ".join(p for p in (first, last) if p) or contact["email"]
    consent = contact.get("consent") or {}
    return {
        "contact": {
            "id": encode_id("Contact", contact["_id"]),
            "email": contact["email"],
            "displayName": display,
            "firstName": first,
            "lastName": last,
            "phone": contact.get("phone"),
            "kind": contact["kind"],
            "labels": contact.get("labels") or [],
            "hasAccount": bool(contact.get("hasAccount")),
            "orderCount": contact.get("orderCount") or 0,
            "lastOrderAt": _ts(contact.get("lastOrderAt")),
            "totalSpent": _money(contact["totalSpent"], currency),
            "consent": {
                "state": consent.get("state") or "NOT_SUBSCRIBED",
                "optInLevel": consent.get("optInLevel"),
            },
            "activity": {
                "totalCount": contact.get("activityCount") or 0,
                "pageInfo": {
                    "hasNextPage": len(entries) > 50,
                    "endCursor": encode_cursor("activity", shown[-1]["at"], shown[-1]["_id"])
                    if shown
                    else None,
                },
                "nodes": [_entry(e, contact["_id"], named) for e in shown],
            },
            "orders": {"nodes": [_order(o, currency) for o in orders[:5]]},
        }
    }


# --- the raw driver ------------------------------------------------------------


async def raw_page(database: Any, contact_id: Any) -> dict[str, Any]:
    """The page's data in three commands: contact + newest entries, newest orders, named orders."""
    from loaders.activity import newest_first
    from loaders.orders import history_stages

    # The log is stored in write order: the server orders it newest first and cuts the window.
    [contact] = await (
        await database.contacts.aggregate(
            [
                {"$match": {"_id": contact_id, "shopId": SHOP}},
                {"$addFields": {"activity": {"$slice": [newest_first("$activity"), 51]}}},
                {"$project": {"searchTerms": 0}},
            ]
        )
    ).to_list()
    orders = await (
        await database.orders.aggregate(
            [
                *history_stages(SHOP, [contact_id], SHOWN_STATUSES),
                {"$sort": {"placedAt": -1, "_id": -1}},
                {"$limit": 6},
            ],
            batchSize=6,
        )
    ).to_list()
    wanted = list({e["orderId"] for e in contact["activity"][:50] if e.get("orderId")})
    named = await database.orders.find({"_id": {"$in": wanted}, "shopId": SHOP}).to_list()
    return {"contact": contact, "orders": orders, "named_orders": {o["_id"]: o for o in named}}


async def raw_note_add(database: Any, contact_id: Any) -> dict[str, Any]:
    """What noteAdd writes, without the API: one findAndModify, and the archive move when due."""
    from bson import ObjectId
    from pymongo import ReturnDocument

    from resolvers.activity import push, spill_overflow
    from resolvers.clock import now

    note = {"_id": ObjectId(), "kind": "NOTE", "at": now(), "text": NOTE_TEXT, "author": AUTHOR}
    update = push([note])
    update["$set"] = {"updatedAt": note["at"]}
    contact = await database.contacts.find_one_and_update(
        {"shopId": SHOP, "_id": contact_id},
        update,
        projection={"activity": 0, "searchTerms": 0},
        return_document=ReturnDocument.AFTER,
    )
    await spill_overflow(database, SHOP, contact)
    return note


def note_answer(note: dict[str, Any]) -> dict[str, Any]:
    from graph.types.node import encode_id

    return {
        "noteAdd": {
            "note": {
                "id": encode_id("ActivityEntry", note["_id"]),
                "kind": "NOTE",
                "at": _ts(note["at"]),
                "author": note["author"],
                "text": note["text"],
            },
            "userErrors": [],
        }
    }


# --- setup ---------------------------------------------------------------------


def order_input(contact: dict[str, Any], n: int) -> dict[str, Any]:
    # Now, so the order's entry sorts among the notes around it.
    placed = dt.datetime.now(dt.UTC)
    return {
        "externalId": f"page-{n}",
        "email": contact["email"],
        "currencyCode": "EUR",
        "placedAt": placed.isoformat(),
        "lineItems": [{"title": "Mug", "quantity": 1 + n % 3, "unitPrice": "12.50"}],
        "shipping": "4.90",
        "shippingAddress": {"line1": "Hauptstr. 1", "city": "Berlin", "countryCode": "DE"},
    }


async def build_page_contact(
    connection: harness.HttpConnection, key: str, contact: dict[str, Any], entries: int
) -> None:
    """Notes through noteAdd, an order through orderRecord every tenth entry."""
    from graph.types.node import encode_id

    contact_id = encode_id("Contact", contact["_id"])
    for n in range(entries):
        if n % 10 == 9:
            request = harness.graphql_request(ORDER_RECORD, key, {"input": order_input(contact, n)})
            answer = harness.check_graphql(*await connection.request(request))
            if answer["data"]["orderRecord"]["userErrors"]:
                raise RuntimeError(answer["data"]["orderRecord"]["userErrors"])
        else:
            request = harness.graphql_request(
                NOTE_ADD, key, {"contactId": contact_id, "text": f"Note {n}: {NOTE_TEXT}"}
            )
            answer = harness.check_graphql(*await connection.request(request))
            if answer["data"]["noteAdd"]["userErrors"]:
                raise RuntimeError(answer["data"]["noteAdd"]["userErrors"])


# --- measuring -----------------------------------------------------------------


async def command_counts(
    server: harness.DatabaseServer, key: str, page_id: str, note_id: str
) -> dict[str, Any]:
    from pymongo import monitoring

    counter = harness.CommandCounter()
    monitoring.register(counter)  # before the app's client exists, so it is seen
    out: dict[str, Any] = {}
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}

        async def call(query: str, variables: dict[str, Any]) -> list[str]:
            counter.reset()
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers
            )
            harness.check_graphql(response.status_code, response.content)
            return list(counter.names)

        await call("{ __typename }", {})  # the key look-up, then cached, is nobody's cost
        out["page"] = await call(PAGE, {"id": page_id})
        out["note_add"] = await call(NOTE_ADD, {"contactId": note_id, "text": NOTE_TEXT})
    return {name: {"count": len(names), "commands": names} for name, names in out.items()}


def percentiles(samples: list[float]) -> dict[str, Any]:
    shown = summary(samples)
    shown["max_ms"] = round(max(samples) * 1000, 3) if samples else None
    return shown


async def idle_burn(cpu: harness.ProcessCpu, seconds: float) -> tuple[float, float]:
    """CPU seconds per second that the API server and this process burn while waiting.

    While a request waits on the database, a process still burns a little
    CPU on timers (uvicorn's loop, the driver's monitors); it is taken off
    per second of waiting, or a slow database would look like API work.
    """
    server_before, own_before = cpu.read(), time.process_time()
    await asyncio.sleep(seconds)
    return (cpu.read() - server_before) / seconds, (time.process_time() - own_before) / seconds


def cpu_compare(
    side: SideBySide, server_busy: float, requests: int, idle: tuple[float, float]
) -> dict[str, Any]:
    """Mean CPU ms per page: the API server process vs this process's bare reads, and the floor."""
    server_idle, own_idle = idle
    api = server_busy / requests - server_idle * statistics.fmean(side.timings["api"])
    raw = statistics.fmean(side.cpu["raw"]) - own_idle * statistics.fmean(side.timings["raw"])
    floor = statistics.fmean(side.cpu["floor"])
    return {
        "api_server_ms": round(api * 1000, 3),
        "raw_driver_ms": round(raw * 1000, 3),
        "floor_ms": round(floor * 1000, 3),
        "overhead_ms": round((api - raw) * 1000, 3),
        "overhead_over_floor": ratio(api - raw, floor),
        "idle_burn_ms_per_s": {
            "api_server": round(server_idle * 1000, 3),
            "raw_driver": round(own_idle * 1000, 3),
        },
    }


def compare(timings: dict[str, list[float]]) -> dict[str, Any]:
    api, raw, floor = (percentiles(timings[k]) for k in ("api", "raw", "floor"))
    return {
        "ratio_p50": ratio(api["median_ms"], raw["median_ms"] + floor["median_ms"]),
        "ratio_p95": ratio(api["p95_ms"], raw["p95_ms"] + floor["p95_ms"]),
        "overhead_median_ms": round(api["median_ms"] - raw["median_ms"], 3),
        "overhead_over_floor": ratio(api["median_ms"] - raw["median_ms"], floor["median_ms"]),
        "api": api,
        "raw": raw,
        "floor": floor,
    }


async def measure(
    server: harness.DatabaseServer,
    database: Any,
    key: str,
    contacts: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    import orjson

    from graph.types.node import encode_id

    page_contact, api_twin, raw_twin = contacts
    page_id = encode_id("Contact", page_contact["_id"])
    result: dict[str, Any] = {}
    with harness.ApiServer(server, workers=1) as api:
        connection = await harness.HttpConnection(api.port).open()
        try:
            log(f"writing {args.activity} entries to the page contact through the API ...")
            await build_page_contact(connection, key, page_contact, args.activity)

            page_request = harness.graphql_request(PAGE, key, {"id": page_id})
            page_floor = Floor(PAGE, {"id": page_id})
            page_floor.root = page_data(await raw_page(database, page_contact["_id"]), "EUR")
            answer = harness.check_graphql(*await connection.request(page_request))
            if answer["data"] != orjson.loads(page_floor())["data"]:
                raise RuntimeError(
                    "the API's page differs from the raw driver's:\n"
                    f"{answer['data']}\n{orjson.loads(page_floor())['data']}"
                )
            activity = answer["data"]["contact"]["activity"]
            result["page_contact"] = {
                "activity_total": activity["totalCount"],
                "archived": (
                    await database.contacts.find_one(
                        {"_id": page_contact["_id"]}, {"activityArchived": 1}
                    )
                ).get("activityArchived", 0),
                "orders_in_first_50_entries": sum(1 for e in activity["nodes"] if e["order"]),
            }

            async def api_page() -> None:
                status, body = await connection.request(page_request)
                if status != 200 or b'"errors"' in body:
                    raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")

            async def raw_reads() -> None:
                await raw_page(database, page_contact["_id"])

            server_cpu = harness.ProcessCpu(api.process.pid)  # type: ignore[union-attr]
            idle = await idle_burn(server_cpu, args.idle_seconds)
            log(f"contact page, {args.iterations} rounds ...")
            side = SideBySide()
            busy_before = server_cpu.read()
            page_timings = await side.run(
                {"api": api_page, "raw": raw_reads, "floor": harness.sync_timer(page_floor)},
                iterations=args.iterations,
                warmup=args.warmup,
            )
            busy = server_cpu.read() - busy_before
            result["page"] = {
                "query": " ".join(PAGE.split()),
                **compare(page_timings),
                "cpu": cpu_compare(side, busy, args.iterations + args.warmup, idle),
            }

            note_request = harness.graphql_request(
                NOTE_ADD,
                key,
                {"contactId": encode_id("Contact", api_twin["_id"]), "text": NOTE_TEXT},
            )
            note_floor = Floor(NOTE_ADD, {"contactId": "unused", "text": NOTE_TEXT})

            async def api_note() -> None:
                status, body = await connection.request(note_request)
                if status != 200 or b'"errors"' in body or b'"userErrors":[]' not in body:
                    raise harness.HttpError(f"HTTP {status}: {body[:300]!r}")

            async def raw_note() -> None:
                note_floor.root = note_answer(await raw_note_add(database, raw_twin["_id"]))

            await raw_note()
            log(f"noteAdd, {args.iterations} rounds ...")
            note_timings = await SideBySide().run(
                {"api": api_note, "raw": raw_note, "floor": harness.sync_timer(note_floor)},
                iterations=args.iterations,
                warmup=args.warmup,
            )
            result["note_add"] = {"query": " ".join(NOTE_ADD.split()), **compare(note_timings)}
        finally:
            await connection.close()
    result["commands"] = await command_counts(
        server, key, page_id, encode_id("Contact", api_twin["_id"])
    )
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from resolvers.shops import ensure_shop

    result: dict[str, Any] = {"benchmark": "contact_page", "machine": harness.machine()}
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            await ensure_shop(database, SHOP, currency="EUR")
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts with {args.orders_per_contact} orders each ...")
            result["seed_seconds"] = round(
                await harness.seed_contacts(database, SHOP, args.contacts, args.orders_per_contact),
                2,
            )
            # Three seeded contacts with the same history: the page, and twins for noteAdd.
            contacts = await database.contacts.find(
                {"shopId": SHOP}, {"email": 1}, sort=[("_id", 1)], limit=3
            ).to_list()
            result.update(await measure(server, database, key, contacts, args))
    return result


def main(argv: list[str] | None = None) -> int:
    harness.emit(harness.run(main_async(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
