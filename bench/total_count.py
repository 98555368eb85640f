"""The unfiltered totalCount at 1,000 / 10,000 / 100,000 contacts: counters against the old scan.

    .venv/bin/python bench/total_count.py --sizes 1000,10000,100000 --iterations 5

Fills one shop in a database of its own (embedded SecantusDB in memory, or
MONGODB_URI) by direct bulk inserts of contacts built as `contactCreate`
builds them (half leads, half customers), keeping the shop's counters as
the writes do, then measures, per size, interleaved:

- raw_counters: `contact_totals` (one find over the shop's counter parts),
  what the unfiltered totalCount now reads;
- raw_scan: `count_documents({shopId})`, what it used to run.

and through the real app (uvicorn over HTTP), up to --api-up-to contacts
(the embedded server sorts a page by scanning, so at 100,000 a page alone
takes many seconds and swamps what is compared):

- api_page: `contacts(first: 1) { pageInfo { hasNextPage } }`, the page alone;
- api_total: `contacts(first: 1) { totalCount }`, the page and the counters;
- api_scan_page / api_scan: the same two with a filter every contact matches
  (`createdAfter` long ago), which the database still counts one by one as
  the unfiltered count used to be.

totalCount's own cost through the API is api_total - api_page (counters)
against api_scan - api_scan_page (a scan).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import SHOP, SideBySide, log, ratio, summary  # noqa: E402

TOTAL = "{ contacts(first: 1) { totalCount } }"
PAGE = "{ contacts(first: 1) { pageInfo { hasNextPage } } }"
EVERYONE = '(first: 1, filter: {createdAfter: "2000-01-01T00:00:00Z"})'
SCAN = "{ contacts" + EVERYONE + " { totalCount } }"
SCAN_PAGE = "{ contacts" + EVERYONE + " { pageInfo { hasNextPage } } }"
INSERT_BATCH = 5_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="contact counts, ascending (comma-separated)"
    )
    parser.add_argument(
        "--iterations", type=int, default=5, help="timed runs per subject and size (default 5)"
    )
    parser.add_argument(
        "--api-up-to",
        type=int,
        default=10_000,
        help="measure through the API up to this many contacts (default 10000)",
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

    with EmbeddedServer(":memory:", cache_size="2G") as embedded:
        yield harness.DatabaseServer(
            embedded.uri, "embedded-secantusdb", f"contactgraph_bench_{os.getpid()}"
        )


async def fill(database: Any, start: int, end: int) -> float:
    """Contacts start..end-1 of the shop, inserted in bulk with their counters; seconds taken."""
    from resolvers.contact_counts import count_contacts
    from resolvers.contacts import new_contact

    began = time.perf_counter()
    at = dt.datetime.now(dt.UTC)
    for low in range(start, end, INSERT_BATCH):
        high = min(low + INSERT_BATCH, end)
        docs = [
            new_contact(
                SHOP,
                f"person{i}@example.com",
                f"person{i}@example.com",
                "LEAD" if i % 2 else "CUSTOMER",
                {"firstName": f"First{i}", "lastName": f"Last{i}"},
                at,
            )
            for i in range(low, high)
        ]
        await database.contacts.insert_many(docs, ordered=False)
        leads = sum(1 for doc in docs if doc["kind"] == "LEAD")
        await count_contacts(
            database, SHOP, {"LEAD": leads, "CUSTOMER": len(docs) - leads}, session=None
        )
    return time.perf_counter() - began


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    from resolvers.contact_counts import contact_totals

    with database_server() as server:
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            results: dict[str, Any] = {}
            filled = 0

            async def raw_counters() -> int:
                return (await contact_totals(database, SHOP))["total"]

            async def raw_scan() -> int:
                return await database.contacts.count_documents({"shopId": SHOP})

            with harness.ApiServer(server) as api:
                connection = await harness.HttpConnection(api.port).open()
                queries = {
                    "api_page": PAGE,
                    "api_total": TOTAL,
                    "api_scan_page": SCAN_PAGE,
                    "api_scan": SCAN,
                }
                requests = {name: harness.graphql_request(q, key) for name, q in queries.items()}

                def through_api(name: str) -> Any:
                    async def call() -> Any:
                        answer = harness.check_graphql(*await connection.request(requests[name]))
                        return answer["data"]["contacts"].get("totalCount")

                    return call

                try:
                    for size in sizes:
                        log(f"inserting contacts {filled}..{size} ...")
                        fill_seconds = await fill(database, filled, size)
                        filled = size
                        subjects = {"raw_counters": raw_counters, "raw_scan": raw_scan}
                        if size <= args.api_up_to:
                            subjects.update({name: through_api(name) for name in queries})
                        answers = {name: await subject() for name, subject in subjects.items()}
                        for name, answer in answers.items():
                            assert answer in (size, None), (name, answer, size)
                        timings = await SideBySide().run(subjects, args.iterations, warmup=1)
                        medians = {name: harness.median_ms(t) for name, t in timings.items()}
                        row: dict[str, Any] = {
                            "insert_seconds": round(fill_seconds, 1),
                            **{name: summary(t) for name, t in timings.items()},
                            "raw_scan_over_counters": ratio(
                                medians["raw_scan"], medians["raw_counters"]
                            ),
                        }
                        if "api_total" in medians:
                            row["api_total_count_cost_ms"] = {
                                "counters": round(medians["api_total"] - medians["api_page"], 1),
                                "scan": round(medians["api_scan"] - medians["api_scan_page"], 1),
                            }
                        results[str(size)] = row
                        log(f"{size}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()))
                finally:
                    await connection.close()
    harness.emit(
        {
            "machine": harness.machine(),
            "database": server.kind,
            "queries": {"total": TOTAL, "page": PAGE, "scan": SCAN, "scan_page": SCAN_PAGE},
            "sizes": results,
        }
    )


if __name__ == "__main__":
    import uvloop  # the loop the server runs on too

    uvloop.run(main())
