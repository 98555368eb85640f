"""A shop's contact counts come from counters kept in the writes' transactions, with their events.

Every write that adds, removes or re-kinds a contact changes the counters
and records its outbound event in its own transaction; the unfiltered
`totalCount` (and the count of one kind) reads the counters instead of
counting contacts, and any other filter is still counted exactly.
"""

from __future__ import annotations

import asyncio
import io
import random

import pytest
from conftest import OTHER_SHOP, SHOP
from list_factories import add_contacts, contact_doc

from graph.types.node import encode_id
from resolvers import contact_events
from resolvers.contact_counts import COMPACT_AT, contact_totals, count_contacts
from resolvers.contacts import ContactDetails, create_contact
from resolvers.imports import import_contacts
from resolvers.migrations import MIGRATIONS, count_contacts_once
from resolvers.order_seed import seed_orders

CREATE = """
mutation($input: ContactInput!) {
  contactCreate(input: $input) { contact { id kind } userErrors { field code } }
}
"""
DELETE = """
mutation($ids: [ID!]!) { contactsDelete(ids: $ids) { deletedIds userErrors { field code } } }
"""
RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) { order { id } userErrors { field code } }
}
"""
DRAFT = """
mutation($id: ID!) {
  draftOrderCreate(contactId: $id, input: {
    currencyCode: "EUR", lineItems: [{title: "Mug", quantity: 1, unitPrice: "9.50"}]
  }) { order { id } userErrors { field code } }
}
"""
MERGE = """
mutation($target: ID!, $sources: [ID!]!) {
  contactsMerge(targetId: $target, sourceIds: $sources) {
    contact { id kind } userErrors { field code }
  }
}
"""
ERASE = """
mutation($id: ID!) { contactErase(id: $id) { deletedIds userErrors { field code } } }
"""
SUBMIT = """
mutation($input: ContactFormInput!) { contactFormSubmit(input: $input) { ok userErrors { code } } }
"""
COUNTS = """
{
  all: contacts(first: 1) { totalCount }
  leads: contacts(first: 1, filter: {kind: LEAD}) { totalCount }
  customers: contacts(first: 1, filter: {kind: CUSTOMER}) { totalCount }
}
"""


def order(external_id: str, email: str) -> dict:
    return {
        "externalId": external_id,
        "email": email,
        "currencyCode": "EUR",
        "placedAt": "2025-03-01T10:00:00.000Z",
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "12.50"}],
    }


async def counts(api) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(total, leads, customers) as the API reports them."""
    data = await api.data(COUNTS)
    return (
        data["all"]["totalCount"],
        data["leads"]["totalCount"],
        data["customers"]["totalCount"],
    )


