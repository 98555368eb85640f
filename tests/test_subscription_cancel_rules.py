"""Cancel request rules to the edge: what asking stores, logs and sends, and what it refuses.

tests/test_subscription_contracts.py tells the story through the API
(subscriptionContractCancel, who may ask, the shop reporting CANCELED);
these pin what a request leaves behind: the contract's request fields, the
contact's SUBSCRIPTION_CANCEL_REQUESTED entry, the outbound event's data
field by field, that asking again writes nothing twice, the reason's
1,000-character bound on both sides, and that a contract the shop does not
have, or one that has ended, is refused with nothing written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from conftest import OTHER_SHOP, SHOP

from graph.types.node import encode_id
from resolvers import activity
from resolvers import subscription_cancel as cancel_rules
from resolvers.activity import EMBEDDED_KEEP, SPILL_AT
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.subscription_cancel import check_reason, contract_gid, request_cancel

# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
T0 = dt.datetime(2126, 1, 10, 8, 0, tzinfo=dt.UTC)
AT = dt.datetime(2126, 3, 2, 14, 5, 9, 250_000, tzinfo=dt.UTC)
AUTHOR = "Ann Admin"
NOT_FOUND = [(("id",), "Subscription contract not found.", "NOT_FOUND")]


def problems(refusal: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


@pytest.fixture(autouse=True)
def moment(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """The request's clock held at one instant."""
    monkeypatch.setattr(cancel_rules, "now", lambda: AT)
    return AT


# -- the reason --------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        (None, None),
        ("", None),
        (" \n\t ", None),
        ("Moving abroad", "Moving abroad"),
        ("  Moving abroad\nin May \t", "Moving abroad\nin May"),
        ("Cafe\u0301 closed", "Café closed"),
        ("r" * 1000, "r" * 1000),
        (" " + "r" * 1000 + "\n", "r" * 1000),
    ],
)
def test_a_reason_keeps_its_lines_without_the_surrounding_blanks(reason, kept):
    assert check_reason(reason) == kept


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        ("r" * 1001, ("Reason is longer than 1000 characters.", "TOO_LONG")),
        ("bad \x00 byte", ("Reason contains control characters.", "INVALID")),
        ("delete \x7f", ("Reason contains control characters.", "INVALID")),
    ],
)
def test_a_bad_reason_is_refused_with_one_problem_on_the_reason(reason, problem):
    with pytest.raises(Refused) as refusal:
        check_reason(reason)
    assert problems(refusal) == [(("reason",), *problem)]


def test_the_contract_id_sent_is_the_one_clients_ask_by():
    oid = ObjectId()
    assert contract_gid(oid) == encode_id("SubscriptionContract", oid)


# -- stored contracts and contacts -------------------------------------------


async def stored_contact(database: Any, entries: int = 1, shop: str = SHOP) -> ObjectId:
    email = f"c{ObjectId()}@example.com"
    log = [
        activity.entry("ORDER_PLACED", text=f"order {i}", at=T0 + dt.timedelta(seconds=i))
        for i in range(entries)
    ]
    doc = new_contact(shop, email, email, "CUSTOMER", {}, T0, entries=log)
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def stored_contract(
    database: Any,
    contact_id: ObjectId | None,
    status: str = "ACTIVE",
    shop: str = SHOP,
    external_id: str = "SUB-1",
) -> ObjectId:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "externalId": external_id,
        "contactId": contact_id,
        "kind": "PRODUCT",
        "status": status,
        "title": "Coffee club",
        "quantity": 1,
        "price": Decimal128("12.50"),
        "currency": "EUR",
        "cancelRequestedAt": None,
        "createdAt": T0,
        "updatedAt": T0,
    }
    await database.subscription_contracts.insert_one(doc)
    return doc["_id"]


async def contract_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    found = await database.subscription_contracts.find_one({"_id": oid})
    assert found is not None
    return found


async def contact_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    found = await database.contacts.find_one({"_id": oid})
    assert found is not None
    return found


