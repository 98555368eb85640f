"""A real MongoDB wire-protocol server for the whole session, clean collections for every test.

The embedded SecantusDB server (in memory) is started unless MONGODB_URI
points at a MongoDB, in which case a database of its own is used and
dropped at the end.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pymongo import monitoring
from starlette.applications import Starlette

from graph.embedded import EmbeddedServer
from graph.http.app import create_app
from graph.settings import Settings
from loaders.mongo import COLLECTIONS, Database
from resolvers.shops import Role, create_key, create_keys, ensure_shop

SHOP = "test-shop"
OTHER_SHOP = "other-shop"


class CommandCounter(monitoring.CommandListener):
    """Counts the commands the app sends, by name; tests reset it around what they measure."""

    def __init__(self) -> None:
        self.names: list[str] = []
        # (command, collection) pairs, e.g. ("find", "contacts"), in the order sent.
        self.calls: list[tuple[str, object]] = []
        # The newest command documents as sent, for tests of what a query or
        # update asks of the server (its plan, its oplog entry, its size).
        self.sent: deque[tuple[str, object, dict]] = deque(maxlen=500)
        self.enabled = True

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.enabled and event.command_name not in {"hello", "ismaster", "endSessions", "ping"}:
            self.names.append(event.command_name)
            name = event.command_name
            # getMore names its collection apart; every other command under its own name.
            target = event.command.get("collection" if name == "getMore" else name)
            self.calls.append((name, target))
            self.sent.append((name, target, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def reset(self) -> None:
        self.names.clear()
        self.calls.clear()
        self.sent.clear()

    def documents(self, name: str, collection: str) -> list[dict]:
        """The documents of the commands `name` sent to `collection`, oldest first."""
        return [doc for n, target, doc in self.sent if n == name and target == collection]

    def on(self, collection: str) -> list[str]:
        """The commands sent to one collection, by name."""
        return [name for name, target in self.calls if target == collection]

    @property
    def count(self) -> int:
        return len(self.names)


@pytest.fixture(scope="session")
def mongodb_uri() -> Iterator[str]:
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    with EmbeddedServer(":memory:") as server:
        yield server.uri


@pytest.fixture(scope="session")
def settings(mongodb_uri: str) -> Settings:
    return Settings(
        migrate_on_start=True,
        mongodb_uri=mongodb_uri,
        database=f"contactgraph_test_{os.getpid()}",
        key_cache_seconds=0,
        port=8765,
        # Tests send hundreds of operations per key in a second, some of them
        # pages of 110 contacts with their orders: a budget no test exhausts.
        # tests/test_cost.py and tests/test_throttle.py check the defaults.
        cost_limit=100_000,
        throttle_bucket=10_000_000,
        # No background webhook delivery: command counts see only what a request
        # sends. tests/test_outbound_events.py delivers through `contactgraph serve`.
        webhook_delivery=False,
    )


@pytest.fixture(scope="session")
def commands() -> CommandCounter:
    return CommandCounter()


@dataclass
class Served:
    app: Starlette  # for its state
    asgi: Any  # what to send requests to: the app inside its running lifespan


def per_request_state(app: Starlette, state: dict[str, Any]) -> Any:
    """The lifespan's state, copied into each request as uvicorn does, so no request sees another's."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return asgi


@pytest.fixture(scope="session")
async def served(settings: Settings, commands: CommandCounter) -> AsyncIterator[Served]:
    monitoring.register(commands)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        yield Served(app, per_request_state(app, manager._state))
        if os.environ.get("MONGODB_URI"):
            await app.state.database.client.drop_database(settings.database)


@pytest.fixture
async def database(served: Served) -> AsyncIterator[Database]:
    database: Database = served.app.state.database
    for name in COLLECTIONS:
        # Which migrations ran is the database's version, like its indexes: it stays.
        if name != "migrations":
            await database.db[name].delete_many({})
    served.app.state.key_cache.forget()
    yield database


class Api:
    """Posts GraphQL to the app as one key; `gql` returns the whole JSON response."""

    def __init__(self, client: httpx.AsyncClient, key: str | None) -> None:
        self.client = client
        self.key = key

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    async def gql(self, query: str, variables: dict | None = None, **kwargs: object) -> dict:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=self.headers()
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, variables: dict | None = None) -> dict:
        """The data of a call that must succeed without GraphQL errors."""
        body = await self.gql(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def keys(database: Database) -> dict[str, str]:
    """A key of every role in SHOP, plus an ADMIN key of OTHER_SHOP."""
    await ensure_shop(database, SHOP, currency=None)
    await ensure_shop(database, OTHER_SHOP)
    # One write per shop: this runs before nearly every test.
    roles = list(Role)
    mine = await create_keys(database, SHOP, [(r, f"{r.value.title()} Person") for r in roles])
    made = {role.value: raw for role, (_, raw) in zip(roles, mine, strict=True)}
    _, made["OTHER"] = await create_key(database, OTHER_SHOP, Role.ADMIN, "Other Admin")
    return made


@pytest.fixture
def api(http: httpx.AsyncClient, keys: dict[str, str]) -> Api:
    return Api(http, keys["ADMIN"])


@pytest.fixture
def as_role(http: httpx.AsyncClient, keys: dict[str, str]):  # type: ignore[no-untyped-def]
    def make(role: str) -> Api:
        return Api(http, keys[role])

    return make