async def stored(database, shop: str = SHOP) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(total, leads, customers) counted one by one in the database: the truth."""
    return (
        await database.contacts.count_documents({"shopId": shop}),
        await database.contacts.count_documents({"shopId": shop, "kind": "LEAD"}),
        await database.contacts.count_documents({"shopId": shop, "kind": "CUSTOMER"}),
    )


async def assert_exact(api, database, expected: tuple[int, int, int]) -> None:  # type: ignore[no-untyped-def]
    assert await stored(database) == expected
    assert await counts(api) == expected


async def create(api, email: str) -> str:  # type: ignore[no-untyped-def]
    data = await api.data(CREATE, {"input": {"email": email}})
    assert data["contactCreate"]["userErrors"] == []
    return data["contactCreate"]["contact"]["id"]


async def events(database, event_type: str | None = None) -> list[dict]:  # type: ignore[no-untyped-def]
    query = {"shopId": SHOP} if event_type is None else {"shopId": SHOP, "type": event_type}
    return await database.events.find(query).sort("_id").to_list()


async def snapshot(database) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    counters = database.contact_counts.find({}).sort("_id")
    return await counters.to_list(), await database.events.find({}).sort("_id").to_list()


async def test_creates_and_deletes_keep_the_total_and_the_kinds_exact(api, database):
    ids = [await create(api, f"person{i}@example.com") for i in range(5)]
    await assert_exact(api, database, (5, 5, 0))

    one = await api.data(DELETE, {"ids": [ids[0]]})
    many = await api.data(DELETE, {"ids": ids[1:3]})

    assert one["contactsDelete"]["deletedIds"] == [ids[0]]
    assert many["contactsDelete"]["deletedIds"] == ids[1:3]
    await assert_exact(api, database, (2, 2, 0))


async def test_orders_count_new_customers_and_converted_leads(api, database):
    lead = await create(api, "lead@example.com")
    other_lead = await create(api, "drafted@example.com")

    recorded = await api.data(RECORD, {"input": order("A-1", "new@example.com")})
    assert recorded["orderRecord"]["userErrors"] == []
    await assert_exact(api, database, (3, 2, 1))

    # The lead's first order makes it a customer: one fewer lead, one more customer.
    await api.data(RECORD, {"input": order("A-2", "LEAD@example.com")})
    await assert_exact(api, database, (3, 1, 2))

    # A replay and a second order of a customer change no count.
    await api.data(RECORD, {"input": order("A-2", "lead@example.com")})
    await api.data(RECORD, {"input": order("A-3", "lead@example.com")})
    await assert_exact(api, database, (3, 1, 2))

    drafted = await api.data(DRAFT, {"id": other_lead})
    assert drafted["draftOrderCreate"]["userErrors"] == []
    await assert_exact(api, database, (3, 0, 3))
    updated = await events(database, "CONTACT_UPDATED")
    assert [(e["data"]["id"], e["data"]["kind"]) for e in updated] == [
        (lead, "CUSTOMER"),
        (other_lead, "CUSTOMER"),
    ]


async def test_a_merge_counts_the_sources_out_and_the_target_as_what_it_becomes(api, database):
    target = await create(api, "target@example.com")
    lead_source = await create(api, "lead-source@example.com")
    await api.data(RECORD, {"input": order("M-1", "customer-source@example.com")})
    customer_source = encode_id(
        "Contact",
        (await database.contacts.find_one({"emailKey": "customer-source@example.com"}))["_id"],
    )
    await assert_exact(api, database, (3, 2, 1))

    merged = await api.data(MERGE, {"target": target, "sources": [lead_source, customer_source]})

    assert merged["contactsMerge"] == {
        "contact": {"id": target, "kind": "CUSTOMER"},
        "userErrors": [],
    }
    await assert_exact(api, database, (1, 0, 1))
    [event] = await events(database, "CONTACT_MERGED")
    assert event["data"]["id"] == target
    assert event["data"]["mergedIds"] == [lead_source, customer_source]


async def test_an_erasure_counts_the_person_out(api, database):
    keep = await create(api, "keep@example.com")
    gone = await create(api, "gone@example.com")

    erased = await api.data(ERASE, {"id": gone})

    assert erased["contactErase"] == {"deletedIds": [gone], "userErrors": []}
    await assert_exact(api, database, (1, 1, 0))
    assert keep != gone


async def test_an_import_counts_the_contacts_it_makes_and_not_those_it_updates(api, database):
    await create(api, "known@example.com")
    text = "Email,First Name\r\nknown@example.com,Kay\r\nfresh1@example.com,F\r\nfresh2@example.com,G\r\n"

    report = await import_contacts(database, SHOP, lambda: io.StringIO(text, newline=""))

    assert (report.created, report.updated) == (2, 1)
    await assert_exact(api, database, (3, 3, 0))
    created = await events(database, "CONTACT_CREATED")
    assert sorted(e["data"]["email"] for e in created) == [
        "fresh1@example.com",
        "fresh2@example.com",
        "known@example.com",
    ]


async def test_a_form_counts_the_lead_it_makes_once(api, as_role, database):
    public = as_role("PUBLIC")
    for _ in range(2):
        body = await public.gql(
            SUBMIT, {"input": {"email": "visitor@example.com", "message": "Hello"}}
        )
        assert body["data"]["contactFormSubmit"] == {"ok": True, "userErrors": []}

    await assert_exact(api, database, (1, 1, 0))
    [event] = await events(database, "CONTACT_CREATED")
    assert event["data"]["email"] == "visitor@example.com"
    assert event["data"]["kind"] == "LEAD"


async def test_seeded_orders_make_the_seeded_leads_customers_in_the_counters(api, database):
    ids = [await create(api, f"seeded{i}@example.com") for i in range(3)]
    docs = await database.contacts.find({"shopId": SHOP}).to_list()

    await seed_orders(database, SHOP, docs, 2, random.Random(3))

    await assert_exact(api, database, (3, 0, 3))
    assert len(ids) == 3


async def test_thirty_concurrent_creates_and_deletes_keep_the_count_exact(api, database):
    doomed = [await create(api, f"doomed{i}@example.com") for i in range(10)]

    async def delete(contact_id: str) -> None:
        data = await api.data(DELETE, {"ids": [contact_id]})
        assert data["contactsDelete"]["deletedIds"] == [contact_id]

    await asyncio.gather(
        *[create(api, f"burst{i}@example.com") for i in range(30)],
        *[delete(contact_id) for contact_id in doomed],
    )

    await assert_exact(api, database, (30, 30, 0))
    assert len(await events(database, "CONTACT_CREATED")) == 40
    assert len(await events(database, "CONTACT_DELETED")) == 10


async def test_refused_writes_change_no_counter_and_record_no_event(api, as_role, database):
    ann = await create(api, "ann@example.com")
    before = await snapshot(database)
    missing = encode_id("Contact", "0123456789abcdef01234567")

    taken = await api.data(CREATE, {"input": {"email": "ANN@example.com"}})
    bad = await api.data(CREATE, {"input": {"email": "not an address"}})
    deleted = await api.data(DELETE, {"ids": [missing]})
    merged = await api.data(MERGE, {"target": ann, "sources": [missing]})
    erased = await api.data(ERASE, {"id": missing})
    unknown_draft = await api.data(DRAFT, {"id": missing})
    bad_order = await api.data(
        RECORD, {"input": {**order("X-1", "x@example.com"), "lineItems": []}}
    )
    foreign = await as_role("OTHER").data(DELETE, {"ids": [ann]})
    form = await as_role("PUBLIC").gql(SUBMIT, {"input": {"email": "nobody", "message": "hi"}})

    assert taken["contactCreate"]["userErrors"] == [{"field": ["input", "email"], "code": "TAKEN"}]
    assert bad["contactCreate"]["userErrors"][0]["code"] == "INVALID"
    assert deleted["contactsDelete"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert merged["contactsMerge"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert erased["contactErase"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert unknown_draft["draftOrderCreate"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert bad_order["orderRecord"]["userErrors"] != []
    assert foreign["contactsDelete"]["deletedIds"] == []
    assert form["data"]["contactFormSubmit"]["userErrors"] != []
    assert await snapshot(database) == before
    await assert_exact(api, database, (1, 1, 0))


async def test_each_change_records_its_event_once_with_the_id_and_the_fields_set(api, database):
    first = await create(api, "first@example.com")
    second = await create(api, "second@example.com")
    third = await create(api, "third@example.com")
    fourth = await create(api, "fourth@example.com")

    await api.data(DELETE, {"ids": [first]})
    await api.data(MERGE, {"target": second, "sources": [third]})
    await api.data(ERASE, {"id": fourth})

    by_type = {}
    for event in await events(database):
        by_type.setdefault(event["type"], []).append(event)
    assert {t: len(v) for t, v in by_type.items()} == {
        "CONTACT_CREATED": 4,
        "CONTACT_DELETED": 1,
        "CONTACT_MERGED": 1,
        "CONTACT_ERASED": 1,
    }
    created = {e["data"]["id"]: e["data"] for e in by_type["CONTACT_CREATED"]}
    assert set(created) == {first, second, third, fourth}
    assert created[second]["email"] == "second@example.com"
    assert created[second]["kind"] == "LEAD"
    assert "activity" not in created[second] and "consent" not in created[second]
    # What the erased person's earlier event said about them is erased too: only the id stays.
    assert created[fourth] == {"id": fourth}
    assert by_type["CONTACT_DELETED"][0]["data"] == {"id": first, "email": "first@example.com"}
    assert by_type["CONTACT_MERGED"][0]["data"]["mergedIds"] == [third]
    assert by_type["CONTACT_ERASED"][0]["data"] == {"id": fourth}
    for event in await events(database):
        assert encode_id("Contact", event["contactId"]) == event["data"]["id"]


async def test_the_unfiltered_total_and_a_kind_count_read_no_contact(api, database, commands):
    for i in range(3):
        await create(api, f"c{i}@example.com")

    commands.reset()
    assert await counts(api) == (3, 3, 0)

    assert ("aggregate", "contacts") not in commands.calls
    assert ("count", "contacts") not in commands.calls
    assert commands.on("contact_counts") == ["find", "find", "find"]


async def test_other_filters_are_still_counted_exactly(api, database, commands):
    await create(api, "vip@example.com")
    await api.data(CREATE, {"input": {"email": "vip2@example.com", "labels": ["VIP"]}})

    commands.reset()
    data = await api.data('{ contacts(first: 1, filter: {labelsAny: ["VIP"]}) { totalCount } }')

    assert data["contacts"]["totalCount"] == 1
    assert ("aggregate", "contacts") in commands.calls
    assert commands.on("contact_counts") == []


async def test_the_migration_counts_contacts_stored_before_the_counters(api, database):
    await add_contacts(
        database,
        contact_doc("a@example.com"),
        contact_doc("b@example.com", orders=2),
        contact_doc("c@example.com", kind="CUSTOMER"),
        contact_doc("d@example.com", shop=OTHER_SHOP),
    )
    assert await database.contact_counts.count_documents({}) == 0
    assert "contact-counters" in [name for name, _ in MIGRATIONS]

    assert await count_contacts_once(database) == 2

    await assert_exact(api, database, (3, 1, 2))
    assert await contact_totals(database, OTHER_SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}
    # Run again (a start cut short), it counts the same: the counters are replaced, not added to.
    await create(api, "e@example.com")
    await count_contacts_once(database)
    await assert_exact(api, database, (4, 2, 2))


async def test_a_read_folds_many_counter_parts_into_one_with_the_same_sum(database):
    for _ in range(COMPACT_AT + 5):
        await count_contacts(database, SHOP, {"LEAD": 1}, session=None)
    await count_contacts(database, SHOP, {"LEAD": -1, "CUSTOMER": 1}, session=None)
    await count_contacts(database, OTHER_SHOP, {"CUSTOMER": 2}, session=None)
    expected = {"total": COMPACT_AT + 5, "LEAD": COMPACT_AT + 4, "CUSTOMER": 1}

    assert await contact_totals(database, SHOP) == expected

    assert await database.contact_counts.count_documents({"shopId": SHOP}) == 1
    assert await contact_totals(database, SHOP) == expected
    assert await contact_totals(database, OTHER_SHOP) == {"total": 2, "LEAD": 0, "CUSTOMER": 2}


async def test_an_unknown_kind_is_refused_before_anything_is_written(database):
    with pytest.raises(ValueError, match="unknown contact kind VISITOR"):
        await count_contacts(database, SHOP, {"VISITOR": 1}, session=None)

    assert await database.contact_counts.count_documents({}) == 0


async def test_a_write_that_fails_after_counting_leaves_no_count_and_no_contact(
    api, database, monkeypatch
):
    await create(api, "before@example.com")
    before = await snapshot(database)

    async def broken(*args, **kwargs):
        raise RuntimeError("the event store is gone")

    monkeypatch.setattr(contact_events, "emit_many", broken)
    with pytest.raises(RuntimeError, match="the event store is gone"):
        await create_contact(database, SHOP, ContactDetails(email="after@example.com"), "Test")

    assert await database.contacts.count_documents({"emailKey": "after@example.com"}) == 0
    assert await snapshot(database) == before
    await assert_exact(api, database, (1, 1, 0))