async def snapshot(database: Any) -> tuple[list[Any], ...]:
    return (
        await database.subscription_contracts.find({}).sort("_id").to_list(),
        await database.contacts.find({}).sort("_id").to_list(),
        await database.events.find({}).to_list(),
        await database.activity_archive.find({}).to_list(),
    )


# -- asking ------------------------------------------------------------------


async def test_asking_stamps_the_request_on_the_contract(database):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)
    before = await contract_doc(database, oid)

    contract, _ = await request_cancel(database, SHOP, oid, "  Moving abroad ", AUTHOR)

    stored = await contract_doc(database, oid)
    assert stored == {
        **before,
        "cancelRequestedAt": AT,
        "cancelReason": "Moving abroad",
        "cancelRequestedBy": AUTHOR,
        "updatedAt": AT,
    }
    assert contract == stored
    assert stored["status"] == "ACTIVE"  # the shop has not canceled yet


async def test_asking_logs_the_request_on_the_contact(database):
    contact_id = await stored_contact(database, entries=3)
    oid = await stored_contract(database, contact_id)
    before = await contact_doc(database, contact_id)

    _, logged = await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)

    doc = await contact_doc(database, contact_id)
    new = doc["activity"][-1]
    assert {k: v for k, v in new.items() if k != "_id"} == {
        "kind": "SUBSCRIPTION_CANCEL_REQUESTED",
        "text": "Coffee club: Moving abroad",
        "author": AUTHOR,
        "at": AT,
        "subscriptionContractId": oid,
    }
    assert doc["activity"][:-1] == before["activity"]
    assert (doc["activityCount"], doc["activityEmbedded"]) == (4, 4)
    assert doc["updatedAt"] == AT
    assert logged == {"_id": contact_id, "activityEmbedded": 4}


async def test_a_request_without_a_reason_is_logged_by_the_title_alone(database):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)

    contract, _ = await request_cancel(database, SHOP, oid, "  ", AUTHOR)

    assert contract["cancelReason"] is None
    assert (await contract_doc(database, oid))["cancelReason"] is None
    new = (await contact_doc(database, contact_id))["activity"][-1]
    assert (new["kind"], new["text"]) == ("SUBSCRIPTION_CANCEL_REQUESTED", "Coffee club")
    event = await database.events.find_one({})
    assert event["data"]["reason"] is None


async def test_asking_sends_the_shop_one_event_with_the_request(database):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)

    await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)

    events = await database.events.find({}).to_list()
    assert len(events) == 1
    event = events[0]
    assert (event["shopId"], event["type"], event["contactId"]) == (
        SHOP,
        "SUBSCRIPTION_CANCEL_REQUESTED",
        contact_id,
    )
    assert event["data"] == {
        "id": encode_id("SubscriptionContract", oid),
        "externalId": "SUB-1",
        "contactId": encode_id("Contact", contact_id),
        "reason": "Moving abroad",
        "requestedBy": AUTHOR,
        "requestedAt": "2126-03-02T14:05:09.250+00:00",
    }


async def test_a_paused_contract_may_be_asked_for(database):
    oid = await stored_contract(database, await stored_contact(database), status="PAUSED")

    contract, _ = await request_cancel(database, SHOP, oid, None, AUTHOR)

    assert (contract["status"], contract["cancelRequestedAt"]) == ("PAUSED", AT)
    assert await database.events.count_documents({}) == 1


async def test_the_thousand_character_reason_is_stored_whole(database):
    oid = await stored_contract(database, await stored_contact(database))

    await request_cancel(database, SHOP, oid, "r" * 1000, AUTHOR)

    assert (await contract_doc(database, oid))["cancelReason"] == "r" * 1000


# -- asking again ------------------------------------------------------------


async def test_asking_again_is_the_same_request_and_writes_nothing(database, monkeypatch):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)
    await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)
    before = await snapshot(database)
    monkeypatch.setattr(cancel_rules, "now", lambda: AT + dt.timedelta(hours=1))

    contract, logged = await request_cancel(database, SHOP, oid, "Too expensive", "Bo Other")

    assert logged is None
    assert contract == await contract_doc(database, oid)
    assert (contract["cancelRequestedAt"], contract["cancelReason"]) == (AT, "Moving abroad")
    assert contract["cancelRequestedBy"] == AUTHOR
    assert await snapshot(database) == before


