"""Python's `gql` client against the real `contactgraph serve`: HTTP and graphql-transport-ws."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from real_server import RunningServer, missing_client, real_server_fixture  # noqa: F401
from websockets.exceptions import ConnectionClosed

try:
    from gql import Client, GraphQLRequest
    from gql.transport.exceptions import TransportConnectionFailed, TransportQueryError
    from gql.transport.httpx import HTTPXAsyncTransport
    from gql.transport.websockets import WebsocketsTransport
except ImportError as error:  # pragma: no cover - the test extra pins it
    missing_client(f"gql is not installed ({error}); pip install -e '.[test]'")

CREATE = """
mutation Create($input: ContactInput!) {
  contactCreate(input: $input) {
    contact { id email firstName lastName kind labels }
    userErrors { field message code }
  }
}
"""
READ = """
query Read($id: ID!, $text: String!) {
  contact(id: $id) { id email displayName kind labels }
  contacts(first: 5, query: $text) { nodes { id } }
}
"""
NOTE = """
mutation Note($id: ID!, $text: String!) {
  noteAdd(contactId: $id, text: $text) { note { id text } userErrors { code } }
}
"""
WATCH = """
subscription Watch($id: ID!) {
  contactActivity(contactId: $id) { id kind text author }
}
"""
EVENT_SECONDS = 30
BAD_KEY = "cg_admin_not-a-key"


def http_client(server: RunningServer, key: str) -> Client:
    transport = HTTPXAsyncTransport(
        url=server.graphql_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return Client(transport=transport)


def ws_client(server: RunningServer, key: str) -> Client:
    transport = WebsocketsTransport(
        url=server.ws_url,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {key}"},
    )
    return Client(transport=transport)


def request(document: str, **variables: Any) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


def assert_closed_forbidden(failure: Exception) -> None:
    """The server closed the socket with 4403 Forbidden instead of acknowledging it."""
    closed = failure.__cause__
    assert isinstance(closed, ConnectionClosed), repr(failure)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4403, "Forbidden")


async def create_contact(session: Any, email: str) -> str:
    result = await session.execute(request(CREATE, input={"email": email, "firstName": "Gil"}))
    assert result["contactCreate"]["userErrors"] == []
    return result["contactCreate"]["contact"]["id"]


async def test_a_mutation_then_a_query_over_http(real_server):
    async with http_client(real_server, real_server.key) as session:
        created = await session.execute(
            request(
                CREATE,
                input={
                    "email": "gil.ortega@example.com",
                    "firstName": "Gil",
                    "lastName": "Ortega",
                    "labels": ["VIP"],
                },
            )
        )
        contact = created["contactCreate"]["contact"]
        assert created["contactCreate"]["userErrors"] == []
        assert contact["email"] == "gil.ortega@example.com"
        assert (contact["firstName"], contact["lastName"]) == ("Gil", "Ortega")
        assert (contact["kind"], contact["labels"]) == ("LEAD", ["VIP"])

        read = await session.execute(request(READ, id=contact["id"], text="ortega"))
    assert read["contact"] == {
        "id": contact["id"],
        "email": "gil.ortega@example.com",
        "displayName": "Gil Ortega",
        "kind": "LEAD",
        "labels": ["VIP"],
    }
    assert read["contacts"]["nodes"] == [{"id": contact["id"]}]


async def test_a_subscription_receives_a_note_added_over_http(real_server):
    async with http_client(real_server, real_server.key) as http:
        contact_id = await create_contact(http, "watched@example.com")
        async with ws_client(real_server, real_server.key) as socket:
            events = socket.subscribe(request(WATCH, id=contact_id))
            first: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(anext(events))
            # graphql-transport-ws has no "subscribed" answer: add notes until
            # the first one arrives, then check it is one of them.
            notes: dict[str, str] = {}
            deadline = time.monotonic() + EVENT_SECONDS
            while not first.done() and time.monotonic() < deadline:
                text = f"Called back ({len(notes) + 1})"
                added = await http.execute(request(NOTE, id=contact_id, text=text))
                assert added["noteAdd"]["userErrors"] == []
                notes[added["noteAdd"]["note"]["id"]] = text
                await asyncio.wait({first}, timeout=1.0)
            if not first.done():
                first.cancel()
                pytest.fail(f"no event within {EVENT_SECONDS} s after {len(notes)} notes")
            event = first.result()["contactActivity"]
            await events.aclose()
    assert event["kind"] == "NOTE"
    assert event["id"] in notes
    assert event["text"] == notes[event["id"]]
    assert event["author"] == "Demo admin"


async def test_a_bad_key_is_refused_over_http(real_server):
    # A 401 with a JSON body of errors: gql raises the errors as a query error.
    with pytest.raises(TransportQueryError) as refused:
        async with http_client(real_server, BAD_KEY) as session:
            await session.execute(request(READ, id="x", text="x"))
    assert refused.value.errors == [
        {
            "message": "A valid API key is required: Authorization: Bearer <key>.",
            "extensions": {"code": "UNAUTHENTICATED"},
        }
    ]
    assert refused.value.data is None


async def test_a_bad_key_is_refused_over_websocket(real_server):
    with pytest.raises(TransportConnectionFailed) as refused:
        async with ws_client(real_server, BAD_KEY) as socket:
            async for _ in socket.subscribe(request(WATCH, id="x")):
                pytest.fail("an event reached a socket with a bad key")
    assert_closed_forbidden(refused.value)


async def test_without_a_key_the_socket_is_refused(real_server):
    transport = WebsocketsTransport(
        url=real_server.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    with pytest.raises(TransportConnectionFailed) as refused:
        async with Client(transport=transport) as socket:
            await socket.execute(request(READ, id="x", text="x"))
    assert_closed_forbidden(refused.value)
