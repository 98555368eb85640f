"""Stopping: in-flight requests finish, subscriptions are told to reconnect, outbox leases come back."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from conftest import SHOP
from prometheus_client.parser import text_string_to_metric_families
from serve_process import Serve, cli_env, run_cli

from graph.embedded import free_port
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.messages import queue_message
from resolvers.outbox import Outbox, RetryPolicy, SmtpServer

TOKEN = "shutdown-token-0123456789abcdef"
IN_FLIGHT = 16
CREATE = "mutation Create($email: String!) { contactCreate(input: {email: $email}) { contact { id email } } }"
SUBSCRIBE = "subscription Watch($id: ID!) { contactActivity(contactId: $id) { kind text } }"
# Each request's body arrives over this long: slow clients, in flight when the signal comes.
TRICKLE_SECONDS = 5.0


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                return s.value
    return 0.0


async def trickled(body: bytes) -> AsyncIterator[bytes]:
    """The body in pieces, the last one TRICKLE_SECONDS after the first."""
    pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
    for i, piece in enumerate(pieces):
        yield piece
        if i < len(pieces) - 1:
            await asyncio.sleep(TRICKLE_SECONDS / (len(pieces) - 1))


async def wait_for_in_flight(url: str, count: int) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < deadline:
            text = (await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text
            # The scrape is in flight too.
            if metric(text, "contactgraph_requests_in_flight") >= count + 1:
                assert metric(text, "contactgraph_subscriptions_open") == 1
                return
            await asyncio.sleep(0.05)
    pytest.fail(f"{count} requests were never in flight at once")


async def new_connections_refused(url: str) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=1) as fresh:
                await fresh.get("/healthz")
        except httpx.ConnectError:
            return True
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # Caught in the listening socket's queue as it closed: reset, never served.
            return True
        await asyncio.sleep(0.05)
    return False


async def subscribe(url: str, key: str, contact_id: str) -> websockets.ClientConnection:
    socket = await websockets.connect(
        url.replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"]
    )
    await socket.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
    )
    assert json.loads(await socket.recv())["type"] == "connection_ack"
    await socket.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"id": contact_id}},
            }
        )
    )
    return socket


async def test_sigterm_finishes_requests_in_flight_and_closes_subscriptions_with_1012(
    tmp_path: Path,
):
    port = free_port()
    env = cli_env(CONTACTGRAPH_METRICS_TOKEN=TOKEN)
    server = Serve(["--data-dir", str(tmp_path)], env, port)
    try:
        server.wait_ready()
        made = run_cli(
            [
                "--data-dir",
                str(tmp_path),
                "keys",
                "create",
                "--shop",
                "demo",
                "--role",
                "STAFF",
                "--name",
                "Shutdown test",
            ],
            env,
        )
        key = made.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            first = await client.post(
                "/graphql",
                headers=headers,
                json={"query": CREATE, "variables": {"email": "watched@example.com"}},
            )
            watched = first.json()["data"]["contactCreate"]["contact"]["id"]
            socket = await subscribe(server.url, key, watched)
            bodies = [
                json.dumps(
                    {"query": CREATE, "variables": {"email": f"inflight{i}@example.com"}}
                ).encode()
                for i in range(IN_FLIGHT)
            ]
            # A connection each, so none waits behind another.
            limits = httpx.Limits(max_connections=IN_FLIGHT + 4)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as many:
                requests = [
                    asyncio.create_task(
                        many.post("/graphql", headers=headers, content=trickled(body))
                    )
                    for body in bodies
                ]
                await wait_for_in_flight(server.url, IN_FLIGHT)
                signalled = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                refused = await new_connections_refused(server.url)
                answers = await asyncio.gather(*requests)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 30)
    finally:
        code = server.stop(signal.SIGTERM)
    stopped_after = time.monotonic() - signalled
    assert code == 0, server.output
    assert refused, "the server stops accepting at once"
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT
    emails = [a.json()["data"]["contactCreate"]["contact"]["email"] for a in answers]
    assert emails == [f"inflight{i}@example.com" for i in range(IN_FLIGHT)]
    # 1012 "service restart": clients reconnect, to another instance.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert stopped_after < TRICKLE_SECONDS + 15
    print(f"stopped {stopped_after:.1f} s after SIGTERM with {IN_FLIGHT} requests in flight")


# ---------------------------------------------------------------- the outbox's leases


class SilentSmtp:
    """A server that accepts connections and never says a word: a delivery to it hangs."""

    async def __aenter__(self) -> SilentSmtp:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.connected = asyncio.Event()
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def queued(database) -> dict:
    contact = new_contact(SHOP, "lease@example.com", "lease@example.com", "LEAD", {}, now())
    await database.contacts.insert_one(contact)
    return await queue_message(
        database,
        SHOP,
        contact["_id"],
        "Hello",
        "Body",
        marketing=False,
        author="T",
        base_url="http://x",
    )


async def test_stopping_mid_delivery_gives_the_lease_back(database):
    message = await queued(database)
    async with SilentSmtp() as smtp:
        outbox = Outbox(
            database, SmtpServer("127.0.0.1", smtp.port), "t@example.com", RetryPolicy(timeout=30)
        )
        outbox.start()
        await asyncio.wait_for(smtp.connected.wait(), 10)
        claimed = await database.messages.find_one({"_id": message["_id"]})
        assert claimed["nextAttemptAt"] > now() + dt.timedelta(seconds=60)  # leased
        started = time.monotonic()
        await outbox.stop(grace=0.5)
        took = time.monotonic() - started
    after = await database.messages.find_one({"_id": message["_id"]})
    assert after["status"] == "QUEUED"
    assert after["attempts"] == 1
    # Due at once: another instance delivers it now, not when the lease would have ended.
    assert after["nextAttemptAt"] <= now()
    assert 0.4 < took < 5
    assert not outbox.running


async def test_a_stop_while_idle_is_immediate_and_changes_nothing(database):
    message = await queued(database)
    await database.messages.update_one(
        {"_id": message["_id"]}, {"$set": {"nextAttemptAt": now() + dt.timedelta(hours=1)}}
    )
    outbox = Outbox(database, SmtpServer("127.0.0.1", 9), "t@example.com", poll_seconds=30)
    outbox.start()
    await asyncio.sleep(0.2)
    assert outbox.running
    started = time.monotonic()
    await outbox.stop()
    assert time.monotonic() - started < 1
    after = await database.messages.find_one({"_id": message["_id"]})
    assert after["nextAttemptAt"] > now() + dt.timedelta(minutes=59)
    assert after["attempts"] == 0
