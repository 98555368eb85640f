"""contactStats: the API's answer time next to the raw aggregation it runs.

    .venv/bin/python bench/stats_contacts.py --contacts 10000 --iterations 10

Seeds N contacts with orders (`contactgraph seed --orders-per-contact`) in a
database of its own (embedded SecantusDB in memory, or MONGODB_URI), serves
the real app with uvicorn, and prints one JSON document with, per filter
(everyone; customers with a label):

- api: `contactStats(filter:) { every field }` over HTTP;
- raw: the same pipeline (loaders.stats.stats_pipeline) and the label-name
  look-up on a bare AsyncMongoClient in this process;
- ratio = api / raw (the target is a small multiple), overhead = api - raw.

Measured interleaved, iteration by iteration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, SideBySide, log, ratio, summary  # noqa: E402

STATS = """
query Stats($filter: ContactFilter) {
  contactStats(filter: $filter) {
    contacts customers leads subscribed repeatCustomers
    totalRevenue { amount currencyCode } averageOrderValue { amount currencyCode }
    newContactsByMonth { month count } topLabels { name contactCount }
  }
}
"""

FILTERS: dict[str, dict[str, Any] | None] = {
    "everyone": None,
    "customers_labelled_vip": {"kind": "CUSTOMER", "labelsAny": ["VIP"]},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contacts", type=int, default=10_000, help="seeded contacts (default 10000)"
    )
    parser.add_argument(
        "--orders-per-contact", type=int, default=2, help="seeded orders each (default 2)"
    )
    parser.add_argument(
        "--iterations", type=int, default=10, help="timed runs per subject (default 10)"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def database_server() -> Iterator[harness.DatabaseServer]:
    """MONGODB_URI when set, else an embedded server in memory with room for 100,000 contacts."""
    if os.environ.get("MONGODB_URI"):
        with harness.database_server() as server:
            yield server
        return
    from graph.embedded import EmbeddedServer

    # An in-memory server holds only what fits its cache (256 MB by default).
    with EmbeddedServer(":memory:", cache_size="2G") as embedded:
        yield harness.DatabaseServer(
            embedded.uri, "embedded-secantusdb", f"contactgraph_bench_{os.getpid()}"
        )


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from loaders.contacts import ContactFilterSpec, contact_match
    from loaders.stats import contact_stats

    with database_server() as server:
        async with harness.open_database(server) as database:
            log(f"seeding {args.contacts} contacts with {args.orders_per_contact} orders each ...")
            seeded = await harness.seed_contacts(
                database, SHOP, args.contacts, args.orders_per_contact
            )
            key = await harness.admin_key(database)
            results: dict[str, Any] = {}
            with harness.ApiServer(server) as api:
                connection = await harness.HttpConnection(api.port).open()
                try:
                    for name, graphql_filter in FILTERS.items():
                        request = harness.graphql_request(STATS, key, {"filter": graphql_filter})
                        spec = ContactFilterSpec(
                            kind=(graphql_filter or {}).get("kind"),
                            labels_any=(graphql_filter or {}).get("labelsAny"),
                        )
                        match = contact_match(SHOP, None, spec)

                        async def through_api(request: bytes = request) -> Any:
                            return harness.check_graphql(*await connection.request(request))

                        async def raw(match: dict[str, Any] = match) -> Any:
                            return await contact_stats(database, SHOP, match)

                        api_answer = (await through_api())["data"]["contactStats"]
                        raw_answer = await raw()
                        assert api_answer["contacts"] == raw_answer.contacts, (
                            api_answer,
                            raw_answer,
                        )
                        timings = await SideBySide().run(
                            {"api": through_api, "raw": raw}, args.iterations, warmup=2
                        )
                        api_ms = harness.median_ms(timings["api"])
                        raw_ms = harness.median_ms(timings["raw"])
                        results[name] = {
                            "contacts_matched": raw_answer.contacts,
                            "api": summary(timings["api"]),
                            "raw": summary(timings["raw"]),
                            "ratio": ratio(api_ms, raw_ms),
                            "overhead_ms": round(api_ms - raw_ms, 3),
                        }
                        log(f"{name}: {results[name]}")
                finally:
                    await connection.close()
    harness.emit(
        {
            "machine": harness.machine(),
            "database": server.kind,
            "contacts": args.contacts,
            "seed_seconds": round(seeded, 1),
            "stats": results,
        }
    )


if __name__ == "__main__":
    import uvloop  # the loop the server runs on too

    uvloop.run(main())
