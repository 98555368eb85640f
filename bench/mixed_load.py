"""A mixed load of 32 clients against the real API, and each operation alone at the same concurrency.

    .venv/bin/python bench/mixed_load.py [--contacts 1000] [--clients 32] [--seconds 30]
                                         [--alone-seconds 10] [--seed 11]

The API runs as `contactgraph serve` runs it (uvicorn, one worker, the
app factory) on the embedded server, or on MONGODB_URI when set. The shop
is seeded first (`--contacts`, one order each). Then, for `--seconds`, each
client sends one operation after another (closed loop), each drawn at random:

- 30 % the contact page (a contact with its log and orders) and 30 % a
  list page (`contacts(first: 50)`, sorted by one of the sort keys in turn);
- 15 % `contactCreate` of a new e-mail;
- 15 % `noteAdd` on a random contact;
- 10 % `orderRecord`: half for a new e-mail, half for an existing contact.

Afterwards each operation runs alone, all clients sending only it, for
`--alone-seconds`. Per operation: count, throughput, p50/p95/p99 in the
mix and alone, and the mixed ÷ alone ratios. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import orjson  # noqa: E402
from harness import SHOP, log, ratio  # noqa: E402

from graph.types.node import encode_id  # noqa: E402

CONTACT_PAGE = """
query ContactPage($id: ID!) {
  contact(id: $id) {
    id email displayName kind labels orderCount lastOrderAt totalSpent { amount currencyCode }
    consent { state }
    activity(first: 50) { pageInfo { hasNextPage endCursor } nodes { id kind at author text } }
    orders(first: 5) { nodes { id externalId placedAt status total { amount currencyCode } } }
  }
}
"""
LIST_PAGE = """
query ListPage($sortKey: ContactSortKey) {
  contacts(first: 50, sortKey: $sortKey) {
    nodes { id email displayName kind orderCount totalSpent { amount currencyCode } createdAt }
    pageInfo { hasNextPage endCursor }
  }
}
"""
CONTACT_CREATE = """
mutation Create($input: ContactInput!) {
  contactCreate(input: $input) { contact { id } userErrors { code message } }
}
"""
NOTE_ADD = """
mutation Note($id: ID!, $text: String!) {
  noteAdd(contactId: $id, text: $text) { note { id } userErrors { code message } }
}
"""
ORDER_RECORD = """
mutation Record($input: OrderInput!) {
  orderRecord(input: $input) { order { id } userErrors { code message } }
}
"""
SORT_KEYS = ("CREATED_AT", "NAME", "EMAIL", "LAST_ORDER_AT", "ORDER_COUNT", "TOTAL_SPENT")

# (operation, share of the mix)
MIX = (
    ("contact_page", 0.30),
    ("list_page", 0.30),
    ("contact_create", 0.15),
    ("note_add", 0.15),
    ("order_new_email", 0.05),
    ("order_existing_contact", 0.05),
)


class Requests:
    """Builds each operation's next request: fresh e-mails and external ids, random contacts."""

    def __init__(self, key: str, contacts: list[tuple[str, str]], rng: random.Random) -> None:
        self.key = key
        self.contacts = contacts  # (global id, email)
        self.rng = rng
        self.serial = 0
        self.makers: dict[str, Callable[[], bytes]] = {
            "contact_page": self.contact_page,
            "list_page": self.list_page,
            "contact_create": self.contact_create,
            "note_add": self.note_add,
            "order_new_email": lambda: self.order(new=True),
            "order_existing_contact": lambda: self.order(new=False),
        }

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def _request(self, query: str, variables: dict[str, Any]) -> bytes:
        return harness.graphql_request(query, self.key, variables)

    def contact_page(self) -> bytes:
        return self._request(CONTACT_PAGE, {"id": self.rng.choice(self.contacts)[0]})

    def list_page(self) -> bytes:
        return self._request(LIST_PAGE, {"sortKey": SORT_KEYS[self._next() % len(SORT_KEYS)]})

    def contact_create(self) -> bytes:
        n = self._next()
        return self._request(
            CONTACT_CREATE,
            {"input": {"email": f"mixed-lead-{n}@example.com", "firstName": f"Lead{n}"}},
        )

    def note_add(self) -> bytes:
        gid = self.rng.choice(self.contacts)[0]
        return self._request(NOTE_ADD, {"id": gid, "text": f"Called back ({self._next()})"})

    def order(self, *, new: bool) -> bytes:
        n = self._next()
        email = f"mixed-buyer-{n}@example.com" if new else self.rng.choice(self.contacts)[1]
        order = {
            "externalId": f"mixed-{n}",
            "email": email,
            "currencyCode": "EUR",
            "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "12.50"}],
        }
        return self._request(ORDER_RECORD, {"input": order})