async def test_asking_several_times_at_once_is_one_request(database):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)

    answers = await asyncio.gather(
        *(request_cancel(database, SHOP, oid, f"reason {i}", AUTHOR) for i in range(3))
    )

    assert [a[1] is None for a in answers].count(False) == 1
    assert await database.events.count_documents({}) == 1
    kinds = [e["kind"] for e in (await contact_doc(database, contact_id))["activity"]]
    assert kinds.count("SUBSCRIPTION_CANCEL_REQUESTED") == 1


# -- contracts without a contact ---------------------------------------------


@pytest.mark.parametrize("linked", ["no contact", "deleted contact", "another shop's contact"])
async def test_a_contract_without_a_contact_here_is_asked_for_without_a_log_entry(database, linked):
    theirs = await stored_contact(database, shop=OTHER_SHOP)
    contact_id = {
        "no contact": None,
        "deleted contact": ObjectId(),
        "another shop's contact": theirs,
    }[linked]
    oid = await stored_contract(database, contact_id)
    contacts_before = await database.contacts.find({}).sort("_id").to_list()

    contract, logged = await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)

    assert logged is None
    assert (contract["cancelRequestedAt"], contract["cancelReason"]) == (AT, "Moving abroad")
    assert (await contract_doc(database, oid))["cancelRequestedAt"] == AT
    assert await database.contacts.find({}).sort("_id").to_list() == contacts_before
    event = await database.events.find_one({})
    assert event["contactId"] is None
    assert event["data"]["contactId"] is None
    assert event["data"]["id"] == encode_id("SubscriptionContract", oid)


# -- a long log --------------------------------------------------------------


async def test_the_entry_that_fills_the_log_moves_the_oldest_to_the_archive(database):
    contact_id = await stored_contact(database, entries=SPILL_AT - 1)
    oid = await stored_contract(database, contact_id)

    _, logged = await request_cancel(database, SHOP, oid, None, AUTHOR)

    assert logged == {"_id": contact_id, "activityEmbedded": SPILL_AT}
    doc = await contact_doc(database, contact_id)
    assert doc["activityEmbedded"] == EMBEDDED_KEEP
    assert doc["activityCount"] == SPILL_AT
    assert doc["activity"][-1]["kind"] == "SUBSCRIPTION_CANCEL_REQUESTED"
    assert await database.activity_archive.count_documents({"contactId": contact_id}) == 1


async def test_an_entry_short_of_the_bound_stays_embedded(database):
    contact_id = await stored_contact(database, entries=SPILL_AT - 2)
    oid = await stored_contract(database, contact_id)

    await request_cancel(database, SHOP, oid, None, AUTHOR)

    doc = await contact_doc(database, contact_id)
    assert doc["activityEmbedded"] == SPILL_AT - 1
    assert await database.activity_archive.count_documents({}) == 0


async def test_a_contact_without_a_counter_counts_from_zero(database):
    contact_id = await stored_contact(database, entries=0)
    await database.contacts.update_one({"_id": contact_id}, {"$unset": {"activityEmbedded": ""}})
    oid = await stored_contract(database, contact_id)

    _, logged = await request_cancel(database, SHOP, oid, None, AUTHOR)

    assert logged == {"_id": contact_id, "activityEmbedded": 1}


# -- refused -----------------------------------------------------------------


async def test_a_contract_the_shop_does_not_have_is_not_found_and_nothing_is_written(database):
    contact_id = await stored_contact(database)
    await stored_contract(database, contact_id)
    theirs = await stored_contract(database, None, shop=OTHER_SHOP, external_id="SUB-9")
    before = await snapshot(database)

    for oid in (None, ObjectId(), theirs, contact_id):
        with pytest.raises(Refused) as refusal:
            await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)
        assert problems(refusal) == NOT_FOUND, oid

    assert await snapshot(database) == before


