"""Where the API spends its own CPU on the contacts page and the contact page, and what each feature costs.

    .venv/bin/python bench/profile_page.py --page contacts --contacts 500
    .venv/bin/python bench/profile_page.py --page contact --contacts 300
    .venv/bin/python bench/profile_page.py --page contacts --cprofile 200

The pages are contacts_page.py's and contact_page.py's. Everything runs in
this one process, so CPU time (not wall time) can be compared step by step
while the database, a separate process, does its part; other processes'
load shows up far less than in wall time. Steps are measured in
interleaved batches (median and least CPU ms per call; the derived figures
use the least, since load from elsewhere only ever adds):

- floor: plain graphql-core on build_schema(graph/schema.graphql) with the
  documents as dicts (parsed and validated once), orjson-encoded.
- raw: the same reads with the bare driver.
- execute: `schema.execute` of the page with a real context and the
  database, as the server runs it between reading the request and writing
  the answer (the driver's CPU included); execute - raw is the GraphQL
  layer's own cost.
- http: the same request through the Starlette app (httpx's ASGI
  transport; the client's own work is included, so this is an upper bound).
- execute without one feature at a time, to price it: `strawberry_executor`
  (Strawberry's own executor instead of graph.attribute_resolvers'
  PlainFieldsExecutor), `no_query_checks` (no depth/alias/cost analysis and
  no throttle), `no_throttle` (the analysis, without the key's bucket: one
  findAndModify per operation), `no_operation_observer` (the request log's
  and tracing's per-operation hook).
- contacts page only: `fields`, the executor answering the page's fields on
  a connection built beforehand (no database, no `totalCount`), next to the
  floor without `totalCount`; `fields_with_from_page` also builds the
  connection from the documents.

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

import contact_page  # noqa: E402
import contacts_page  # noqa: E402
import harness  # noqa: E402
from harness import SHOP, log  # noqa: E402

NO_COUNT = contacts_page.PAGE.replace("totalCount", "")

Step = Callable[[], Awaitable[Any]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--page", choices=["contacts", "contact"], default="contacts")
    parser.add_argument("--contacts", type=int, default=500, help="contacts to seed (default 500)")
    parser.add_argument("--first", type=int, default=50, help="contacts page size (default 50)")
    parser.add_argument(
        "--activity",
        type=int,
        default=150,
        help="contact page: entries written to its contact through the API (default 150)",
    )
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
    if args.contacts < max(args.first, 3) or not 1 <= args.first <= 250:
        parser.error("--first must be 1..250 and at most --contacts")
    return args


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


# --- the pages ------------------------------------------------------------------


class Page:
    """One page: its query and variables, its bare reads, and the floor fed with their result."""

    query: str
    variables: dict[str, Any]
    floor: harness.Floor

    async def raw(self) -> None:
        raise NotImplementedError


class ContactsPage(Page):
    def __init__(self, database: Any, first: int) -> None:
        self.database = database
        self.first = first
        self.query = contacts_page.PAGE
        self.variables = {"first": first}

    async def prepare(self) -> None:
        self.docs, self.total = await contacts_page.raw_page(self.database, self.first)
        self.floor = contacts_page.Floor(self.query, self.variables)
        self.floor.use(self.docs, self.total)

    async def raw(self) -> None:
        await contacts_page.raw_page(self.database, self.first)


class ContactPage(Page):
    def __init__(self, database: Any, contact: dict[str, Any]) -> None:
        from graph.types.node import encode_id

        self.database = database
        self.contact_id = contact["_id"]
        self.query = contact_page.PAGE
        self.variables = {"id": encode_id("Contact", contact["_id"])}

    async def prepare(self) -> None:
        self.floor = harness.Floor(self.query, self.variables)
        self.floor.root = contact_page.page_data(
            await contact_page.raw_page(self.database, self.contact_id), "EUR"
        )

    async def raw(self) -> None:
        await contact_page.raw_page(self.database, self.contact_id)


async def write_history(client: Any, key: str, contact: dict[str, Any], entries: int) -> None:
    """Notes through noteAdd, an order through orderRecord every tenth entry (as contact_page.py)."""
    from graph.types.node import encode_id

    headers = {"Authorization": f"Bearer {key}"}
    contact_id = encode_id("Contact", contact["_id"])
    for n in range(entries):
        if n % 10 == 9:
            body = {
                "query": contact_page.ORDER_RECORD,
                "variables": {"input": contact_page.order_input(contact, n)},
            }
        else:
            body = {
                "query": contact_page.NOTE_ADD,
                "variables": {"contactId": contact_id, "text": f"Note {n}"},
            }
        response = await client.post("/graphql", json=body, headers=headers)
        answer = harness.check_graphql(response.status_code, response.content)
        payload = next(iter(answer["data"].values()))
        if payload["userErrors"]:
            raise RuntimeError(payload["userErrors"])


# --- the steps ------------------------------------------------------------------


def schema_variants(settings: Any) -> dict[str, Any]:
    """The server's schema, and copies of it each without one feature."""
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

    from graph.http.request_log import OperationObserver
    from graph.limits import QueryChecks
    from graph.schema import build_schema

    def without(kind: type) -> Any:
        schema = build_schema(settings)
        schema.extensions = [
            factory for factory in schema.extensions if not isinstance(factory(), kind)
        ]
        return schema

    strawberry_executor = build_schema(settings)
    strawberry_executor.execution_context_class = StrawberryGraphQLCoreExecutionContext
    return {
        "execute": build_schema(settings),
        "strawberry_executor": strawberry_executor,
        "no_query_checks": without(QueryChecks),
        "no_operation_observer": without(OperationObserver),
    }