def _failed(status: int, body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    answer = orjson.loads(body)
    if answer.get("errors"):
        return f"errors: {answer['errors']}"
    for value in (answer.get("data") or {}).values():
        if isinstance(value, dict) and value.get("userErrors"):
            return f"userErrors: {value['userErrors']}"
    return None


async def load(
    port: int,
    requests: Requests,
    mix: tuple[tuple[str, float], ...],
    *,
    clients: int,
    seconds: float,
    warmup: float = 2.0,
) -> dict[str, Any]:
    """`clients` closed-loop clients for `seconds` after a warm-up; latencies per operation."""
    names = [name for name, _ in mix]
    weights = [share for _, share in mix]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    failures: list[str] = []
    start_at = time.perf_counter() + warmup
    stop_at = start_at + seconds
    connections = [await harness.HttpConnection(port).open() for _ in range(clients)]

    async def client(connection: harness.HttpConnection) -> None:
        while not failures:
            name = requests.rng.choices(names, weights)[0]
            raw = requests.makers[name]()
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            status, body = await connection.request(raw)
            done = time.perf_counter()
            problem = _failed(status, body)
            if problem is not None:
                failures.append(f"{name}: {problem}")
                return
            if start_at <= done <= stop_at:
                latencies[name].append(done - sent)

    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    if failures:
        raise harness.HttpError(f"{len(failures)} failed requests, first: {failures[0]}")
    out: dict[str, Any] = {}
    for name in names:
        samples = latencies[name]
        out[name] = {
            "requests": len(samples),
            "per_second": round(len(samples) / seconds, 2),
            **_percentiles(samples),
        }
    out["all"] = {
        "requests": sum(len(s) for s in latencies.values()),
        "per_second": round(sum(len(s) for s in latencies.values()) / seconds, 2),
    }
    return out


def _percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000, help="contacts seeded (default 1000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=30.0, help="the mixed run (default 30)")
    parser.add_argument(
        "--alone-seconds", type=float, default=10.0, help="each operation alone (default 10)"
    )
    parser.add_argument("--seed", type=int, default=11, help="random seed of the mix")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "mixed_load",
        "contacts": args.contacts,
        "clients": args.clients,
        "mix": dict(MIX),
        "machine": harness.machine(),
    }
    with harness.database_server() as server:
        result["database"] = server.kind
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts with an order each on {server.kind} ...")
            await harness.seed_contacts(database, SHOP, args.contacts, 1)
            rows = await database.contacts.find({"shopId": SHOP}, {"email": 1}).to_list()
        contacts = [(encode_id("Contact", row["_id"]), row["email"]) for row in rows]
        requests = Requests(key, contacts, random.Random(args.seed))
        watch = {}
        with harness.ApiServer(server, workers=1, key_cache_seconds=3600) as api:
            assert api.process is not None
            watch["api"] = harness.ProcessCpu(api.process.pid)
            if server.pid is not None:
                watch["database"] = harness.ProcessCpu(server.pid)
            before = {name: process.read() for name, process in watch.items()}
            started = time.perf_counter()
            log(f"mixed: {args.clients} clients, {args.seconds} s ...")
            mixed = await load(api.port, requests, MIX, clients=args.clients, seconds=args.seconds)
            elapsed = time.perf_counter() - started
            result["mixed_cpu_cores"] = {
                name: round((process.read() - before[name]) / elapsed, 2)
                for name, process in watch.items()
            }
            alone: dict[str, Any] = {}
            for name, _ in MIX:
                log(f"{name} alone: {args.clients} clients, {args.alone_seconds} s ...")
                alone[name] = (
                    await load(
                        api.port,
                        requests,
                        ((name, 1.0),),
                        clients=args.clients,
                        seconds=args.alone_seconds,
                    )
                )[name]
    result["per_operation"] = {
        name: {
            "mixed": mixed[name],
            "alone": alone[name],
            "p50_mixed_over_alone": ratio(mixed[name]["p50_ms"], alone[name]["p50_ms"], 2),
            "p95_mixed_over_alone": ratio(mixed[name]["p95_ms"], alone[name]["p95_ms"], 2),
        }
        for name, _ in MIX
    }
    result["mixed_total_per_second"] = mixed["all"]["per_second"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    result = harness.run(main_async(args))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    harness.emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