@pytest.mark.parametrize("status", ["CANCELED", "EXPIRED"])
async def test_an_ended_contract_cannot_be_asked_for_and_nothing_is_written(database, status):
    oid = await stored_contract(database, await stored_contact(database), status=status)
    before = await snapshot(database)

    with pytest.raises(Refused) as refusal:
        await request_cancel(database, SHOP, oid, None, AUTHOR)

    assert problems(refusal) == [
        (("id",), f"This subscription has already ended ({status}).", "NOT_ALLOWED")
    ]
    assert await snapshot(database) == before


@pytest.mark.parametrize(("reason", "code"), [("r" * 1001, "TOO_LONG"), ("a\x00", "INVALID")])
async def test_a_bad_reason_is_refused_before_anything_is_written(database, reason, code):
    oid = await stored_contract(database, await stored_contact(database))
    before = await snapshot(database)

    for contract_id in (oid, None):
        with pytest.raises(Refused) as refusal:
            await request_cancel(database, SHOP, contract_id, reason, AUTHOR)
        assert [(p.field, p.code) for p in refusal.value.problems] == [(("reason",), code)]

    assert await snapshot(database) == before


async def test_a_request_whose_event_cannot_be_written_leaves_nothing_behind(database, monkeypatch):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)
    before = await snapshot(database)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the events collection is unavailable")

    monkeypatch.setattr(cancel_rules, "emit", broken)
    with pytest.raises(RuntimeError):
        await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)

    assert await snapshot(database) == before


# -- races -------------------------------------------------------------------


class ContractsRacedOnce:
    """The contracts, with another request for the same contract committed right after the
    first look at it: the look is then stale by the time the request writes."""

    def __init__(self, database: Any) -> None:
        self.database = database
        self.raced = False

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        found = await self.database.subscription_contracts.find_one(*args, **kwargs)
        if not self.raced:
            self.raced = True
            await request_cancel(self.database, SHOP, found["_id"], "Asked first", "Bo Other")
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.database.subscription_contracts, name)


class RacedDatabase:
    def __init__(self, database: Any) -> None:
        self.real = database
        self.subscription_contracts = ContractsRacedOnce(database)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_request_that_loses_a_race_is_the_same_request_as_the_winner(database):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)

    contract, logged = await request_cancel(
        RacedDatabase(database), SHOP, oid, "Asked second", AUTHOR
    )

    assert logged is None
    assert (contract["cancelReason"], contract["cancelRequestedBy"]) == ("Asked first", "Bo Other")
    stored = await contract_doc(database, oid)
    assert (stored["cancelReason"], stored["cancelRequestedBy"]) == ("Asked first", "Bo Other")
    assert await database.events.count_documents({}) == 1
    kinds = [e["kind"] for e in (await contact_doc(database, contact_id))["activity"]]
    assert kinds.count("SUBSCRIPTION_CANCEL_REQUESTED") == 1


async def test_a_request_that_fails_after_its_event_leaves_no_event_behind(database, monkeypatch):
    contact_id = await stored_contact(database)
    oid = await stored_contract(database, contact_id)
    before = await snapshot(database)
    real_emit = cancel_rules.emit

    async def emit_then_fail(*args: Any, **kwargs: Any) -> None:
        await real_emit(*args, **kwargs)
        raise RuntimeError("the request failed after its event")

    monkeypatch.setattr(cancel_rules, "emit", emit_then_fail)
    with pytest.raises(RuntimeError):
        await request_cancel(database, SHOP, oid, "Moving abroad", AUTHOR)

    assert await snapshot(database) == before


async def test_asking_reads_the_contacts_counter_not_its_log(database, commands):
    contact_id = await stored_contact(database, entries=SPILL_AT - 2)
    oid = await stored_contract(database, contact_id)
    commands.reset()

    await request_cancel(database, SHOP, oid, None, AUTHOR)

    (read,) = commands.documents("find", "contacts")
    assert read["filter"] == {"shopId": SHOP, "_id": contact_id}
    # A log of up to SPILL_AT entries stays on the server: only the counter is needed.
    assert "activityEmbedded" in read["projection"]
    assert "activity" not in read["projection"]
