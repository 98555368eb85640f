"""subscription contactActivity over WebSocket (graphql-transport-ws), against a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
import websockets
from bson import ObjectId
from conftest import SHOP
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, OperationFailure
from starlette.applications import Starlette

from graph.embedded import free_port
from graph.http.app import create_app
from graph.settings import Settings
from graph.types.node import decode_id, encode_id
from loaders.activity_feed import STREAM_PIPELINE, ActivityFeed
from resolvers import activity
from resolvers.activity import SPILL_AT
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.notes import add_note

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
NOTE = "mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { note { id } userErrors { code } } }"
LABEL = (
    'mutation($id: ID!) { labelsAdd(contactIds: [$id], labels: ["VIP"]) { userErrors { code } } }'
)
WATCH = "subscription($id: ID!) { contactActivity(contactId: $id) { id kind text author } }"
PROTOCOL = "graphql-transport-ws"
WAIT = 10.0


class Server:
    def __init__(self, app: Starlette, port: int) -> None:
        self.app = app
        self.url = f"ws://127.0.0.1:{port}/graphql"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Server:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), "the server did not start"
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task


@pytest.fixture
async def server(settings: Settings, database: Any) -> AsyncIterator[Server]:
    app = create_app(
        Settings(
            mongodb_uri=settings.mongodb_uri,
            database=settings.database,
            key_cache_seconds=0,
            migrate_on_start=True,
        )
    )
    async with Server(app, free_port()) as running:
        yield running


class Socket:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, message: dict) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, within: float = WAIT) -> dict:
        frame = await asyncio.wait_for(self.connection.recv(), within)
        # graphql-transport-ws allows text frames only; standard clients reject binary ones.
        assert isinstance(frame, str), f"binary frame: {frame!r}"
        return json.loads(frame)

    async def subscribe(self, gid: str, op: str = "1") -> None:
        await self.send(
            {"id": op, "type": "subscribe", "payload": {"query": WATCH, "variables": {"id": gid}}}
        )
        await asyncio.sleep(
            0.3
        )  # the protocol has no "subscribed": give the server a moment to listen


async def connect(server: Server, key: str | None) -> tuple[Any, Socket]:
    connection = await websockets.connect(server.url, subprotocols=[PROTOCOL])
    socket = Socket(connection)
    await socket.send(
        {"type": "connection_init", "payload": {"authorization": f"Bearer {key}"} if key else {}}
    )
    return connection, socket


async def authorized(server: Server, key: str) -> tuple[Any, Socket]:
    connection, socket = await connect(server, key)
    assert await socket.receive() == {"type": "connection_ack"}
    return connection, socket


async def contact(api: Any, email: str = "ann@example.com") -> str:
    return (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]


async def test_a_new_note_arrives(server, api, keys):
    gid = await contact(api)
    connection, socket = await authorized(server, keys["STAFF"])
    async with connection:
        await socket.subscribe(gid)
        note = (await api.data(NOTE, {"id": gid, "text": "Called about the invoice"}))["noteAdd"][
            "note"
        ]
        message = await socket.receive()
        assert message == {
            "id": "1",
            "type": "next",
            "payload": {
                "data": {
                    "contactActivity": {
                        "id": note["id"],
                        "kind": "NOTE",
                        "text": "Called about the invoice",
                        "author": "Admin Person",
                    }
                }
            },
        }
        await api.data(LABEL, {"id": gid})
        labels = await socket.receive()
        assert labels["payload"]["data"]["contactActivity"]["kind"] == "LABELS_CHANGED"
        assert labels["payload"]["data"]["contactActivity"]["text"] == "Labels added: VIP"
        # Nothing is delivered twice, and another contact's entries do not come.
        other = await contact(api, "bob@example.com")
        await api.data(NOTE, {"id": other, "text": "not for this subscriber"})
        with pytest.raises(TimeoutError):
            await socket.receive(within=1.0)
        await socket.send({"id": "1", "type": "complete"})
    await asyncio.sleep(0.2)
    # The last subscriber gone, the shared change stream is closed.
    assert server.app.state.activity_feed._task is None


async def test_readers_do_not_see_notes(server, api, keys):
    gid = await contact(api)
    connection, socket = await authorized(server, keys["READER"])
    async with connection:
        await socket.subscribe(gid)
        await api.data(NOTE, {"id": gid, "text": "internal"})
        await api.data(LABEL, {"id": gid})
        message = await socket.receive()
        assert message["payload"]["data"]["contactActivity"]["kind"] == "LABELS_CHANGED"


async def test_another_shops_contact_is_an_error(server, api, keys):
    gid = await contact(api)
    connection, socket = await authorized(server, keys["OTHER"])
    async with connection:
        for target in (gid, encode_id("Contact", ObjectId()), "junk"):
            await socket.send(
                {
                    "id": target,
                    "type": "subscribe",
                    "payload": {"query": WATCH, "variables": {"id": target}},
                }
            )
            error, complete = await socket.receive(), await socket.receive()
            assert (error["id"], error["type"]) == (target, "next")
            assert error["payload"]["data"] is None
            [problem] = error["payload"]["errors"]
            assert problem["extensions"] == {"code": "NOT_FOUND"}
            assert problem["message"] == "Contact not found."
            assert complete == {"id": target, "type": "complete"}


async def test_roles_without_read_access_are_refused(server, api, keys):
    gid = await contact(api)
    for role in ("PUBLIC", "INGEST"):
        connection, socket = await authorized(server, keys[role])
        async with connection:
            await socket.send(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": WATCH, "variables": {"id": gid}},
                }
            )
            error, complete = await socket.receive(), await socket.receive()
            assert error["type"] == "next" and error["payload"]["data"] is None
            assert [e["extensions"]["code"] for e in error["payload"]["errors"]] == ["FORBIDDEN"]
            assert complete == {"id": "1", "type": "complete"}


async def test_a_bad_or_missing_key_closes_the_connection(server, keys):
    for key in (None, "cg_admin_not-a-real-key"):
        connection, socket = await connect(server, key)
        async with connection:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.receive()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_the_subscription_ends_when_the_contact_is_deleted(server, api, keys):
    gid = await contact(api)
    connection, socket = await authorized(server, keys["ADMIN"])
    async with connection:
        await socket.subscribe(gid)
        deleted = await api.data(
            "mutation($id: ID!) { contactsDelete(ids: [$id]) { deletedIds } }", {"id": gid}
        )
        assert deleted["contactsDelete"]["deletedIds"] == [gid]
        assert await socket.receive() == {"id": "1", "type": "complete"}


async def test_archiving_does_not_deliver_entries_again(server, api, keys, database):
    gid = await contact(api)
    oid = decode_id(gid, "Contact")
    # A log just under the bound, written before anyone listens.
    await database.contacts.update_one(
        {"_id": oid},
        activity.push(
            [activity.entry("FORM_SUBMITTED", text=f"old {i}") for i in range(SPILL_AT - 3)]
        ),
    )
    connection, socket = await authorized(server, keys["ADMIN"])
    async with connection:
        await socket.subscribe(gid)
        written = []
        for i in range(5):  # the third one pushes the log over the bound: a bucket is archived
            written.append(
                (await api.data(NOTE, {"id": gid, "text": f"new {i}"}))["noteAdd"]["note"]["id"]
            )
        received = [
            (await socket.receive())["payload"]["data"]["contactActivity"]["id"] for _ in written
        ]
        assert received == written
        assert await database.activity_archive.count_documents({"contactId": oid}) == 1
        with pytest.raises(TimeoutError):
            await socket.receive(within=1.0)


async def test_order_entries_arrive_with_their_order(server, api, keys):
    gid = await contact(api, "buyer@example.com")
    watch = (
        "subscription($id: ID!) { contactActivity(contactId: $id) { kind order { externalId } } }"
    )
    connection, socket = await authorized(server, keys["READER"])
    async with connection:
        await socket.send(
            {"id": "1", "type": "subscribe", "payload": {"query": watch, "variables": {"id": gid}}}
        )
        await asyncio.sleep(0.3)
        record = """
        mutation { orderRecord(input: {externalId: "A-1", email: "BUYER@example.com", currencyCode: "EUR",
          lineItems: [{title: "Tea", quantity: 1, unitPrice: "4.50"}]}) { userErrors { code } } }
        """
        assert (await api.data(record))["orderRecord"]["userErrors"] == []
        received = [
            (await socket.receive())["payload"]["data"]["contactActivity"] for _ in range(2)
        ]
        assert sorted(received, key=lambda e: e["kind"]) == [
            {"kind": "CONVERTED_TO_CUSTOMER", "order": None},
            {"kind": "ORDER_PLACED", "order": {"externalId": "A-1"}},
        ]


async def test_subscriptions_end_when_the_stream_cannot_resume(database, monkeypatch):
    # What is written while no stream can be resumed is never seen: subscribers
    # are told (their subscription completes) rather than left waiting for it.
    doc = new_contact(SHOP, "feed@example.com", "feed@example.com", "LEAD", {}, now())
    await database.contacts.insert_one(doc)
    feed = ActivityFeed(database)
    try:
        async with feed.listen(SHOP, doc["_id"]) as entries:

            def lost(change):
                raise AutoReconnect("connection lost")

            async def history_lost(self, *args, **kwargs):
                raise OperationFailure("resume point no longer in the oplog", code=286)

            monkeypatch.setattr(feed, "_dispatch", lost)
            monkeypatch.setattr(AsyncCollection, "watch", history_lost)
            await add_note(database, SHOP, doc["_id"], "written while the stream breaks", "A")

            async def drain():
                return [entry async for entry in entries]

            assert await asyncio.wait_for(drain(), WAIT) == []
    finally:
        await feed.close()


async def test_a_broken_stream_resumes_and_delivers_what_was_written(database, monkeypatch):
    doc = new_contact(SHOP, "resume@example.com", "resume@example.com", "LEAD", {}, now())
    await database.contacts.insert_one(doc)
    feed = ActivityFeed(database)
    try:
        async with feed.listen(SHOP, doc["_id"]) as entries:
            real = feed._dispatch
            broken = [True]

            def once_lost(change):
                if broken:
                    broken.clear()
                    raise AutoReconnect("connection lost")
                real(change)

            monkeypatch.setattr(feed, "_dispatch", once_lost)
            note, _ = await add_note(database, SHOP, doc["_id"], "written as it broke", "A")
            entry = await asyncio.wait_for(anext(entries), WAIT)
            assert entry["_id"] == note["_id"] and entry["text"] == "written as it broke"
    finally:
        await feed.close()


async def test_a_renamed_collection_ends_subscriptions_and_the_process_keeps_answering(
    served, http, database
):
    # Renaming or dropping `contacts` (mongorestore --drop does) invalidates
    # the change stream for good. The process must go on answering, and the
    # subscriptions end so that clients subscribe again.
    feed: ActivityFeed = served.app.state.activity_feed
    doc = new_contact(SHOP, "moved@example.com", "moved@example.com", "LEAD", {}, now())
    await database.contacts.insert_one(doc)

    async def drain(entries):
        return [entry async for entry in entries]

    # A feed that spins blocks the event loop, and this test's own timeouts
    # with it. A timer signal still gets through (its handler runs between
    # any two bytecodes): it breaks the spin and the test fails, saying so.
    blocked: list[bool] = []

    class Blocked(Exception):
        pass

    def watchdog(signum: int, frame: Any) -> None:
        blocked.append(True)
        raise Blocked("the event loop was blocked for 30 s")

    previous = signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        async with feed.listen(SHOP, doc["_id"]) as entries:
            await database.contacts.rename("contacts_moved_away")
            try:
                assert await asyncio.wait_for(drain(entries), WAIT) == []
                health = await asyncio.wait_for(http.get("/healthz"), 5)
                assert health.status_code == 200 and health.json() == {"status": "ok"}
            finally:
                await database.db["contacts_moved_away"].rename("contacts")
        assert not blocked, "the event loop was blocked"
        # A new subscription gets a working stream again.
        async with feed.listen(SHOP, doc["_id"]) as entries:
            note, _ = await add_note(database, SHOP, doc["_id"], "after the restore", "A")
            entry = await asyncio.wait_for(anext(entries), WAIT)
            assert entry["_id"] == note["_id"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not blocked, "the event loop was blocked"


async def test_the_stream_brings_only_log_writes_and_only_their_log_fields(
    database, commands, monkeypatch
):
    at = now()
    created = activity.entry("CONTACT_CREATED", at=at)
    doc = new_contact(
        SHOP, "quiet@example.com", "quiet@example.com", "LEAD", {}, at, entries=[created]
    )
    await database.contacts.insert_one(doc)
    feed = ActivityFeed(database)
    reached: list[dict] = []
    dispatch = feed._dispatch

    def record(change):
        reached.append(change)
        dispatch(change)

    monkeypatch.setattr(feed, "_dispatch", record)
    commands.reset()
    try:
        async with feed.listen(SHOP, doc["_id"]) as entries:
            # Writes without log entries (details, labels, counters) stay on the server.
            await database.contacts.update_one(
                {"_id": doc["_id"]},
                {"$set": {"firstName": "Ann", "labels": ["VIP"]}, "$inc": {"rev": 1}},
            )
            note, _ = await add_note(database, SHOP, doc["_id"], "the one event", "A")
            entry = await asyncio.wait_for(anext(entries), WAIT)
            assert entry["_id"] == note["_id"]
    finally:
        await feed.close()

    [change] = reached
    assert change["operationType"] == "update" and "fullDocument" not in change
    # Of the note's write, its log position only: not the counters, not updatedAt.
    assert change["updateDescription"] == {"updatedFields": {"activity.1": note}}
    [opened] = [
        c["pipeline"]
        for c in commands.documents("aggregate", "contacts")
        if "$changeStream" in c["pipeline"][0]
    ]
    assert opened[1:] == STREAM_PIPELINE


async def test_a_subscription_over_the_limits_is_refused_and_streams_nothing(server, api, keys):
    gid = await contact(api)
    # contactActivity > order > (contact > orders > nodes) x 3 > id: 12 levels.
    hop = "contact { orders { nodes { "
    deep = (
        "subscription($id: ID!) { contactActivity(contactId: $id) { order { "
        + hop * 3
        + "id"
        + " } } }" * 3
        + " } } }"
    )
    connection, socket = await authorized(server, keys["STAFF"])
    async with connection:
        await socket.send(
            {"id": "1", "type": "subscribe", "payload": {"query": deep, "variables": {"id": gid}}}
        )
        refusal = await socket.receive()
        assert refusal["type"] == "next" and refusal["payload"]["data"] is None
        assert refusal["payload"]["errors"] == [
            {
                "message": "The query is 12 levels deep; at most 10 are allowed.",
                "extensions": {"code": "QUERY_TOO_DEEP"},
            }
        ]
        # Nothing was taken from the key's budget.
        cost = refusal["payload"]["extensions"]["cost"]
        assert cost["actualQueryCost"] == 0
        assert cost["throttleStatus"]["currentlyAvailable"] == 2000
        assert await socket.receive() == {"id": "1", "type": "complete"}
        await api.data(NOTE, {"id": gid, "text": "Called about the invoice"})
        with pytest.raises(TimeoutError):
            await socket.receive(within=1.0)
