"""Creating, editing, unlocking and deleting contacts, called directly with a fixed clock.

tests/test_contacts_create.py and tests/test_contacts_update_delete.py tell
the story through the API; these call resolvers.contacts for the exact
rules: what a new contact's document holds, which problems an input gets
and where, which country reads a national phone number, the compare-and-set
that keeps derived fields true, what a delete leaves of labels, orders and
the archive, and that every write and what it records go together or not
at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from bson import Decimal128, ObjectId

from resolvers import activity, contacts
from resolvers.contact_counts import contact_totals
from resolvers.contacts import (
    ContactDetails,
    check_details,
    contact_updated,
    create_contact,
    delete_contacts,
    derived_fields,
    edit_contact,
    new_contact,
    set_or_unset,
    unlock_contact,
    update_details,
)
from resolvers.errors import Problem, Refused
from resolvers.events import contact_gid
from resolvers.labels import SHOP_LABEL_LIMIT
from resolvers.shops import ensure_shop

SHOP = "acme"
OTHER = "other"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
EARLIER = dt.datetime(2126, 1, 5, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contacts, "now", lambda: NOW)
    monkeypatch.setattr(activity, "now", lambda: NOW)


class Boom(Exception):
    """A failure after the writes, inside their transaction."""


def refused(error: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in error.value.problems]


async def stored_contact(database: Any, shop: str = SHOP, **fields: Any) -> dict[str, Any]:
    email = fields.pop("email", f"{ObjectId()}@example.com")
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "email": email,
        "emailKey": email.lower(),
        "kind": "LEAD",
        "firstName": None,
        "lastName": None,
        "detailsLocked": False,
        "rev": 0,
        "activity": [],
        "activityCount": 0,
        "activityEmbedded": 0,
        "createdAt": EARLIER,
        "updatedAt": EARLIER,
        **fields,
    }
    await database.contacts.insert_one(doc)
    return doc


async def reread(database: Any, contact_id: ObjectId) -> dict[str, Any] | None:
    return await database.contacts.find_one({"_id": contact_id})


async def events(database: Any, shop: str = SHOP) -> list[tuple[str, Any, dict[str, Any]]]:
    stored = await database.events.find({"shopId": shop}, sort=[("_id", 1)]).to_list()
    return [(e["type"], e["contactId"], e["data"]) for e in stored]


async def labels_of(database: Any, shop: str = SHOP) -> dict[str, tuple[str, int]]:
    docs = await database.labels.find({"shopId": shop}).to_list()
    return {d["key"]: (d["name"], d["contactCount"]) for d in docs}


async def label_slots(database: Any, shop: str = SHOP) -> int:
    doc = await database.shops.find_one({"_id": shop})
    return doc["labelCount"]


# -- set_or_unset ------------------------------------------------------------------------


def test_order_times_that_are_none_are_unset_and_everything_else_is_set():
    assert set_or_unset(
        {"firstOrderAt": None, "lastOrderAt": NOW, "activityArchivedAt": None, "phone": None}
    ) == {
        "$set": {"lastOrderAt": NOW, "phone": None},
        "$unset": {"firstOrderAt": "", "activityArchivedAt": ""},
    }
    assert set_or_unset({"lastOrderAt": None}) == {"$set": {}, "$unset": {"lastOrderAt": ""}}


def test_without_an_empty_order_time_there_is_no_unset():
    assert set_or_unset({"firstOrderAt": NOW, "lastOrderAt": NOW, "kind": "CUSTOMER"}) == {
        "$set": {"firstOrderAt": NOW, "lastOrderAt": NOW, "kind": "CUSTOMER"}
    }


# -- check_details ------------------------------------------------------------------------


def test_creating_without_an_email_is_refused_as_required():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(first_name="Ann"), creating=True)
    assert refused(error) == [(("input", "email"), "Email is required.", "REQUIRED")]


def test_creating_with_a_blank_email_is_refused_as_required():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(email="   "), creating=True)
    assert refused(error) == [(("input", "email"), "Email is required.", "REQUIRED")]


def test_an_edit_without_an_email_keeps_it():
    checked = check_details(ContactDetails(first_name="Ann"), creating=False)
    assert checked.set == {"firstName": "Ann"}
    assert checked.email_key is None
    assert checked.labels == []


def test_an_edit_cannot_clear_the_email():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(email=None), creating=False)
    assert refused(error) == [(("input", "email"), "Email is required.", "REQUIRED")]


def test_an_email_is_kept_as_given_with_its_key_lower_cased():
    checked = check_details(ContactDetails(email=" Ann.Lee@Example.COM "), creating=False)
    assert checked.set == {"email": "Ann.Lee@example.com"}
    assert checked.email_key == "ann.lee@example.com"


def test_a_bad_email_is_invalid():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(email="not an address"), creating=True)
    [(field, message, code)] = refused(error)
    assert (field, code) == (("input", "email"), "INVALID")
    assert message.startswith("Email is not valid: ")


def test_names_and_company_are_trimmed_and_stored_under_their_api_names():
    checked = check_details(
        ContactDetails(
            email="ann@example.com", first_name=" Ann ", last_name=" Lee", company="ACME "
        ),
        creating=True,
    )
    assert checked.set == {
        "email": "ann@example.com",
        "firstName": "Ann",
        "lastName": "Lee",
        "company": "ACME",
    }
    assert checked.email_key == "ann@example.com"


def test_none_clears_a_detail_and_unset_leaves_it_out():
    checked = check_details(
        ContactDetails(first_name=None, company="", phone=None, billing_address=None),
        creating=False,
    )
    assert checked.set == {
        "firstName": None,
        "company": None,
        "phone": None,
        "billingAddress": None,
    }


@pytest.mark.parametrize(
    ("name", "key", "label"),
    [
        ("first_name", "firstName", "First name"),
        ("last_name", "lastName", "Last name"),
        ("company", "company", "Company"),
    ],
)
def test_names_and_company_hold_200_characters_and_not_201(name, key, label):
    checked = check_details(ContactDetails(**{name: "a" * 200}), creating=False)
    assert checked.set == {key: "a" * 200}

    with pytest.raises(Refused) as error:
        check_details(ContactDetails(**{name: "a" * 201}), creating=False)
    assert refused(error) == [
        (("input", key), f"{label} is longer than 200 characters.", "TOO_LONG")
    ]


def test_addresses_are_checked_and_stored_under_their_api_names():
    checked = check_details(
        ContactDetails(
            shipping_address={"line1": " Main St 1 ", "countryCode": "de"},
            billing_address={"city": "Bonn"},
        ),
        creating=False,
    )
    assert checked.set == {
        "shippingAddress": {"line1": "Main St 1", "countryCode": "DE"},
        "billingAddress": {"city": "Bonn"},
    }


def test_a_bad_address_is_reported_at_its_own_field():
    with pytest.raises(Refused) as error:
        check_details(
            ContactDetails(
                shipping_address={"countryCode": "D1"}, billing_address={"countryCode": "x"}
            ),
            creating=False,
        )
    message = "Country code must be two letters (ISO 3166-1)."
    assert refused(error) == [
        (("input", "shippingAddress", "countryCode"), message, "INVALID"),
        (("input", "billingAddress", "countryCode"), message, "INVALID"),
    ]


def test_a_national_phone_number_is_read_in_the_shipping_country_first():
    checked = check_details(
        ContactDetails(
            phone="030 1234567",
            shipping_address={"countryCode": "AT"},
            billing_address={"countryCode": "GB"},
        ),
        creating=False,
        stored_region="FR",
    )
    assert checked.set["phone"] == "+43301234567"


def test_then_in_the_billing_country():
    checked = check_details(
        ContactDetails(phone="030 1234567", billing_address={"countryCode": "GB"}),
        creating=False,
        stored_region="FR",
    )
    assert checked.set["phone"] == "+44301234567"


def test_then_in_the_country_of_the_stored_address():
    checked = check_details(
        ContactDetails(phone="030 1234567", shipping_address={"city": "Bonn"}),
        creating=False,
        stored_region="FR",
    )
    assert checked.set == {"phone": "+33301234567", "shippingAddress": {"city": "Bonn"}}


def test_a_national_number_without_any_country_is_invalid():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(phone="030 1234567"), creating=False)
    assert refused(error) == [(("input", "phone"), "Phone number is not valid.", "INVALID")]


def test_an_international_number_needs_no_country():
    checked = check_details(ContactDetails(phone="+49 30 1234567"), creating=False)
    assert checked.set == {"phone": "+49301234567"}


def test_labels_of_a_new_contact_are_distinct_in_the_order_given():
    checked = check_details(
        ContactDetails(email="ann@example.com", labels=[" VIP ", "Newsletter", "vip"]),
        creating=True,
    )
    assert checked.labels == ["VIP", "Newsletter"]
    assert "labels" not in checked.set


def test_no_labels_for_a_new_contact_is_an_empty_list():
    checked = check_details(ContactDetails(email="ann@example.com", labels=None), creating=True)
    assert checked.labels == []


def test_an_edit_refuses_labels_and_points_to_the_label_mutations():
    with pytest.raises(Refused) as error:
        check_details(ContactDetails(labels=["VIP"]), creating=False)
    assert refused(error) == [
        (("input", "labels"), "Labels change with labelsAdd and labelsRemove.", "INVALID")
    ]


def test_an_edit_may_send_labels_as_null():
    checked = check_details(ContactDetails(labels=None, company="ACME"), creating=False)
    assert checked.set == {"company": "ACME"}
    assert checked.labels == []


def test_a_bad_label_of_a_new_contact_is_reported_at_its_index():
    with pytest.raises(Refused) as error:
        check_details(
            ContactDetails(email="ann@example.com", labels=["ok", "x" * 101]), creating=True
        )
    assert refused(error) == [
        (("input", "labels", 1), "A label is at most 100 characters.", "TOO_LONG")
    ]


def test_every_problem_is_reported_at_once():
    with pytest.raises(Refused) as error:
        check_details(
            ContactDetails(
                email="nope",
                first_name="a" * 201,
                company="b" * 201,
                phone="12",
                shipping_address={"countryCode": "12"},
            ),
            creating=True,
        )
    assert [p[0] for p in refused(error)] == [
        ("input", "email"),
        ("input", "firstName"),
        ("input", "company"),
        ("input", "shippingAddress", "countryCode"),
        ("input", "phone"),
    ]


# -- derived fields and new documents ---------------------------------------------------------


def test_derived_fields_hold_the_name_key_search_terms_and_canonical_mailbox():
    doc = {
        "firstName": "Ann",
        "lastName": "Lee-Smith",
        "company": None,
        "email": "Ann.Lee+shop@Gmail.com",
        "emailKey": "ann.lee+shop@gmail.com",
    }
    assert derived_fields(doc) == {
        "nameKey": "ann lee-smith",
        "searchTerms": [
            "ann",
            "ann.lee+shop",
            "ann.lee+shop@gmail.com",
            "com",
            "gmail",
            "gmail.com",
            "lee",
            "lee-smith",
            "shop",
            "smith",
        ],
        "emailCanon": "annlee@gmail.com",
    }


def test_derived_fields_without_an_email_key_have_no_canonical_mailbox():
    assert derived_fields({"firstName": "Ann", "emailKey": None}) == {
        "nameKey": "ann",
        "searchTerms": ["ann"],
    }
    assert derived_fields({"company": "ACME"}) == {"nameKey": "", "searchTerms": ["acme"]}


def test_a_new_contact_holds_every_field_with_its_starting_value():
    first = activity.entry("CONTACT_CREATED", author="Staff", at=EARLIER)
    second = activity.entry("FORM_SUBMITTED", text="Hello", at=NOW)
    doc = new_contact(
        SHOP,
        "Ann@Example.com",
        "ann@example.com",
        "CUSTOMER",
        {"firstName": "Ann", "phone": "+49301234567"},
        NOW,
        labels=["VIP", "Big  Spender"],
        entries=[second, first],
    )
    assert isinstance(doc.pop("_id"), ObjectId)
    assert doc == {
        "shopId": SHOP,
        "email": "Ann@Example.com",
        "emailKey": "ann@example.com",
        "firstName": "Ann",
        "lastName": None,
        "phone": "+49301234567",
        "company": None,
        "shippingAddress": None,
        "billingAddress": None,
        "kind": "CUSTOMER",
        "labels": ["VIP", "Big  Spender"],
        "labelKeys": ["vip", "big spender"],
        "hasAccount": False,
        "detailsLocked": False,
        "consent": {"state": "NOT_SUBSCRIBED", "history": []},
        "orderCount": 0,
        "totalSpent": Decimal128("0"),
        "createdAt": NOW,
        "updatedAt": NOW,
        "rev": 0,
        "activity": [first, second],
        "activityCount": 2,
        "activityEmbedded": 2,
        "nameKey": "ann",
        "searchTerms": ["ann", "com", "example", "example.com", "ann@example.com"],
        "emailCanon": "ann@example.com",
    } | {"searchTerms": sorted(["ann", "com", "example", "example.com", "ann@example.com"])}


def test_a_new_contact_without_labels_or_entries_has_empty_ones():
    doc = new_contact(SHOP, "bob@example.com", "bob@example.com", "LEAD", {}, NOW)
    assert (doc["labels"], doc["labelKeys"]) == ([], [])
    assert (doc["activity"], doc["activityCount"], doc["activityEmbedded"]) == ([], 0, 0)
    assert doc["nameKey"] == "bob@example.com"
    assert "firstOrderAt" not in doc and "lastOrderAt" not in doc
    assert doc["_id"] != new_contact(SHOP, "b@x.com", "b@x.com", "LEAD", {}, NOW)["_id"]


def test_entries_at_the_same_time_keep_their_id_order():
    a = {"_id": ObjectId("0" * 23 + "1"), "kind": "NOTE", "at": NOW}
    b = {"_id": ObjectId("0" * 23 + "2"), "kind": "NOTE", "at": NOW}
    doc = new_contact(SHOP, "c@x.com", "c@x.com", "LEAD", {}, NOW, entries=[b, a])
    assert doc["activity"] == [a, b]


# -- create_contact -----------------------------------------------------------------------------


async def test_a_contact_made_by_hand_is_a_lead_with_its_creation_logged(database, monkeypatch):
    await ensure_shop(database, SHOP)
    # The clock moves on while the contact is built: its creation entry still
    # carries the very time the contact was created at.
    monkeypatch.setattr(activity, "now", lambda: NOW + dt.timedelta(milliseconds=1))
    doc = await create_contact(
        database,
        SHOP,
        ContactDetails(email="Ann@Example.com", first_name="Ann", labels=["VIP"]),
        "Staff Person",
    )
    stored = await reread(database, doc["_id"])
    assert stored == doc
    assert stored["shopId"] == SHOP
    assert stored["kind"] == "LEAD"
    assert (stored["email"], stored["emailKey"]) == ("Ann@example.com", "ann@example.com")
    assert (stored["firstName"], stored["labels"], stored["labelKeys"]) == ("Ann", ["VIP"], ["vip"])
    assert (stored["createdAt"], stored["updatedAt"]) == (NOW, NOW)
    assert [(e["kind"], e["author"], e["at"]) for e in stored["activity"]] == [
        ("CONTACT_CREATED", "Staff Person", NOW)
    ]
    assert (stored["activityCount"], stored["activityEmbedded"]) == (1, 1)
    assert await labels_of(database) == {"vip": ("VIP", 1)}
    assert await label_slots(database) == 1
    assert await contact_totals(database, SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}
    [(kind, contact_id, data)] = await events(database)
    assert (kind, contact_id, data["id"], data["email"]) == (
        "CONTACT_CREATED",
        doc["_id"],
        contact_gid(doc["_id"]),
        "Ann@example.com",
    )


async def test_a_label_the_shop_has_keeps_the_shop_s_spelling_and_counts_one_more(database):
    await ensure_shop(database, SHOP)
    first = await create_contact(
        database, SHOP, ContactDetails(email="a@example.com", labels=["VIP"]), "Staff"
    )
    second = await create_contact(
        database, SHOP, ContactDetails(email="b@example.com", labels=["vip", "New"]), "Staff"
    )
    assert first["labels"] == ["VIP"]
    assert second["labels"] == ["VIP", "New"]
    assert (await reread(database, second["_id"]))["labels"] == ["VIP", "New"]
    assert await labels_of(database) == {"vip": ("VIP", 2), "new": ("New", 1)}
    assert await label_slots(database) == 2


async def test_an_email_in_use_in_any_case_is_taken_and_nothing_is_stored(database):
    await ensure_shop(database, SHOP)
    await create_contact(database, SHOP, ContactDetails(email="ann@example.com"), "Staff")

    with pytest.raises(Refused) as error:
        await create_contact(database, SHOP, ContactDetails(email="ANN@example.com"), "Staff")
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]
    assert await database.contacts.count_documents({}) == 1
    assert await contact_totals(database, SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}
    assert [e[0] for e in await events(database)] == ["CONTACT_CREATED"]


async def test_an_email_in_use_reserves_none_of_the_new_contact_s_labels(database):
    await ensure_shop(database, SHOP)
    await create_contact(database, SHOP, ContactDetails(email="ann@example.com"), "Staff")

    with pytest.raises(Refused) as error:
        await create_contact(
            database, SHOP, ContactDetails(email="Ann@example.com", labels=["VIP"]), "Staff"
        )
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]
    assert await labels_of(database) == {}
    assert await label_slots(database) == 0


async def test_the_same_email_in_another_shop_is_no_obstacle(database):
    await ensure_shop(database, SHOP)
    await ensure_shop(database, OTHER)
    await create_contact(database, OTHER, ContactDetails(email="ann@example.com"), "Other")
    doc = await create_contact(
        database, SHOP, ContactDetails(email="ann@example.com", labels=["VIP"]), "Staff"
    )
    assert doc["labels"] == ["VIP"]
    assert await database.contacts.count_documents({"shopId": SHOP}) == 1
    assert await contact_totals(database, SHOP) == {"total": 1, "CUSTOMER": 0, "LEAD": 1}


async def test_an_email_taken_while_labels_are_reserved_gives_the_new_labels_back(
    database, monkeypatch
):
    await ensure_shop(database, SHOP)
    await create_contact(
        database, SHOP, ContactDetails(email="old@example.com", labels=["Old"]), "S"
    )
    reserve = contacts.reserve_labels

    async def reserve_while_another_create_lands(db: Any, shop_id: str, names: list[str]) -> Any:
        created = await reserve(db, shop_id, names)
        await stored_contact(database, email="ann@example.com")
        return created

    monkeypatch.setattr(contacts, "reserve_labels", reserve_while_another_create_lands)
    with pytest.raises(Refused) as error:
        await create_contact(
            database, SHOP, ContactDetails(email="ann@example.com", labels=["old", "New"]), "S"
        )
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]
    # The label that was new is gone again; the one that existed stays as it was.
    assert await labels_of(database) == {"old": ("Old", 1)}
    assert await label_slots(database) == 1


async def test_a_full_shop_refuses_a_new_label_where_the_input_holds_labels(database):
    await ensure_shop(database, SHOP)
    await database.labels.insert_many(
        [
            {"shopId": SHOP, "key": f"l{n}", "name": f"L{n}", "contactCount": 1}
            for n in range(SHOP_LABEL_LIMIT)
        ]
    )
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": SHOP_LABEL_LIMIT}})

    with pytest.raises(Refused) as error:
        await create_contact(
            database, SHOP, ContactDetails(email="ann@example.com", labels=["Fresh"]), "Staff"
        )
    assert refused(error) == [
        (("input", "labels"), "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED")
    ]
    assert await database.contacts.count_documents({}) == 0

    # A label the full shop already has still fits.
    doc = await create_contact(
        database, SHOP, ContactDetails(email="ann@example.com", labels=["l7"]), "Staff"
    )
    assert doc["labels"] == ["L7"]
    assert (await labels_of(database))["l7"] == ("L7", 2)


async def test_a_taken_email_is_reported_before_the_labels_of_a_full_shop(database):
    await ensure_shop(database, SHOP)
    await stored_contact(database, email="ann@example.com")
    await database.labels.insert_many(
        [
            {"shopId": SHOP, "key": f"l{n}", "name": f"L{n}", "contactCount": 1}
            for n in range(SHOP_LABEL_LIMIT)
        ]
    )
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": SHOP_LABEL_LIMIT}})

    with pytest.raises(Refused) as error:
        await create_contact(
            database, SHOP, ContactDetails(email="Ann@example.com", labels=["Fresh"]), "Staff"
        )
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]


async def test_a_create_without_labels_leaves_the_email_to_the_unique_index(database, commands):
    await ensure_shop(database, SHOP)
    commands.reset()
    await create_contact(database, SHOP, ContactDetails(email="ann@example.com"), "Staff")
    assert commands.on("contacts") == ["insert"]


async def test_a_create_that_fails_after_its_insert_leaves_nothing(database, monkeypatch):
    await ensure_shop(database, SHOP)
    record = contacts.contacts_created

    async def record_then_fail(*args: Any, **kwargs: Any) -> None:
        await record(*args, **kwargs)
        raise Boom

    monkeypatch.setattr(contacts, "contacts_created", record_then_fail)
    with pytest.raises(Boom):
        await create_contact(database, SHOP, ContactDetails(email="ann@example.com"), "Staff")
    assert await database.contacts.count_documents({}) == 0
    assert await events(database) == []
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 0, "LEAD": 0}


async def test_a_refused_create_writes_nothing(database):
    await ensure_shop(database, SHOP)
    with pytest.raises(Refused):
        await create_contact(
            database, SHOP, ContactDetails(email="ann@example.com", labels=["x" * 101]), "Staff"
        )
    assert await database.contacts.count_documents({}) == 0
    assert await labels_of(database) == {}


# -- update_details -----------------------------------------------------------------------------


async def test_an_update_sets_the_changes_with_derived_fields_and_a_new_revision(database):
    contact = await stored_contact(
        database, email="ann@example.com", firstName="Ann", lastName="Lee", rev=4
    )
    doc = await update_details(database, SHOP, contact["_id"], {"lastName": "Smith"})
    stored = await reread(database, contact["_id"])
    assert stored["lastName"] == "Smith"
    assert stored["nameKey"] == "ann smith"
    assert stored["searchTerms"] == [
        "ann",
        "ann@example.com",
        "com",
        "example",
        "example.com",
        "smith",
    ]
    assert stored["emailCanon"] == "ann@example.com"
    assert stored["rev"] == 5
    assert stored["updatedAt"] == NOW
    # What comes back is the contact as written, without its activity log.
    assert doc == {k: v for k, v in stored.items() if k != "activity"}


async def test_an_update_of_a_contact_stored_without_a_revision_starts_counting(database):
    contact = await stored_contact(database)
    await database.contacts.update_one({"_id": contact["_id"]}, {"$unset": {"rev": ""}})
    doc = await update_details(database, SHOP, contact["_id"], {"company": "ACME"})
    assert (doc["company"], doc["rev"]) == ("ACME", 1)


async def test_an_update_carries_the_caller_s_own_operators(database):
    contact = await stored_contact(database)
    log = activity.push([activity.entry("DETAILS_UPDATED", author="Staff")])
    doc = await update_details(database, SHOP, contact["_id"], {"company": "ACME"}, log)
    stored = await reread(database, contact["_id"])
    assert [(e["kind"], e["author"]) for e in stored["activity"]] == [("DETAILS_UPDATED", "Staff")]
    assert (doc["activityCount"], doc["activityEmbedded"], doc["rev"]) == (1, 1, 1)


async def test_an_update_of_a_missing_or_foreign_contact_is_none(database):
    foreign = await stored_contact(database, shop=OTHER, firstName="Zoe")
    assert await update_details(database, SHOP, ObjectId(), {"firstName": "Ann"}) is None
    assert await update_details(database, SHOP, foreign["_id"], {"firstName": "Ann"}) is None
    assert (await reread(database, foreign["_id"]))["firstName"] == "Zoe"


async def test_an_update_to_another_contact_s_email_is_taken(database):
    await stored_contact(database, email="bob@example.com")
    ann = await stored_contact(database, email="ann@example.com")
    with pytest.raises(Refused) as error:
        await update_details(
            database,
            SHOP,
            ann["_id"],
            {"email": "BOB@example.com", "emailKey": "bob@example.com"},
        )
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]
    assert (await reread(database, ann["_id"]))["emailKey"] == "ann@example.com"


async def test_only_if_unlocked_leaves_a_locked_contact_alone(database):
    locked = await stored_contact(database, firstName="Ann", detailsLocked=True)
    open_ = await stored_contact(database, firstName="Bob")
    assert (
        await update_details(
            database, SHOP, locked["_id"], {"firstName": "X"}, only_if_unlocked=True
        )
        is None
    )
    assert (await reread(database, locked["_id"]))["firstName"] == "Ann"
    doc = await update_details(
        database, SHOP, open_["_id"], {"firstName": "Rob"}, only_if_unlocked=True
    )
    assert (doc["firstName"], doc["rev"]) == ("Rob", 1)
    # Without the flag a lock is no obstacle (a manual edit).
    doc = await update_details(database, SHOP, locked["_id"], {"firstName": "Anne"})
    assert doc["firstName"] == "Anne"


async def test_a_lock_that_lands_between_the_read_and_the_write_is_respected(database, monkeypatch):
    contact = await stored_contact(database, firstName="Ann")
    find_one_and_update = type(database.contacts).find_one_and_update
    tries = 0

    async def locked_meanwhile(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries == 1:
            await database.contacts.update_one(
                {"_id": contact["_id"]}, {"$set": {"detailsLocked": True}, "$inc": {"rev": 1}}
            )
        return await find_one_and_update(self, *args, **kwargs)

    monkeypatch.setattr(type(database.contacts), "find_one_and_update", locked_meanwhile)
    doc = await update_details(
        database, SHOP, contact["_id"], {"firstName": "X"}, only_if_unlocked=True
    )
    assert doc is None
    assert tries == 2
    stored = await reread(database, contact["_id"])
    assert (stored["firstName"], stored["rev"]) == ("Ann", 1)


async def test_a_write_between_the_read_and_the_write_is_kept_and_the_update_retried(
    database, monkeypatch
):
    # Locked, and updated without only_if_unlocked: a manual edit retries.
    contact = await stored_contact(
        database, email="ann@example.com", firstName="Ann", detailsLocked=True
    )
    original = contacts.derived_fields
    seen: list[Any] = []

    def derived_while_another_write_lands(doc: dict[str, Any]) -> dict[str, Any]:
        seen.append(doc.get("lastName"))
        return original(doc)

    find_one_and_update = type(database.contacts).find_one_and_update
    raced = False

    async def racing_write(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal raced
        if not raced:
            raced = True
            await database.contacts.update_one(
                {"_id": contact["_id"]}, {"$set": {"lastName": "Lee"}, "$inc": {"rev": 1}}
            )
        return await find_one_and_update(self, *args, **kwargs)

    monkeypatch.setattr(contacts, "derived_fields", derived_while_another_write_lands)
    monkeypatch.setattr(type(database.contacts), "find_one_and_update", racing_write)
    doc = await update_details(database, SHOP, contact["_id"], {"firstName": "Anne"})
    assert seen == [None, "Lee"]
    assert (doc["firstName"], doc["lastName"], doc["nameKey"], doc["rev"]) == (
        "Anne",
        "Lee",
        "anne lee",
        2,
    )


async def test_an_update_that_keeps_losing_the_race_gives_up_after_20_tries(database, monkeypatch):
    contact = await stored_contact(database, firstName="Ann")
    find_one = type(database.contacts).find_one_and_update
    tries = 0

    async def always_raced(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        await database.contacts.update_one({"_id": contact["_id"]}, {"$inc": {"rev": 1}})
        return await find_one(self, *args, **kwargs)

    pauses: list[float] = []

    async def recorded_sleep(delay: float) -> None:
        pauses.append(delay)
        await asyncio.sleep(0)

    monkeypatch.setattr(type(database.contacts), "find_one_and_update", always_raced)
    monkeypatch.setattr(contacts, "asyncio", SimpleNamespace(sleep=recorded_sleep))
    with pytest.raises(RuntimeError, match="^contact kept changing while it was being updated$"):
        await update_details(database, SHOP, contact["_id"], {"firstName": "X"})
    assert tries == 20
    # Retries only yield to other tasks: a contended request fails fast, never after seconds of waiting.
    assert pauses == [0] * 20
    assert (await reread(database, contact["_id"]))["firstName"] == "Ann"


async def test_updates_in_one_transaction_see_each_other(database):
    contact = await stored_contact(database, email="ann@example.com")

    async def work(session: Any) -> Any:
        await update_details(database, SHOP, contact["_id"], {"firstName": "Ann"}, session=session)
        return await update_details(
            database, SHOP, contact["_id"], {"lastName": "Lee"}, session=session
        )

    doc = await activity.in_transaction(database, work)
    assert (doc["nameKey"], doc["rev"]) == ("ann lee", 2)


async def test_an_update_in_a_transaction_that_fails_leaves_the_contact_as_it_was(database):
    contact = await stored_contact(database, firstName="Ann")

    async def work(session: Any) -> None:
        await update_details(database, SHOP, contact["_id"], {"firstName": "X"}, session=session)
        raise Boom

    with pytest.raises(Boom):
        await activity.in_transaction(database, work)
    stored = await reread(database, contact["_id"])
    assert (stored["firstName"], stored["rev"]) == ("Ann", 0)


# -- edit_contact -------------------------------------------------------------------------------


async def test_an_edit_changes_the_details_locks_them_and_logs_who_did_it(database):
    await stored_contact(database, email="bob@example.com", firstName="Bob", company="ACME")
    contact = await stored_contact(
        database, email="ann@example.com", firstName="Ann", lastName="Lee", phone=None
    )
    doc = await edit_contact(
        database,
        SHOP,
        contact["_id"],
        ContactDetails(email="Ann.Lee@Example.com", last_name="Smith", company="ACME"),
        "Staff Person",
    )
    stored = await reread(database, contact["_id"])
    assert (stored["email"], stored["emailKey"]) == ("Ann.Lee@example.com", "ann.lee@example.com")
    assert (stored["firstName"], stored["lastName"], stored["company"]) == ("Ann", "Smith", "ACME")
    assert stored["detailsLocked"] is True
    assert (stored["nameKey"], stored["updatedAt"], stored["rev"]) == ("ann smith", NOW, 1)
    assert [(e["kind"], e["author"], e["at"]) for e in stored["activity"]] == [
        ("DETAILS_UPDATED", "Staff Person", NOW)
    ]
    assert doc == {k: v for k, v in stored.items() if k != "activity"}
    assert await events(database) == [
        (
            "CONTACT_UPDATED",
            contact["_id"],
            {
                "id": contact_gid(contact["_id"]),
                "email": "Ann.Lee@example.com",
                "lastName": "Smith",
                "company": "ACME",
                "detailsLocked": True,
            },
        )
    ]


async def test_an_edit_that_changes_nothing_visible_still_locks_and_logs(database):
    contact = await stored_contact(database, firstName="Ann", detailsLocked=True)
    await edit_contact(database, SHOP, contact["_id"], ContactDetails(first_name="Ann"), "Staff")
    stored = await reread(database, contact["_id"])
    assert [e["kind"] for e in stored["activity"]] == ["DETAILS_UPDATED"]
    assert await events(database) == []


async def test_a_national_phone_number_is_read_in_the_stored_shipping_country(database):
    contact = await stored_contact(
        database, shippingAddress={"countryCode": "AT"}, billingAddress={"countryCode": "GB"}
    )
    doc = await edit_contact(
        database, SHOP, contact["_id"], ContactDetails(phone="030 1234567"), "Staff"
    )
    assert doc["phone"] == "+43301234567"


async def test_else_in_the_stored_billing_country(database):
    contact = await stored_contact(
        database, shippingAddress={"city": "Bonn"}, billingAddress={"countryCode": "GB"}
    )
    doc = await edit_contact(
        database, SHOP, contact["_id"], ContactDetails(phone="030 1234567"), "Staff"
    )
    assert doc["phone"] == "+44301234567"


async def test_an_address_sent_with_the_phone_wins_over_the_stored_one(database):
    contact = await stored_contact(database, shippingAddress={"countryCode": "AT"})
    doc = await edit_contact(
        database,
        SHOP,
        contact["_id"],
        ContactDetails(phone="030 1234567", billing_address={"countryCode": "FR"}),
        "Staff",
    )
    assert doc["phone"] == "+33301234567"


async def test_a_national_number_for_a_contact_without_a_country_is_refused(database):
    contact = await stored_contact(database, phone="+49301234567")
    with pytest.raises(Refused) as error:
        await edit_contact(
            database, SHOP, contact["_id"], ContactDetails(phone="030 1234567"), "Staff"
        )
    assert refused(error) == [(("input", "phone"), "Phone number is not valid.", "INVALID")]
    stored = await reread(database, contact["_id"])
    assert (stored["phone"], stored["detailsLocked"], stored["activity"]) == (
        "+49301234567",
        False,
        [],
    )


async def test_the_country_of_another_shop_s_contact_is_never_read(database):
    foreign = await stored_contact(database, shop=OTHER, shippingAddress={"countryCode": "DE"})
    with pytest.raises(Refused) as error:
        await edit_contact(database, SHOP, foreign["_id"], ContactDetails(phone="030 1234567"), "S")
    assert refused(error) == [(("input", "phone"), "Phone number is not valid.", "INVALID")]


async def test_clearing_the_phone_needs_no_country(database):
    contact = await stored_contact(database, phone="+49301234567")
    doc = await edit_contact(database, SHOP, contact["_id"], ContactDetails(phone=None), "Staff")
    assert doc["phone"] is None
    assert (await events(database))[0][2] == {
        "id": contact_gid(contact["_id"]),
        "phone": None,
        "detailsLocked": True,
    }


async def test_editing_a_missing_or_foreign_contact_is_not_found(database):
    foreign = await stored_contact(database, shop=OTHER, firstName="Zoe")
    for contact_id in (ObjectId(), foreign["_id"]):
        with pytest.raises(Refused) as error:
            await edit_contact(
                database,
                SHOP,
                contact_id,
                ContactDetails(first_name="Ann", phone="+4930123456"),
                "S",
            )
        assert refused(error) == [(("id",), "Contact not found.", "NOT_FOUND")]
    stored = await reread(database, foreign["_id"])
    assert (stored["firstName"], stored["detailsLocked"]) == ("Zoe", False)
    assert await events(database) == []
    assert await events(database, OTHER) == []


async def test_an_edit_to_an_email_in_use_is_taken_and_changes_nothing(database):
    await stored_contact(database, email="bob@example.com")
    ann = await stored_contact(database, email="ann@example.com")
    with pytest.raises(Refused) as error:
        await edit_contact(database, SHOP, ann["_id"], ContactDetails(email="Bob@example.com"), "S")
    assert refused(error) == [
        (("input", "email"), "Another contact already has this email.", "TAKEN")
    ]
    stored = await reread(database, ann["_id"])
    assert (stored["emailKey"], stored["detailsLocked"], stored["activity"]) == (
        "ann@example.com",
        False,
        [],
    )
    assert await events(database) == []


async def test_an_edit_that_fails_after_its_event_leaves_nothing(database, monkeypatch):
    contact = await stored_contact(database, firstName="Ann")
    record = contacts.contact_updated

    async def record_then_fail(*args: Any, **kwargs: Any) -> None:
        await record(*args, **kwargs)
        raise Boom

    monkeypatch.setattr(contacts, "contact_updated", record_then_fail)
    with pytest.raises(Boom):
        await edit_contact(database, SHOP, contact["_id"], ContactDetails(first_name="X"), "S")
    stored = await reread(database, contact["_id"])
    assert (stored["firstName"], stored["detailsLocked"], stored["activity"]) == ("Ann", False, [])
    assert await events(database) == []


async def test_an_edit_reports_changes_against_the_contact_its_own_transaction_read(
    database, monkeypatch
):
    # Another write lands after the edit read the contact: the edit runs
    # again, and its event names only what the edit itself changed.
    contact = await stored_contact(database, firstName="Ann", company="Old")
    update = contacts.update_details
    tries = 0

    async def another_write_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries == 1:
            await database.contacts.update_one(
                {"_id": contact["_id"]}, {"$set": {"lastName": "Meanwhile"}, "$inc": {"rev": 1}}
            )
        return await update(*args, **kwargs)

    monkeypatch.setattr(contacts, "update_details", another_write_first)
    doc = await edit_contact(database, SHOP, contact["_id"], ContactDetails(company="New"), "S")
    assert tries == 2
    assert (doc["lastName"], doc["company"], doc["rev"]) == ("Meanwhile", "New", 2)
    [(_, _, data)] = await events(database)
    assert data == {"id": contact_gid(contact["_id"]), "company": "New", "detailsLocked": True}


async def test_an_edit_that_fills_the_log_moves_the_oldest_entries_to_the_archive(database):
    old = [
        activity.entry("NOTE_ADDED", text=f"n{n}", at=EARLIER + dt.timedelta(minutes=n))
        for n in range(activity.SPILL_AT - 1)
    ]
    contact = await stored_contact(
        database, activity=old, activityCount=len(old), activityEmbedded=len(old)
    )
    await edit_contact(database, SHOP, contact["_id"], ContactDetails(company="ACME"), "Staff")
    stored = await reread(database, contact["_id"])
    assert stored["activityEmbedded"] == activity.SPILL_AT - activity.BUCKET_SIZE
    [bucket] = await database.activity_archive.find({"contactId": contact["_id"]}).to_list()
    assert bucket["count"] == activity.BUCKET_SIZE


# -- contact_updated ----------------------------------------------------------------------------


async def test_the_update_event_names_every_field_that_changed_and_only_those(database):
    contact_id = ObjectId()
    before = {
        "_id": contact_id,
        "email": "a@x.com",
        "firstName": "A",
        "lastName": "B",
        "phone": "+1",
        "company": "C",
        "shippingAddress": {"city": "X"},
        "billingAddress": {"city": "Y"},
        "detailsLocked": False,
        "kind": "LEAD",
    }
    after = {
        "_id": contact_id,
        "email": "b@x.com",
        "firstName": "A2",
        "lastName": "B2",
        "phone": "+2",
        "company": "C2",
        "shippingAddress": {"city": "X2"},
        "billingAddress": {"city": "Y2"},
        "detailsLocked": True,
        "kind": "CUSTOMER",
    }

    async def work(session: Any) -> None:
        await contact_updated(database, SHOP, before, after, session=session)

    await activity.in_transaction(database, work)
    assert await events(database) == [
        (
            "CONTACT_UPDATED",
            contact_id,
            {
                "id": contact_gid(contact_id),
                **{k: v for k, v in after.items() if k not in ("_id", "kind")},
            },
        )
    ]


async def test_empty_and_missing_values_are_no_change(database):
    contact_id = ObjectId()
    before = {"_id": contact_id, "firstName": "", "company": None, "shippingAddress": {}}
    after = {"_id": contact_id, "firstName": None, "shippingAddress": None, "detailsLocked": False}

    async def work(session: Any) -> None:
        await contact_updated(database, SHOP, before, after, session=session)

    await activity.in_transaction(database, work)
    assert await events(database) == []


# -- unlock_contact -----------------------------------------------------------------------------


async def test_unlocking_clears_the_lock_and_reports_it(database):
    contact = await stored_contact(database, detailsLocked=True, firstName="Ann")
    doc = await unlock_contact(database, SHOP, contact["_id"])
    stored = await reread(database, contact["_id"])
    assert (stored["detailsLocked"], stored["updatedAt"], stored["firstName"]) == (
        False,
        NOW,
        "Ann",
    )
    assert doc == {k: v for k, v in stored.items() if k != "activity"}
    assert await events(database) == [
        (
            "CONTACT_UPDATED",
            contact["_id"],
            {"id": contact_gid(contact["_id"]), "detailsLocked": False},
        )
    ]


async def test_unlocking_an_unlocked_contact_reports_nothing(database):
    contact = await stored_contact(database, detailsLocked=False)
    doc = await unlock_contact(database, SHOP, contact["_id"])
    assert (doc["detailsLocked"], doc["updatedAt"]) == (False, NOW)
    assert await events(database) == []


async def test_unlocking_a_missing_or_foreign_contact_is_not_found(database):
    foreign = await stored_contact(database, shop=OTHER, detailsLocked=True)
    for contact_id in (ObjectId(), foreign["_id"]):
        with pytest.raises(Refused) as error:
            await unlock_contact(database, SHOP, contact_id)
        assert refused(error) == [(("id",), "Contact not found.", "NOT_FOUND")]
    assert (await reread(database, foreign["_id"]))["detailsLocked"] is True


async def test_an_unlock_that_fails_after_its_event_leaves_the_lock(database, monkeypatch):
    contact = await stored_contact(database, detailsLocked=True)
    record = contacts.contact_updated

    async def record_then_fail(*args: Any, **kwargs: Any) -> None:
        await record(*args, **kwargs)
        raise Boom

    monkeypatch.setattr(contacts, "contact_updated", record_then_fail)
    with pytest.raises(Boom):
        await unlock_contact(database, SHOP, contact["_id"])
    stored = await reread(database, contact["_id"])
    assert (stored["detailsLocked"], stored["updatedAt"]) == (True, EARLIER)
    assert await events(database) == []


# -- delete_contacts ----------------------------------------------------------------------------


async def stored_order(database: Any, contact_id: ObjectId, shop: str = SHOP) -> ObjectId:
    result = await database.orders.insert_one(
        {"shopId": shop, "externalId": str(ObjectId()), "contactId": contact_id}
    )
    return result.inserted_id


async def contact_of_order(database: Any, order_id: ObjectId) -> Any:
    return (await database.orders.find_one({"_id": order_id}))["contactId"]


async def test_deleting_removes_the_contacts_and_reports_the_unknown_ones(database):
    ann = await stored_contact(database, kind="CUSTOMER", email="ann@example.com")
    bob = await stored_contact(database, kind="LEAD", email="bob@example.com")
    kept = await stored_contact(database)
    unknown = ObjectId()

    deleted, problems = await delete_contacts(
        database, SHOP, [(0, bob["_id"]), (1, None), (2, unknown), (3, ann["_id"]), (4, bob["_id"])]
    )
    assert deleted == [bob["_id"], ann["_id"]]
    assert problems == [
        Problem(("ids", 1), "Contact not found.", "NOT_FOUND"),
        Problem(("ids", 2), "Contact not found.", "NOT_FOUND"),
    ]
    assert [d["_id"] for d in await database.contacts.find({}).to_list()] == [kept["_id"]]
    assert await contact_totals(database, SHOP) == {"total": -2, "CUSTOMER": -1, "LEAD": -1}
    assert sorted(await events(database), key=lambda e: e[2]["email"]) == [
        (
            "CONTACT_DELETED",
            ann["_id"],
            {"id": contact_gid(ann["_id"]), "email": "ann@example.com"},
        ),
        (
            "CONTACT_DELETED",
            bob["_id"],
            {"id": contact_gid(bob["_id"]), "email": "bob@example.com"},
        ),
    ]


async def test_deleting_only_unknown_ids_writes_nothing(database, commands):
    kept = await stored_contact(database)
    commands.reset()
    deleted, problems = await delete_contacts(database, SHOP, [(0, ObjectId()), (1, None)])
    assert deleted == []
    assert [p.field for p in problems] == [("ids", 0), ("ids", 1)]
    assert await reread(database, kept["_id"]) is not None
    assert await events(database) == []
    assert commands.on("contacts") == ["find", "find"]  # the delete's look and this test's reread
    assert commands.on("orders") == []


async def test_deleting_no_ids_at_all_asks_nothing(database, commands):
    commands.reset()
    assert await delete_contacts(database, SHOP, [(0, None)]) == (
        [],
        [Problem(("ids", 0), "Contact not found.", "NOT_FOUND")],
    )
    assert commands.on("contacts") == []


async def test_another_shop_s_contact_is_not_found_and_stays(database):
    foreign = await stored_contact(database, shop=OTHER)
    order = await stored_order(database, foreign["_id"], shop=OTHER)
    deleted, problems = await delete_contacts(database, SHOP, [(0, foreign["_id"])])
    assert (deleted, [p.field for p in problems]) == ([], [("ids", 0)])
    assert await reread(database, foreign["_id"]) is not None
    assert await contact_of_order(database, order) == foreign["_id"]


async def test_deleting_lowers_each_label_count_by_the_contacts_that_had_it(database):
    await database.labels.insert_many(
        [
            {"shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": 3},
            {"shopId": SHOP, "key": "new", "name": "New", "contactCount": 1},
            {"shopId": OTHER, "key": "vip", "name": "VIP", "contactCount": 2},
        ]
    )
    ann = await stored_contact(database, labels=["VIP", "New"], labelKeys=["vip", "new"])
    bob = await stored_contact(database, labels=["VIP"], labelKeys=["vip"])
    old = await stored_contact(database)  # stored before labels existed: no labelKeys
    await database.contacts.update_one({"_id": old["_id"]}, {"$unset": {"labelKeys": ""}})

    deleted, _ = await delete_contacts(
        database, SHOP, [(0, ann["_id"]), (1, bob["_id"]), (2, old["_id"])]
    )
    assert deleted == [ann["_id"], bob["_id"], old["_id"]]
    assert await labels_of(database) == {"vip": ("VIP", 1), "new": ("New", 0)}
    assert await labels_of(database, OTHER) == {"vip": ("VIP", 2)}


async def test_deleting_contacts_without_labels_touches_no_label(database):
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": 3}
    )
    ann = await stored_contact(database, labels=[], labelKeys=[])
    deleted, problems = await delete_contacts(database, SHOP, [(0, ann["_id"])])
    assert (deleted, problems) == ([ann["_id"]], [])
    assert await labels_of(database) == {"vip": ("VIP", 3)}


async def test_orders_and_subscriptions_stay_unlinked_and_the_archive_goes(database):
    ann = await stored_contact(database)
    bob = await stored_contact(database)
    foreign = await stored_contact(database, shop=OTHER)
    ann_order = await stored_order(database, ann["_id"])
    bob_order = await stored_order(database, bob["_id"])
    foreign_order = await stored_order(database, foreign["_id"], shop=OTHER)
    foreign_order_same_id = await stored_order(database, ann["_id"], shop=OTHER)
    contracts = await database.subscription_contracts.insert_many(
        [
            {"shopId": SHOP, "contactId": ann["_id"], "externalId": "s1"},
            {"shopId": SHOP, "contactId": bob["_id"], "externalId": "s2"},
        ]
    )
    await database.activity_archive.insert_many(
        [
            activity.bucket_of(SHOP, ann["_id"], [activity.entry("NOTE_ADDED", at=EARLIER)]),
            activity.bucket_of(SHOP, bob["_id"], [activity.entry("NOTE_ADDED", at=EARLIER)]),
            activity.bucket_of(OTHER, ann["_id"], [activity.entry("NOTE_ADDED", at=EARLIER)]),
        ]
    )

    deleted, _ = await delete_contacts(database, SHOP, [(0, ann["_id"])])
    assert deleted == [ann["_id"]]
    assert await database.orders.count_documents({"_id": ann_order}) == 1
    assert await contact_of_order(database, ann_order) is None
    assert await contact_of_order(database, bob_order) == bob["_id"]
    assert await contact_of_order(database, foreign_order) == foreign["_id"]
    assert await contact_of_order(database, foreign_order_same_id) == ann["_id"]
    linked = await database.subscription_contracts.find({}, sort=[("externalId", 1)]).to_list()
    assert [(c["_id"], c["contactId"]) for c in linked] == [
        (contracts.inserted_ids[0], None),
        (contracts.inserted_ids[1], bob["_id"]),
    ]
    left = await database.activity_archive.find({}).to_list()
    assert sorted((b["shopId"], b["contactId"]) for b in left) == sorted(
        [(SHOP, bob["_id"]), (OTHER, ann["_id"])]
    )


async def test_a_delete_that_fails_after_its_writes_leaves_everything(database, monkeypatch):
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": 1}
    )
    ann = await stored_contact(database, labels=["VIP"], labelKeys=["vip"])
    order = await stored_order(database, ann["_id"])
    await database.subscription_contracts.insert_one(
        {"shopId": SHOP, "contactId": ann["_id"], "externalId": "s1"}
    )
    await database.activity_archive.insert_one(
        activity.bucket_of(SHOP, ann["_id"], [activity.entry("NOTE_ADDED", at=EARLIER)])
    )
    record = contacts.contacts_deleted

    async def record_then_fail(*args: Any, **kwargs: Any) -> None:
        await record(*args, **kwargs)
        raise Boom

    monkeypatch.setattr(contacts, "contacts_deleted", record_then_fail)
    with pytest.raises(Boom):
        await delete_contacts(database, SHOP, [(0, ann["_id"])])
    assert await reread(database, ann["_id"]) is not None
    assert await labels_of(database) == {"vip": ("VIP", 1)}
    assert await contact_of_order(database, order) == ann["_id"]
    assert (await database.subscription_contracts.find_one({}))["contactId"] == ann["_id"]
    assert await database.activity_archive.count_documents({}) == 1
    assert await events(database) == []
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 0, "LEAD": 0}


async def test_a_label_given_while_a_delete_runs_is_counted_off_too(database, monkeypatch):
    # The label lands between the delete's read of its contacts and its first
    # write: the transaction starts over and drops the new label's count too.
    await database.labels.insert_many(
        [
            {"shopId": SHOP, "key": "vip", "name": "VIP", "contactCount": 1},
            {"shopId": SHOP, "key": "new", "name": "New", "contactCount": 0},
        ]
    )
    ann = await stored_contact(database, labels=["VIP"], labelKeys=["vip"])
    delete_many = type(database.contacts).delete_many
    raced: list[bool] = []

    async def labelled_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            await database.contacts.update_one(
                {"_id": ann["_id"]}, {"$push": {"labels": "New", "labelKeys": "new"}}
            )
            await database.labels.update_one({"key": "new"}, {"$inc": {"contactCount": 1}})
        return await delete_many(self, *args, **kwargs)

    monkeypatch.setattr(type(database.contacts), "delete_many", labelled_first)
    deleted, problems = await delete_contacts(database, SHOP, [(0, ann["_id"])])

    assert (deleted, problems) == ([ann["_id"]], [])
    assert await labels_of(database) == {"vip": ("VIP", 0), "new": ("New", 0)}


async def test_a_large_delete_reads_its_contacts_in_one_reply(database, commands):
    many = [
        {
            "_id": ObjectId(),
            "shopId": SHOP,
            "emailKey": f"c{n}@x.com",
            "kind": "LEAD",
            "labelKeys": [],
        }
        for n in range(120)
    ]
    await database.contacts.insert_many(many)
    commands.reset()
    deleted, problems = await delete_contacts(
        database, SHOP, [(n, doc["_id"]) for n, doc in enumerate(many)]
    )
    assert (len(deleted), problems) == (120, [])
    assert "getMore" not in commands.names
    assert await database.contacts.count_documents({}) == 0


async def test_a_small_delete_reads_its_contacts_in_one_reply(database, commands):
    docs = [await stored_contact(database) for _ in range(3)]
    commands.reset()
    deleted, _ = await delete_contacts(database, SHOP, [(n, d["_id"]) for n, d in enumerate(docs)])
    assert deleted == [d["_id"] for d in docs]
    assert "getMore" not in commands.names