def fields_steps(docs: list[dict[str, Any]], currency: str | None, first: int) -> tuple[Step, Step]:
    """The executor answering the contacts page's fields, with `contacts` answered from memory."""
    import graphql
    import orjson
    from strawberry.execution.is_awaitable import optimized_is_awaitable

    from graph.attribute_resolvers import PlainFieldsExecutor
    from graph.schema import build_schema
    from graph.types.contact import ContactConnection
    from loaders.keyset import Page as KeysetPage

    page = KeysetPage(docs, has_next=True, has_previous=False, field="nameKey")
    held = {"connection": ContactConnection.from_page(page, currency, None, {})}  # type: ignore[arg-type]
    schema = build_schema()._schema  # a schema of its own: its `contacts` resolver is replaced
    schema.query_type.fields["contacts"].resolve = lambda root, info, **args: held["connection"]  # type: ignore[union-attr]
    document = graphql.parse(NO_COUNT)
    errors = graphql.validate(schema, document)
    if errors:
        raise RuntimeError(errors)

    def execute() -> bytes:
        # The server's executor without the rights check, which needs a key.
        result = graphql.execute(
            schema,
            document,
            variable_values={"first": first},
            executor_class=PlainFieldsExecutor,
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
    server: harness.DatabaseServer, database: Any, key: str, page: Page, args: argparse.Namespace
) -> dict[str, Any]:
    from graph.context import Context
    from graph.settings import Settings
    from loaders.container import Loaders
    from resolvers.shops import find_key

    found = await find_key(database, key)
    assert found is not None
    api_key, shop = found
    # The budget harness.in_process_api gives the app: no step is ever throttled.
    settings = Settings(throttle_bucket=100_000_000, cost_limit=1_000_000)

    def executing(schema: Any, throttled: bool = True) -> Step:
        async def step() -> None:
            context = Context(
                request=None, response=None, database=database, settings=settings, key=api_key,
                shop=shop, loaders=Loaders(database, shop.id), throttled=throttled,
            )  # fmt: skip
            result = await schema.execute(
                page.query, variable_values=page.variables, context_value=context
            )
            assert not result.errors, result.errors

        return step

    variants = schema_variants(settings)
    steps: dict[str, Step] = {
        "floor": harness.sync_timer(page.floor),
        "raw": page.raw,
        **{name: executing(schema) for name, schema in variants.items()},
        "no_throttle": executing(variants["execute"], throttled=False),
    }
    if isinstance(page, ContactsPage):
        fields, fields_with_from_page = fields_steps(page.docs, shop.currency, args.first)
        no_count = contacts_page.Floor(NO_COUNT, page.variables)
        no_count.use(page.docs, page.total)
        steps.update(
            floor_without_total_count=harness.sync_timer(no_count),
            fields=fields,
            fields_with_from_page=fields_with_from_page,
        )
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"query": page.query, "variables": page.variables}

        async def http() -> None:
            response = await client.post("/graphql", json=body, headers=headers)
            harness.check_graphql(response.status_code, response.content)

        steps["http"] = http
        log(f"breakdown: {args.batches} batches of {args.per_batch} calls per step ...")
        measured = await cpu_per_call(steps, args.batches, args.per_batch)
    cpu = measured["min"]
    floor = cpu["floor"]
    graphql_layer = cpu["execute"] - cpu["raw"]
    derived: dict[str, Any] = {
        "graphql_layer (execute - raw)": round(graphql_layer, 3),
        "graphql_layer_over_floor": harness.ratio(graphql_layer, floor),
        "http_layer_with_client (http - execute)": round(cpu["http"] - cpu["execute"], 3),
        "api_over_floor_in_process ((http - raw) / floor)": harness.ratio(
            cpu["http"] - cpu["raw"], floor
        ),
        # What each feature adds to execute (negative: the feature saves that much).
        "feature_cost_ms": {
            "plain_fields_executor (vs Strawberry's own)": round(
                cpu["execute"] - cpu["strawberry_executor"], 3
            ),
            "query_checks (analysis + throttle)": round(cpu["execute"] - cpu["no_query_checks"], 3),
            "throttle (the bucket's findAndModify)": round(cpu["execute"] - cpu["no_throttle"], 3),
            "operation_observer": round(cpu["execute"] - cpu["no_operation_observer"], 3),
        },
    }
    if isinstance(page, ContactsPage):
        derived.update(
            fields_over_floor=harness.ratio(cpu["fields"], cpu["floor_without_total_count"]),
            from_page=round(cpu["fields_with_from_page"] - cpu["fields"], 3),
        )
    return {"cpu_ms_per_page": measured, "derived_ms_from_min": derived}


