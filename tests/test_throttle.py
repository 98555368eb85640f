"""Each key's cost budget: a leaky bucket in MongoDB; a request that does not fit is 429 and runs nothing."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid

import httpx
import orjson
import pytest
import uvicorn
import websockets
from asgi_lifespan import LifespanManager
from conftest import OTHER_SHOP, SHOP, Api

from graph.embedded import free_port
from graph.http.app import create_app
from graph.settings import Settings, SettingsError
from loaders.mongo import INDEXES, Database, connect
from resolvers import clock
from resolvers.shops import Role, create_key, webhook_secret
from resolvers.throttle import Bucket, spend

GRAPHQL_RESPONSE = "application/graphql-response+json"

# 4 × (200 + 1) = 804 points: two fit in a bucket of 2,000, a third does not.
REPORT = "{ " + " ".join(f"s{i}: contactStats {{ contacts }}" for i in range(4)) + " }"
NOTE = "mutation($id: ID!, $text: String!) { noteAdd(contactId: $id, text: $text) { note { id } } }"
CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"


class Clock:
    """The time the app reads, moved by the test.

    It starts at the real time: buckets expire by MongoDB's clock (TTL), so a
    test's buckets must not look long expired to it.
    """

    def __init__(self, at: dt.datetime) -> None:
        self.start = self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    moment = Clock(clock.now())
    monkeypatch.setattr(clock, "now", moment)
    return moment


@pytest.fixture(scope="module")
async def default_app(settings: Settings, served):
    """The production budget: 2,000 points restoring 100 per second, at most 1,000 per operation."""
    production = Settings()
    app = create_app(
        dataclasses.replace(
            settings,
            cost_limit=production.cost_limit,
            throttle_bucket=production.throttle_bucket,
            throttle_restore=production.throttle_restore,
        )
    )
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture(scope="module")
async def small_app(settings: Settings, served):
    """A bucket of 100 points restoring 10 per second."""
    app = create_app(
        dataclasses.replace(settings, cost_limit=100, throttle_bucket=100, throttle_restore=10)
    )
    async with LifespanManager(app) as manager:
        yield manager.app


@pytest.fixture
async def client(default_app):
    transport = httpx.ASGITransport(app=default_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def small(small_app):
    transport = httpx.ASGITransport(app=small_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def post(
    http: httpx.AsyncClient, key: str, query: str, variables: dict | None = None, **headers: str
):
    return await http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def available(response: httpx.Response) -> int:
    return response.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]


# --- settings -----------------------------------------------------------------


def test_the_default_budget():
    defaults = Settings()
    assert (defaults.cost_limit, defaults.throttle_bucket, defaults.throttle_restore) == (
        1_000,
        2_000,
        100,
    )
    assert Settings.from_env({}).throttle_bucket == 2_000
    configured = Settings.from_env(
        {
            "CONTACTGRAPH_COST_LIMIT": "500",
            "CONTACTGRAPH_THROTTLE_BUCKET": "5000",
            "CONTACTGRAPH_THROTTLE_RESTORE": "250",
        }
    )
    assert (configured.cost_limit, configured.throttle_bucket, configured.throttle_restore) == (
        500,
        5_000,
        250,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTACTGRAPH_THROTTLE_BUCKET": "lots"}, "must be a whole number"),
        ({"CONTACTGRAPH_THROTTLE_RESTORE": "0"}, "between 1 and"),
        ({"CONTACTGRAPH_COST_LIMIT": "-5"}, "between 1 and"),
        ({"CONTACTGRAPH_COST_LIMIT": "3000"}, "must not exceed CONTACTGRAPH_THROTTLE_BUCKET"),
    ],
)
def test_bad_budget_settings_stop_the_start(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_idle_buckets_vanish():
    [ttl] = INDEXES["throttle"]
    assert ttl.document["key"] == {"expiresAt": 1}
    assert ttl.document["expireAfterSeconds"] == 0


# --- the bucket ------------------------------------------------------------------


async def test_a_key_spends_its_bucket_and_is_throttled_with_when_to_retry(
    client, keys, database, frozen
):
    admin = keys["ADMIN"]
    first = await post(client, admin, REPORT)
    assert first.status_code == 200
    assert first.json()["extensions"]["cost"]["requestedQueryCost"] == 804
    assert available(first) == 2000 - 804
    assert available(await post(client, admin, REPORT)) == 2000 - 2 * 804

    refused = await post(client, admin, REPORT)
    assert refused.status_code == 429
    # 392 left; 412 more come back in 4.12 seconds: retry after 5.
    assert refused.headers["retry-after"] == "5"
    body = refused.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "THROTTLED", "retryAfter": 5}
    assert error["message"] == (
        "Throttled: the query costs 804 points and 392 are available; 100 come back every second."
    )
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 804,
        "actualQueryCost": 0,
        "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 392, "restoreRate": 100},
    }
    # The refusal took nothing; after Retry-After seconds it fits.
    frozen.advance(4)
    assert (await post(client, admin, REPORT)).status_code == 429
    frozen.advance(1)
    again = await post(client, admin, REPORT)
    assert again.status_code == 200
    assert available(again) == 392 + 500 - 804


async def test_a_throttled_mutation_writes_nothing(client, keys, database, frozen):
    admin = keys["ADMIN"]
    assert (await post(client, admin, REPORT)).status_code == 200
    assert (await post(client, admin, REPORT)).status_code == 200
    # 392 points left: 35 mutations of 11 fit, the 36th does not.
    for i in range(35):
        assert (
            await post(client, admin, CREATE, {"email": f"p{i}@example.com"})
        ).status_code == 200
    refused = await post(client, admin, CREATE, {"email": "late@example.com"})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert await database.contacts.count_documents({}) == 35
    assert await database.contacts.count_documents({"emailKey": "late@example.com"}) == 0


async def test_both_media_types_get_429(small, keys, database, frozen):
    admin = keys["ADMIN"]
    query = "{ contacts(first: 97) { nodes { id } } }"  # 99 points of 100
    assert (await post(small, admin, query)).status_code == 200
    for accept in (GRAPHQL_RESPONSE, "application/json"):
        refused = await post(small, admin, query, Accept=accept)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "10"  # 98 missing at 10 per second
        assert refused.json()["errors"][0]["extensions"]["code"] == "THROTTLED"


async def test_points_come_back_at_the_restore_rate_up_to_the_bucket(small, keys, frozen):
    admin = keys["ADMIN"]
    query = "{ contacts(first: 48) { nodes { id } } }"  # 50 points
    assert available(await post(small, admin, query)) == 50
    assert available(await post(small, admin, query)) == 0
    frozen.advance(2.5)
    assert available(await post(small, admin, "{ __typename }")) == 25
    frozen.advance(3600)
    assert available(await post(small, admin, "{ __typename }")) == 100


async def test_one_keys_bucket_never_slows_another_key(small, keys, database, frozen):
    _, second_admin = await create_key(database, SHOP, Role.ADMIN, "Second admin")
    query = "{ contacts(first: 98) { nodes { id } } }"  # 100 points
    assert (await post(small, keys["ADMIN"], query)).status_code == 200
    assert (await post(small, keys["ADMIN"], query)).status_code == 429
    for key in (second_admin, keys["STAFF"], keys["READER"], keys["OTHER"]):
        response = await post(small, key, query)
        assert response.status_code == 200, response.text
        assert available(response) == 0
    buckets = await database.throttle.find({}, {"shopId": 1}).to_list()
    assert sorted(b["shopId"] for b in buckets) == sorted([SHOP] * 4 + [OTHER_SHOP])


async def test_the_bucket_is_one_document_that_expires_once_full_again(
    small, keys, database, frozen
):
    await post(small, keys["ADMIN"], "{ contacts(first: 8) { nodes { id } } }")
    [bucket] = await database.throttle.find({}).to_list()
    assert bucket["shopId"] == SHOP
    assert bucket["level"] == 90
    assert bucket["at"] == frozen.start
    # Empty to full takes 100 / 10 = 10 seconds; an absent bucket is a full one.
    assert bucket["expiresAt"] == frozen.start + dt.timedelta(seconds=10)


async def test_concurrent_requests_never_spend_the_same_points_twice(small, keys, database, frozen):
    query = "{ contacts(first: 8) { nodes { id } } }"  # 10 points: exactly 10 fit
    responses = await asyncio.gather(*(post(small, keys["ADMIN"], query) for _ in range(25)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 15
    [bucket] = await database.throttle.find({}).to_list()
    assert bucket["level"] == 0


async def test_the_spend_is_atomic_across_clients(settings, database, keys):
    # Two clients of their own, as two workers or two instances would have.
    bucket = Bucket(capacity=100, restore_rate=1)
    now = clock.now()
    key_id = (await database.api_keys.find_one({"role": "ADMIN", "shopId": SHOP}))["_id"]
    clients = [connect(settings.mongodb_uri or "") for _ in range(2)]
    try:
        handles = [Database(c[settings.database]) for c in clients]
        results = await asyncio.gather(
            *(spend(handles[i % 2], key_id, SHOP, 7, bucket, now) for i in range(30))
        )
    finally:
        for c in clients:
            await c.close()
    assert sum(r.granted for r in results) == 14  # 14 × 7 = 98 of 100
    assert min(r.available for r in results) == 2
    assert (await database.throttle.find_one({"_id": key_id}))["level"] == 2


async def test_a_decision_whose_reply_was_lost_is_read_back(database, keys, monkeypatch):
    # The embedded server can apply an upsert that raced another one to create
    # the bucket and answer nothing; the decision is read back, not repeated.
    bucket = Bucket(capacity=100, restore_rate=1)
    key_id = (await database.api_keys.find_one({"role": "ADMIN", "shopId": SHOP}))["_id"]
    collection = type(database.throttle)
    real = collection.find_one_and_update

    async def reply_lost(self, *args, **kwargs):
        await real(self, *args, **kwargs)
        return None

    monkeypatch.setattr(collection, "find_one_and_update", reply_lost)
    now = clock.now()
    first = await spend(database, key_id, SHOP, 60, bucket, now)
    second = await spend(database, key_id, SHOP, 60, bucket, now)
    assert (first.granted, first.available) == (True, 40)
    assert (second.granted, second.available) == (False, 40)
    assert (await database.throttle.find_one({"_id": key_id}))["level"] == 40


async def test_a_clock_behind_the_stored_time_restores_nothing(database, keys):
    bucket = Bucket(capacity=100, restore_rate=10)
    key_id = (await database.api_keys.find_one({"role": "ADMIN", "shopId": SHOP}))["_id"]
    now = clock.now()
    assert (await spend(database, key_id, SHOP, 60, bucket, now)).available == 40
    # Another instance whose clock is 3 s behind: no points appear, none vanish.
    behind = await spend(database, key_id, SHOP, 0, bucket, now - dt.timedelta(seconds=3))
    assert behind.available == 40
    later = await spend(database, key_id, SHOP, 0, bucket, now + dt.timedelta(seconds=1))
    assert later.available == 50


# --- every way in ------------------------------------------------------------------


async def test_each_operation_of_a_batch_is_costed_and_throttled(small, keys, frozen):
    page = {"query": "{ contacts(first: 38) { nodes { id } } }"}  # 40 points
    response = await small.post(
        "/graphql", json=[page, page, page], headers={"Authorization": f"Bearer {keys['ADMIN']}"}
    )
    # The batch itself is answered; each entry says what became of it.
    assert response.status_code == 200
    entries = response.json()
    assert [e["extensions"]["cost"]["requestedQueryCost"] for e in entries] == [40, 40, 40]
    ran = [e for e in entries if "errors" not in e]
    throttled = [e for e in entries if "errors" in e]
    assert len(ran) == 2 and len(throttled) == 1
    assert throttled[0]["errors"][0]["extensions"] == {"code": "THROTTLED", "retryAfter": 2}
    assert sorted(available_of(e) for e in entries) == [20, 20, 60]


def available_of(entry: dict) -> int:
    return entry["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]


async def test_the_order_webhook_spends_no_key_budget(small, database, keys, frozen):
    secret = await webhook_secret(database, SHOP)
    assert secret is not None
    signing_key = base64.b64decode(secret.removeprefix("whsec_"))
    for i in range(12):  # 12 deliveries of a 13-point mutation: far over a bucket of 100
        body = orjson.dumps(
            {
                "externalId": f"W-{i}",
                "email": "web@example.com",
                "currencyCode": "EUR",
                "lineItems": [{"title": "Poster", "quantity": 1, "unitPrice": "7.30"}],
            }
        )
        webhook_id = f"msg_{uuid.uuid4().hex}"
        stamp = str(int(frozen().timestamp()))
        digest = hmac.new(signing_key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
        }
        response = await small.post(f"/webhooks/orders?shop={SHOP}", content=body, headers=headers)
        assert response.status_code == 200, response.text
    assert await database.orders.count_documents({}) == 12
    assert await database.throttle.count_documents({}) == 0


async def test_a_subscription_is_costed_once_when_it_starts(settings, database, keys, frozen):
    tight = dataclasses.replace(settings, cost_limit=100, throttle_bucket=100, throttle_restore=10)
    app = create_app(tight)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            api = Api(http, keys["ADMIN"])
            created = await api.data(CREATE, {"email": "ann@example.com"})  # 11 points
            contact_id = created["contactCreate"]["contact"]["id"]
            watch = f'subscription {{ contactActivity(contactId: "{contact_id}") {{ id kind }} }}'
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
            ) as socket:
                auth = {"authorization": f"Bearer {keys['ADMIN']}"}
                await socket.send(json.dumps({"type": "connection_init", "payload": auth}))
                assert json.loads(await socket.recv()) == {"type": "connection_ack"}
                await socket.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": {"query": watch}})
                )
                await asyncio.sleep(0.3)  # the protocol has no "subscribed"
                # The subscription took 1 point: 88 are left, and its events take none.
                for i in range(3):
                    await api.data(NOTE, {"id": contact_id, "text": f"note {i}"})  # 11 points
                    event = json.loads(await asyncio.wait_for(socket.recv(), 10))
                    assert event["type"] == "next"
                    assert event["payload"]["data"]["contactActivity"]["kind"] == "NOTE"
                    assert "extensions" not in event["payload"]
                left = available(await post(http, keys["ADMIN"], "{ __typename }"))
                assert left == 100 - 11 - 1 - 3 * 11
                # An empty bucket refuses the next subscription when it starts.
                await post(http, keys["ADMIN"], "{ contacts(first: 53) { nodes { id } } }")
                await socket.send(
                    json.dumps({"id": "2", "type": "subscribe", "payload": {"query": watch}})
                )
                refused = json.loads(await asyncio.wait_for(socket.recv(), 10))
    finally:
        server.should_exit = True
        await task
    # The refusal is the subscription's one result; nothing more comes for it.
    assert refused["id"] == "2" and refused["type"] == "next"
    assert refused["payload"]["data"] is None
    assert refused["payload"]["errors"][0]["extensions"] == {"code": "THROTTLED", "retryAfter": 1}
    assert refused["payload"]["errors"][0]["message"] == (
        "Throttled: the query costs 1 point and 0 are available; 10 come back every second."
    )
