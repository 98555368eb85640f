"""Outbound events as stored: the event, its body, and one delivery per subscribed endpoint.

tests/test_webhooks_out.py (and the API tests of each change) see events
arrive; these call the recording directly, at a fixed time, for what a
receiver depends on: the exact JSON, who gets a delivery and who does not,
and that nothing is recorded outside the change's transaction.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest
from bson import Decimal128, ObjectId

from graph.types.node import encode_id
from resolvers import activity, events
from resolvers.events import EVENT_TYPES, contact_gid, emit, emit_many, event_body

# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
AT = dt.datetime(2126, 1, 5, 10, 12, 3, 481000, tzinfo=dt.UTC)
SHOP = "acme"
CONTACT = ObjectId("65a1b2c3d4e5f60718293a4b")


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "now", lambda: AT)


async def record(database: Any, event_type: str, items: list[tuple[Any, dict]]) -> None:
    async def work(session: Any) -> None:
        await emit_many(database, SHOP, event_type, items, session=session)

    await activity.in_transaction(database, work)


async def endpoint(database: Any, types: list[str], *, enabled: bool = True, shop: str = SHOP):
    doc = {"_id": ObjectId(), "shopId": shop, "enabled": enabled, "events": types}
    await database.webhook_endpoints.insert_one(doc)
    return doc["_id"]


# -- the body -------------------------------------------------------------------


def test_a_contact_id_is_the_one_the_api_shows_without_padding():
    assert contact_gid(CONTACT) == "Q29udGFjdDo2NWExYjJjM2Q0ZTVmNjA3MTgyOTNhNGI"
    assert contact_gid(CONTACT) == encode_id("Contact", CONTACT)
    # 33 bytes need no padding; 34 would need two '=', which are left off.
    assert contact_gid(ObjectId("0" * 24)) == encode_id("Contact", ObjectId("0" * 24))


def test_the_body_is_type_timestamp_and_data_with_times_in_utc_z_and_exact_decimals():
    body = event_body(
        "CONTACT_UPDATED",
        AT,
        {
            "id": CONTACT,
            "spent": Decimal128("10.10"),
            "amount": Decimal("0.30"),
            "at": dt.datetime(2126, 1, 1, 9, 0),  # a naive time is taken as UTC
            "labels": ["vip"],
        },
    )

    assert body == (
        '{"type":"CONTACT_UPDATED","timestamp":"2126-01-05T10:12:03.481000Z",'
        '"data":{"id":"65a1b2c3d4e5f60718293a4b","spent":"10.10","amount":"0.30",'
        '"at":"2126-01-01T09:00:00Z","labels":["vip"]}}'
    )


def test_a_value_json_cannot_carry_is_refused_by_name():
    with pytest.raises(TypeError) as refused:
        event_body("CONTACT_UPDATED", AT, {"x": {1}})

    assert isinstance(refused.value.__cause__, TypeError)
    assert str(refused.value.__cause__) == "set cannot be sent in an event"


# -- recording -------------------------------------------------------------------


async def test_an_unknown_event_type_records_nothing(database):
    await endpoint(database, ["CONTACT_CREATED"])

    with pytest.raises(ValueError, match=r"^unknown event type CONTACT_RENAMED$"):
        await record(database, "CONTACT_RENAMED", [(CONTACT, {"id": "x"})])

    assert await database.events.count_documents({}) == 0
    assert await database.webhook_deliveries.count_documents({}) == 0


@pytest.mark.parametrize("event_type", EVENT_TYPES)
async def test_every_declared_type_is_recorded(database, event_type):
    await record(database, event_type, [(None, {})])

    assert [e["type"] for e in await database.events.find({}).to_list()] == [event_type]


async def test_no_items_record_nothing(database):
    await endpoint(database, ["LABELS_CHANGED"])

    await record(database, "LABELS_CHANGED", [])

    assert await database.events.count_documents({}) == 0
    assert await database.webhook_deliveries.count_documents({}) == 0


async def test_each_item_is_one_event_kept_seven_days(database):
    other = ObjectId()

    await record(database, "LABELS_CHANGED", [(CONTACT, {"n": 1}), (other, {"n": 2})])

    stored = await database.events.find({}, sort=[("data.n", 1)]).to_list()
    assert [{k: v for k, v in e.items() if k != "_id"} for e in stored] == [
        {
            "shopId": SHOP,
            "type": "LABELS_CHANGED",
            "timestamp": AT,
            "contactId": contact,
            "data": {"n": n},
            "expiresAt": AT + dt.timedelta(days=7),
        }
        for contact, n in ((CONTACT, 1), (other, 2))
    ]
    assert stored[0]["_id"] != stored[1]["_id"]
    # Without an endpoint there is nothing to deliver.
    assert await database.webhook_deliveries.count_documents({}) == 0


async def test_emit_records_one_event_with_or_without_a_contact(database):
    async def work(session: Any) -> None:
        await emit(database, SHOP, "CONTACT_DELETED", {"id": "a"}, session=session)
        await emit(
            database, SHOP, "CONTACT_CREATED", {"id": "b"}, session=session, contact_id=CONTACT
        )

    await activity.in_transaction(database, work)

    stored = await database.events.find({}, sort=[("data.id", 1)]).to_list()
    assert [(e["type"], e["contactId"], e["data"]) for e in stored] == [
        ("CONTACT_DELETED", None, {"id": "a"}),
        ("CONTACT_CREATED", CONTACT, {"id": "b"}),
    ]


async def test_only_enabled_endpoints_of_the_shop_subscribed_to_the_type_get_deliveries(database):
    both = await endpoint(database, ["CONTACT_CREATED", "LABELS_CHANGED"])
    labels = await endpoint(database, ["LABELS_CHANGED"])
    await endpoint(database, ["CONTACT_CREATED"])
    await endpoint(database, ["LABELS_CHANGED"], enabled=False)
    await endpoint(database, ["LABELS_CHANGED"], shop="other")
    first, second = ObjectId(), ObjectId()

    await record(database, "LABELS_CHANGED", [(first, {"n": 1}), (second, {"n": 2})])

    stored = {e["contactId"]: e for e in await database.events.find({}).to_list()}
    deliveries = await database.webhook_deliveries.find({}).to_list()
    assert sorted((d["endpointId"], d["contactId"]) for d in deliveries) == sorted(
        (e, c) for e in (both, labels) for c in (first, second)
    )
    for delivery in deliveries:
        event = stored[delivery["contactId"]]
        assert {k: v for k, v in delivery.items() if k not in ("_id", "endpointId")} == {
            "shopId": SHOP,
            "eventId": event["_id"],
            "type": "LABELS_CHANGED",
            "contactId": event["contactId"],
            "seq": AT,
            "body": event_body("LABELS_CHANGED", AT, event["data"]),
            "status": "PENDING",
            "attempts": 0,
            "createdAt": AT,
            "nextAttemptAt": AT,
            "lease": None,
        }
        assert orjson.loads(delivery["body"])["data"] == event["data"]
    assert len({d["_id"] for d in deliveries}) == 4


async def test_nothing_is_recorded_when_the_change_s_transaction_fails(database):
    await endpoint(database, ["CONTACT_UPDATED"])

    async def work(session: Any) -> None:
        await emit(database, SHOP, "CONTACT_UPDATED", {"id": "x"}, session=session)
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await activity.in_transaction(database, work)

    assert await database.events.count_documents({}) == 0
    assert await database.webhook_deliveries.count_documents({}) == 0


async def test_an_endpoint_enabled_in_the_same_transaction_gets_its_delivery(database):
    # The endpoints are read in the change's transaction, as it sees them.
    async def work(session: Any) -> None:
        await database.webhook_endpoints.insert_one(
            {"shopId": SHOP, "enabled": True, "events": ["CONSENT_CHANGED"]}, session=session
        )
        await emit(database, SHOP, "CONSENT_CHANGED", {}, session=session, contact_id=CONTACT)

    await activity.in_transaction(database, work)

    assert await database.webhook_deliveries.count_documents({"contactId": CONTACT}) == 1