async def profile_requests(
    server: harness.DatabaseServer, key: str, page: Page, args: argparse.Namespace
) -> dict[str, Any]:
    async with harness.in_process_api(server, key_cache_seconds=3600) as client:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"query": page.query, "variables": page.variables}

        async def request() -> None:
            response = await client.post("/graphql", json=body, headers=headers)
            harness.check_graphql(response.status_code, response.content)

        for _ in range(10):
            await request()
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.cprofile):
            await request()
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
    from resolvers.shops import ensure_shop

    result: dict[str, Any] = {
        "benchmark": "profile_page",
        "page": args.page,
        "root": str(harness.ROOT),
        "contacts": args.contacts,
        "machine": harness.machine(),
    }
    with harness.database_server() as server:
        async with harness.open_database(server) as database:
            await ensure_shop(database, SHOP, currency="EUR")
            key = await harness.admin_key(database)
            page: ContactsPage | ContactPage
            if args.page == "contacts":
                log(f"seeding {args.contacts} contacts ...")
                await harness.seed_contacts(database, SHOP, args.contacts)
                page = ContactsPage(database, args.first)
                result["first"] = args.first
            else:
                log(f"seeding {args.contacts} contacts with 4 orders each ...")
                await harness.seed_contacts(database, SHOP, args.contacts, 4)
                contact = await database.contacts.find_one({"shopId": SHOP}, {"email": 1})
                log(f"writing {args.activity} entries to the page contact through the API ...")
                async with harness.in_process_api(server, key_cache_seconds=3600) as client:
                    await write_history(client, key, contact, args.activity)
                page = ContactPage(database, contact)
                result["activity"] = args.activity
            await page.prepare()
            result["breakdown"] = await breakdown(server, database, key, page, args)
        if args.cprofile:
            result["cprofile"] = await profile_requests(server, key, page, args)
    return result


def main(argv: list[str] | None = None) -> int:
    harness.emit(harness.run(main_async(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
