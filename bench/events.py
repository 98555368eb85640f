"""Outbound events: how fast they are delivered, and what an event adds to the write that emits it.

Two measurements in one run, on the embedded server (or MONGODB_URI):

- `write_cost`: `contactUpdate` through the real app (in process, httpx on
  the ASGI transport, no background delivery), interleaved call by call in
  three shops: events switched off (the write alone, in its transaction),
  events on with no endpoint (the event is recorded: one insert and one
  endpoint look-up), and events on with one subscribed endpoint (plus the
  delivery record). The ratios to the first are the cost of an event.
- `delivery`: deliveries already queued for one endpoint, sent by the
  delivery worker (`resolvers/event_delivery.py`, as `serve` runs it) to a
  receiver in another process (uvicorn answering 204) on loopback: events
  per second across many contacts, and for one contact (strictly in order,
  one at a time).

    .venv/bin/python bench/events.py [--writes 150] [--deliveries 2000] [--one-contact 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from harness import (
    CommandCounter,
    SideBySide,
    database_server,
    emit,
    in_process_api,
    log,
    machine,
    open_database,
    ratio,
    run,
    summary,
)
from pymongo import monitoring

from graph.embedded import free_port
from resolvers import events as event_rules
from resolvers.activity import in_transaction
from resolvers.event_delivery import EventDelivery
from resolvers.shops import Role, create_key, ensure_shop
from resolvers.webhook_endpoints import create_endpoint

UPDATE = """
mutation($id: ID!, $name: String!) {
  contactUpdate(id: $id, input: {firstName: $name}) { contact { id } userErrors { code } }
}
"""
CREATE = 'mutation { contactCreate(input: {email: "bench@example.com"}) { contact { id } } }'
ENDPOINT = """
mutation($url: String!) {
  webhookEndpointCreate(url: $url, events: [CONTACT_UPDATED]) { userErrors { code } }
}
"""


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The endpoint: reads the body, answers 204."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def start_receiver() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--receiver", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import http.client

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("POST", "/", body=b"{}")
            if connection.getresponse().status == 204:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the receiver did not start")


async def write_cost(server: Any, writes: int) -> dict[str, Any]:
    real_emit_many = event_rules.emit_many
    switched_off = {"value": False}

    async def maybe_emit_many(*args: Any, **kwargs: Any) -> None:
        if not switched_off["value"]:
            await real_emit_many(*args, **kwargs)

    event_rules.emit_many = maybe_emit_many  # type: ignore[assignment]
    counter = CommandCounter()
    monitoring.register(counter)
    async with open_database(server) as database:
        keys: dict[str, str] = {}
        for shop in ("off", "recorded", "delivered"):
            await ensure_shop(database, shop)
            _, keys[shop] = await create_key(database, shop, Role.ADMIN, "Bench admin")
    async with in_process_api(
        server, webhook_delivery=False, allow_insecure_webhooks=True
    ) as client:

        async def call(shop: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {keys[shop]}"},
            )
            body = response.json()
            assert "errors" not in body, body
            return body["data"]

        contact = {}
        for shop in keys:
            contact[shop] = (await call(shop, CREATE, {}))["contactCreate"]["contact"]["id"]
        await call("delivered", ENDPOINT, {"url": "http://127.0.0.1:9/hooks"})
        turn = {"n": 0}

        def update(shop: str) -> Any:
            async def subject() -> None:
                switched_off["value"] = shop == "off"
                turn["n"] += 1  # a new name every time: every write changes something
                await call(shop, UPDATE, {"id": contact[shop], "name": f"N{turn['n']}"})

            return subject

        commands = {}
        for shop in keys:
            counter.reset()
            await update(shop)()
            commands[shop] = list(counter.names)
        side = SideBySide()
        timings = await side.run({shop: update(shop) for shop in keys}, writes, warmup=10)
    event_rules.emit_many = real_emit_many  # type: ignore[assignment]
    medians = {shop: summary(samples) for shop, samples in timings.items()}
    cpu = {shop: summary(samples) for shop, samples in side.cpu.items()}
    base = medians["off"]["median_ms"]
    return {
        "iterations": writes,
        "wall": medians,
        "client_process_cpu": cpu,
        "mongodb_commands_per_write": {shop: len(names) for shop, names in commands.items()},
        "commands": commands,
        "ratio_recorded_over_off": ratio(medians["recorded"]["median_ms"], base),
        "ratio_delivered_over_off": ratio(medians["delivered"]["median_ms"], base),
        "added_ms_recorded": round(medians["recorded"]["median_ms"] - base, 3),
        "added_ms_delivered": round(medians["delivered"]["median_ms"] - base, 3),
    }


async def delivery(server: Any, count: int, one_contact: int) -> dict[str, Any]:
    from bson import ObjectId

    receiver, port = start_receiver()
    try:
        async with open_database(server) as database:
            # The write-cost run's deliveries (to a closed port) are not this run's.
            await database.webhook_deliveries.delete_many({})
            shop = "deliveries"
            await ensure_shop(database, shop)
            await create_endpoint(
                database,
                shop,
                f"http://127.0.0.1:{port}/hooks",
                ["CONTACT_UPDATED"],
                allow_insecure=True,
            )
            results: dict[str, Any] = {}
            for label, events, contacts in (
                ("many_contacts", count, count),
                ("one_contact", one_contact, 1),
            ):
                ids = [ObjectId() for _ in range(contacts)]
                batch = 100
                for start in range(0, events, batch):
                    items = [
                        (ids[i % contacts], {"id": str(ids[i % contacts]), "firstName": f"N{i}"})
                        for i in range(start, min(events, start + batch))
                    ]

                    async def work(session: Any, items: list = items) -> None:
                        await event_rules.emit_many(
                            database, shop, "CONTACT_UPDATED", items, session=session
                        )

                    await in_transaction(database, work)
                worker = EventDelivery(database, allow_insecure=True, poll_seconds=0.05)
                started = time.perf_counter()
                cpu = time.process_time()
                worker.start()
                while True:
                    pending = await database.webhook_deliveries.count_documents(
                        {"shopId": shop, "status": "PENDING"}
                    )
                    if not pending:
                        break
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu
                await worker.stop()
                delivered = await database.webhook_deliveries.count_documents(
                    {"shopId": shop, "status": "DELIVERED"}
                )
                await database.webhook_deliveries.delete_many({"shopId": shop})
                results[label] = {
                    "events": events,
                    "contacts": contacts,
                    "delivered": delivered,
                    "seconds": round(elapsed, 3),
                    "events_per_second": round(events / elapsed, 1),
                    "worker_cpu_ms_per_event": round(cpu * 1000 / events, 3),
                    "concurrency": worker.concurrency,
                }
                log(f"{label}: {results[label]}")
            return results
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


async def main(args: argparse.Namespace) -> None:
    with database_server() as server:
        log("write cost: contactUpdate with events off, recorded, delivered to one endpoint")
        cost = await write_cost(server, args.writes)
        log("delivery: queued events to a local receiver")
        sent = await delivery(server, args.deliveries, args.one_contact)
        emit(
            {
                "benchmark": "events",
                "database": server.kind,
                "machine": machine(),
                "write_cost": cost,
                "delivery": sent,
            }
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=150, help="contactUpdate calls per mode")
    parser.add_argument("--deliveries", type=int, default=2000, help="events across many contacts")
    parser.add_argument("--one-contact", type=int, default=200, help="events of one contact")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.receiver:
        import uvicorn

        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        uvicorn.run(
            receiver_app,
            host="127.0.0.1",
            port=arguments.receiver,
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
    else:
        run(main(arguments))
