"""Recording a reported subscription to the edge: the contract, its contact, its log and the order of reports.

tests/test_subscription_contracts.py tells the story through
`subscriptionContractRecord`; these call the recording directly, with a
fixed clock and chosen times, for the exact rules: what a first report
stores and makes, the words each change logs, which report is newer, that
an ended contract stays ended, the counts a contact carries, the events and
counters beside the write, and that a failure anywhere leaves nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from resolvers import activity, events, subscription_record
from resolvers.activity import SPILL_AT
from resolvers.contact_counts import contact_totals
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.events import contact_gid
from resolvers.subscription_input import SubscriptionData, check_subscription
from resolvers.subscription_record import (
    change_entries,
    contract_doc,
    describe,
    record_subscription,
    started_entries,
    subscription_summary,
    summary,
)

SHOP = "acme"
OTHER = "other-shop"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2126, 2, 1, 9, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=2)  # within the clock drift a report may have


class Stop(Exception):
    """The transaction fails after its writes, as if the process stopped before the commit."""


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subscription_record, "utc_now", lambda: NOW)
    # The log's own clock runs a second late: every entry must carry the report's time.
    monkeypatch.setattr(activity, "now", lambda: NOW + dt.timedelta(seconds=1))
    monkeypatch.setattr(events, "now", lambda: NOW)


def day(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def report(
    external_id: str = "SUB-1", email: str = "Ann@Example.com", **fields: Any
) -> SubscriptionData:
    """A tea club at 12.50 EUR a month, started on day 0."""
    fields.setdefault("status", "ACTIVE")
    fields.setdefault("title", "Tea club")
    fields.setdefault("price", Decimal("12.50"))
    fields.setdefault("currency_code", "EUR")
    fields.setdefault("interval", "MONTH")
    fields.setdefault("started_at", day(0))
    return SubscriptionData(external_id=external_id, email=email, **fields)


async def record(database: Any, data: SubscriptionData, **kwargs: Any) -> Any:
    kwargs.setdefault("shop_currency", "EUR")
    return await record_subscription(database, SHOP, data, **kwargs)


def contract(**fields: Any) -> dict[str, Any]:
    """A stored contract as the functions that describe it read it."""
    return {
        "_id": ObjectId("0000000000000000000000aa"),
        "kind": "PRODUCT",
        "status": "ACTIVE",
        "title": "Tea club",
        "quantity": 1,
        "price": Decimal128("12.50"),
        "currency": "EUR",
        "interval": "MONTH",
        "intervalCount": 1,
        "startedAt": day(0),
        "nextBillingAt": None,
        "endedAt": None,
        **fields,
    }


def said(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["kind"], e.get("text"), e["at"], e.get("subscriptionContractId")) for e in entries]


async def stored_contact(database: Any, kind: str = "LEAD", **fields: Any) -> dict[str, Any]:
    entries = fields.pop("entries", None)
    doc = new_contact(
        SHOP, "Ann@example.com", "ann@example.com", kind, {}, day(-30), entries=entries
    )
    doc.update(fields)
    await database.contacts.insert_one(doc)
    return doc


async def contract_of(database: Any, external_id: str = "SUB-1") -> dict[str, Any]:
    doc = await database.subscription_contracts.find_one(
        {"shopId": SHOP, "externalId": external_id}
    )
    assert doc is not None
    return doc


async def contact_by_id(database: Any, contact_id: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": contact_id})
    assert doc is not None
    return doc


async def event_list(database: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    stored = await database.events.find({"shopId": SHOP}, sort=[("_id", 1)]).to_list()
    return [(e["type"], e["contactId"], e["data"]) for e in stored]


async def everything(database: Any) -> tuple[list[Any], ...]:
    """Every document a report's transaction may touch, for 'nothing changed' checks."""
    names = (
        "shops",
        "subscription_contracts",
        "contacts",
        "events",
        "contact_counts",
        "activity_archive",
    )
    return tuple([await database.db[name].find({}, sort=[("_id", 1)]).to_list() for name in names])


def without_log(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("activity", "searchTerms")}


# -- what the log says ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({}, "Tea club (12.50 EUR every month)"),
        ({"quantity": 2}, "Tea club (2 × 12.50 EUR every month)"),
        ({"interval": "WEEK", "intervalCount": 3}, "Tea club (12.50 EUR every 3 weeks)"),
        ({"interval": "DAY", "price": Decimal("7.5")}, "Tea club (7.5 EUR every day)"),
        ({"currency": None}, "Tea club (12.50 every month)"),
    ],
)
def test_a_contract_is_described_by_title_amount_and_interval(fields, text):
    assert describe(contract(**fields)) == text


def test_a_contract_without_a_currency_is_described_by_its_amount_alone():
    doc = contract()
    del doc["currency"]
    assert describe(doc) == "Tea club (12.50 every month)"


@pytest.mark.parametrize(
    ("contracts", "fields"),
    [
        ([], (0, False)),
        ([("PRODUCT", "ACTIVE")], (1, False)),
        ([("PRODUCT", "PAUSED")], (1, False)),
        ([("PRODUCT", "PAST_DUE")], (1, False)),
        ([("PRODUCT", "CANCELED")], (0, False)),
        ([("PRODUCT", "EXPIRED")], (0, False)),
        ([("MEMBERSHIP", "ACTIVE")], (1, True)),
        ([("MEMBERSHIP", "PAUSED")], (1, True)),
        ([("MEMBERSHIP", "PAST_DUE")], (1, False)),
        ([("MEMBERSHIP", "CANCELED")], (0, False)),
        ([("PRODUCT", "ACTIVE"), ("PRODUCT", "PAST_DUE"), ("MEMBERSHIP", "EXPIRED")], (2, False)),
        ([("PRODUCT", "CANCELED"), ("MEMBERSHIP", "PAUSED")], (1, True)),
    ],
)
def test_a_contact_counts_its_current_contracts_and_is_a_member_by_an_active_or_paused_membership(
    contracts, fields
):
    docs = [{"kind": kind, "status": status} for kind, status in contracts]
    assert summary(docs) == {"activeSubscriptionCount": fields[0], "isMember": fields[1]}


STARTED = "Tea club (12.50 EUR every month)"


@pytest.mark.parametrize(
    ("fields", "entries"),
    [
        ({}, [("SUBSCRIPTION_STARTED", STARTED, day(0))]),
        ({"kind": "MEMBERSHIP"}, [("SUBSCRIPTION_STARTED", "Membership: " + STARTED, day(0))]),
        ({"status": "PAUSED"}, [("SUBSCRIPTION_STARTED", STARTED + ", paused", day(0))]),
        ({"status": "PAST_DUE"}, [("SUBSCRIPTION_STARTED", STARTED + ", past due", day(0))]),
        (
            {"kind": "MEMBERSHIP", "status": "PAUSED"},
            [("SUBSCRIPTION_STARTED", "Membership: " + STARTED + ", paused", day(0))],
        ),
        # A start reported a little ahead of our clock is logged when we learned of it.
        ({"startedAt": LATER}, [("SUBSCRIPTION_STARTED", STARTED, NOW)]),
        (
            {"status": "CANCELED", "endedAt": day(4)},
            [
                ("SUBSCRIPTION_STARTED", STARTED, day(0)),
                ("SUBSCRIPTION_ENDED", "Tea club: canceled", day(4)),
            ],
        ),
        (
            {"status": "EXPIRED", "endedAt": None},
            [
                ("SUBSCRIPTION_STARTED", STARTED, day(0)),
                ("SUBSCRIPTION_ENDED", "Tea club: expired", NOW),
            ],
        ),
        (
            {"status": "CANCELED", "endedAt": LATER},
            [
                ("SUBSCRIPTION_STARTED", STARTED, day(0)),
                ("SUBSCRIPTION_ENDED", "Tea club: canceled", NOW),
            ],
        ),
    ],
)
def test_a_new_contract_logs_its_start_and_when_first_reported_over_its_end(fields, entries):
    doc = contract(**fields)
    assert said(started_entries(doc, NOW)) == [(*e, doc["_id"]) for e in entries]


@pytest.mark.parametrize(
    ("before", "after", "text"),
    [
        ({}, {"status": "PAUSED"}, "Tea club: paused"),
        ({}, {"status": "PAST_DUE"}, "Tea club: past due"),
        ({"status": "PAUSED"}, {"status": "ACTIVE"}, "Tea club: resumed"),
        ({"status": "PAST_DUE"}, {"status": "ACTIVE"}, "Tea club: active again"),
        ({}, {"price": Decimal128("14.00")}, "Tea club: price 12.50 EUR → 14.00 EUR"),
        ({}, {"quantity": 3}, "Tea club: quantity 1 → 3"),
        ({}, {"interval": "YEAR"}, "Tea club: every month → every year"),
        ({}, {"intervalCount": 2}, "Tea club: every month → every 2 months"),
        ({}, {"title": "Green tea club"}, "Green tea club: renamed from Tea club"),
        ({}, {"kind": "MEMBERSHIP"}, "Tea club: now a membership"),
        ({"kind": "MEMBERSHIP"}, {"kind": "PRODUCT"}, "Tea club: now a product"),
        # Over already: a pure description of what the report says (recording keeps it ended).
        ({"status": "CANCELED"}, {"status": "EXPIRED"}, "Tea club: expired"),
        (
            {"status": "PAUSED"},
            {
                "status": "ACTIVE",
                "price": Decimal128("14.00"),
                "quantity": 2,
                "intervalCount": 3,
                "title": "Green tea club",
                "kind": "MEMBERSHIP",
            },
            "Green tea club: resumed; price 12.50 EUR → 14.00 EUR; quantity 1 → 2;"
            " every month → every 3 months; renamed from Tea club; now a membership",
        ),
    ],
)
def test_a_change_is_one_entry_that_says_what_changed(before, after, text):
    old, new = contract(**before), contract(**{**before, **after})

    assert said(change_entries(old, new, NOW)) == [("SUBSCRIPTION_CHANGED", text, NOW, new["_id"])]


def test_a_change_of_currency_alone_is_shown_with_the_price():
    # Not logged by itself (the currency is the shop's), but named with a price change.
    old, new = contract(), contract(status="PAUSED", currency="USD")

    assert said(change_entries(old, new, NOW))[0][1] == (
        "Tea club: paused; price 12.50 EUR → 12.50 USD"
    )


@pytest.mark.parametrize(
    "after",
    [
        {},
        {"price": Decimal128("12.5")},  # the same amount written another way
        {"nextBillingAt": day(30)},
        {"startedAt": day(1)},
        {"currency": "USD"},
    ],
)
def test_what_is_not_logged_makes_no_entry(after):
    assert change_entries(contract(), contract(**after), NOW) == []


@pytest.mark.parametrize(
    ("status", "ended", "entry"),
    [
        ("CANCELED", day(4), ("SUBSCRIPTION_ENDED", "Tea club: canceled", day(4))),
        ("EXPIRED", None, ("SUBSCRIPTION_ENDED", "Tea club: expired", NOW)),
        ("CANCELED", LATER, ("SUBSCRIPTION_ENDED", "Tea club: canceled", NOW)),
    ],
)
def test_an_end_is_one_ended_entry_at_the_end_or_when_we_learned_of_it(status, ended, entry):
    old, new = contract(), contract(status=status, endedAt=ended)

    assert said(change_entries(old, new, NOW)) == [(*entry, new["_id"])]


def test_an_end_with_a_new_title_says_the_new_title():
    old, new = contract(), contract(status="CANCELED", title="Green tea", endedAt=day(4))

    assert said(change_entries(old, new, NOW)) == [
        ("SUBSCRIPTION_ENDED", "Green tea: canceled", day(4), new["_id"])
    ]


# -- what a report stores ---------------------------------------------------------------


def checked(**fields: Any) -> Any:
    return check_subscription(report(**fields), NOW)


def test_a_new_contract_stores_the_report_as_stated():
    contact_id = ObjectId()
    doc = contract_doc(
        SHOP,
        checked(
            email="Ann@Example.com",
            first_name="Ann",
            last_name="Lee",
            kind="MEMBERSHIP",
            status="PAUSED",
            quantity=2,
            interval="WEEK",
            interval_count=2,
            next_billing_at=day(14),
            updated_at=day(1),
        ),
        contact_id,
        NOW,
    )

    assert isinstance(doc.pop("_id"), ObjectId)
    assert doc == {
        "shopId": SHOP,
        "externalId": "SUB-1",
        "contactId": contact_id,
        "email": "Ann@example.com",
        "emailKey": "ann@example.com",
        "firstName": "Ann",
        "lastName": "Lee",
        "kind": "MEMBERSHIP",
        "status": "PAUSED",
        "title": "Tea club",
        "quantity": 2,
        "price": Decimal128("12.50"),
        "currency": "EUR",
        "interval": "WEEK",
        "intervalCount": 2,
        "startedAt": day(0),
        "nextBillingAt": day(14),
        "endedAt": None,
        "cancelRequestedAt": None,
        "shopUpdatedAt": day(1),
        "createdAt": NOW,
        "updatedAt": NOW,
    }


@pytest.mark.parametrize(
    ("fields", "ended"),
    [
        ({"status": "CANCELED", "ended_at": day(3), "updated_at": day(5)}, day(3)),
        ({"status": "CANCELED", "updated_at": day(5)}, day(5)),
        ({"status": "EXPIRED"}, NOW),
        ({"status": "EXPIRED", "updated_at": LATER}, NOW),
        ({"status": "ACTIVE", "updated_at": day(5)}, None),
        ({"status": "PAST_DUE"}, None),
    ],
)
def test_an_end_without_a_time_ended_when_the_shop_reported_it(fields, ended):
    assert contract_doc(SHOP, checked(**fields), ObjectId(), NOW)["endedAt"] == ended


# -- a first report -------------------------------------------------------------------


async def test_a_first_report_of_a_new_e_mail_makes_a_customer_with_its_log_and_counts(database):
    recorded = await record(database, report(first_name="Ann", last_name="Lee"))

    stored = await contract_of(database)
    assert recorded.created is True
    assert recorded.contract == stored
    assert (stored["createdAt"], stored["updatedAt"], stored["status"]) == (NOW, NOW, "ACTIVE")
    contact = await contact_by_id(database, stored["contactId"])
    assert recorded.contact == without_log(contact)
    assert recorded.logged is recorded.contact
    assert (contact["kind"], contact["email"], contact["emailKey"]) == (
        "CUSTOMER",
        "Ann@example.com",
        "ann@example.com",
    )
    assert (contact["firstName"], contact["lastName"], contact["nameKey"]) == (
        "Ann",
        "Lee",
        "ann lee",
    )
    assert (contact["activeSubscriptionCount"], contact["isMember"]) == (1, False)
    assert (contact["activityCount"], contact["activityEmbedded"]) == (1, 1)
    assert (contact["createdAt"], contact["updatedAt"]) == (NOW, NOW)
    assert said(contact["activity"]) == [("SUBSCRIPTION_STARTED", STARTED, day(0), stored["_id"])]
    assert await event_list(database) == [
        (
            "CONTACT_CREATED",
            contact["_id"],
            {
                "id": contact_gid(contact["_id"]),
                "email": "Ann@example.com",
                "kind": "CUSTOMER",
                "firstName": "Ann",
                "lastName": "Lee",
                "hasAccount": False,
                "createdAt": NOW,
            },
        )
    ]
    assert await contact_totals(database, SHOP) == {"total": 1, "CUSTOMER": 1, "LEAD": 0}


async def test_a_first_membership_makes_a_member(database):
    recorded = await record(database, report(kind="MEMBERSHIP"))

    contact = await contact_by_id(database, recorded.contract["contactId"])
    assert (contact["activeSubscriptionCount"], contact["isMember"]) == (1, True)


async def test_a_first_report_over_makes_a_customer_with_no_current_contract(database):
    recorded = await record(database, report(status="CANCELED", ended_at=day(2)))

    contact = await contact_by_id(database, recorded.contract["contactId"])
    assert (contact["kind"], contact["activeSubscriptionCount"], contact["isMember"]) == (
        "CUSTOMER",
        0,
        False,
    )
    assert said(contact["activity"]) == [
        ("SUBSCRIPTION_STARTED", STARTED, day(0), recorded.contract["_id"]),
        ("SUBSCRIPTION_ENDED", "Tea club: canceled", day(2), recorded.contract["_id"]),
    ]


async def test_a_lead_s_first_contract_makes_a_customer_with_its_names_filled(database):
    lead = await stored_contact(database, "LEAD")

    recorded = await record(database, report(first_name="Ann", last_name="Lee"))

    assert recorded.created is True
    assert recorded.contact is None
    assert recorded.contract == await contract_of(database)
    assert recorded.contract["contactId"] == lead["_id"]
    contact = await contact_by_id(database, lead["_id"])
    assert recorded.logged == {"_id": lead["_id"], "activityEmbedded": 2}
    assert (contact["kind"], contact["firstName"], contact["lastName"]) == (
        "CUSTOMER",
        "Ann",
        "Lee",
    )
    assert (contact["nameKey"], contact["rev"], contact["updatedAt"]) == ("ann lee", 1, NOW)
    assert "ann" in contact["searchTerms"]
    # A contact without the field is not a member: false is not written.
    assert (contact["activeSubscriptionCount"], "isMember" in contact) == (1, False)
    assert (contact["activityCount"], contact["activityEmbedded"]) == (2, 2)
    assert sorted(said(contact["activity"]), key=lambda e: e[2]) == [
        ("SUBSCRIPTION_STARTED", STARTED, day(0), recorded.contract["_id"]),
        ("CONVERTED_TO_CUSTOMER", "Tea club", NOW, None),
    ]
    assert await event_list(database) == [
        (
            "CONTACT_UPDATED",
            lead["_id"],
            {
                "id": contact_gid(lead["_id"]),
                "kind": "CUSTOMER",
                "activeSubscriptionCount": 1,
                "firstName": "Ann",
                "lastName": "Lee",
            },
        )
    ]
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 1, "LEAD": -1}


async def test_a_customer_keeps_its_names_and_kind_and_only_its_counts_change(database):
    customer = await stored_contact(
        database, "CUSTOMER", firstName="Anne", lastName="Li", rev=4, activityEmbedded=7
    )

    recorded = await record(database, report(kind="MEMBERSHIP", first_name="Ann", last_name="Lee"))

    contact = await contact_by_id(database, customer["_id"])
    assert recorded.logged == {"_id": customer["_id"], "activityEmbedded": 8}
    assert (contact["kind"], contact["firstName"], contact["lastName"], contact["rev"]) == (
        "CUSTOMER",
        "Anne",
        "Li",
        4,
    )
    assert contact["nameKey"] == customer["nameKey"]
    assert (contact["activeSubscriptionCount"], contact["isMember"]) == (1, True)
    assert said(contact["activity"]) == [
        ("SUBSCRIPTION_STARTED", "Membership: " + STARTED, day(0), recorded.contract["_id"])
    ]
    assert await event_list(database) == [
        (
            "CONTACT_UPDATED",
            customer["_id"],
            {"id": contact_gid(customer["_id"]), "activeSubscriptionCount": 1, "isMember": True},
        )
    ]
    assert await contact_totals(database, SHOP) == {"total": 0, "CUSTOMER": 0, "LEAD": 0}


async def test_a_contract_fills_a_blank_name_and_leaves_a_name_it_does_not_know(database):
    customer = await stored_contact(database, "CUSTOMER", firstName="", lastName=None)

    await record(database, report(first_name="Ann"))

    contact = await contact_by_id(database, customer["_id"])
    assert (contact["firstName"], contact["lastName"], contact["rev"]) == ("Ann", None, 1)


async def test_a_contact_whose_details_are_locked_keeps_its_blank_names(database):
    customer = await stored_contact(database, "CUSTOMER", detailsLocked=True)

    await record(database, report(first_name="Ann", last_name="Lee"))

    contact = await contact_by_id(database, customer["_id"])
    assert (contact["firstName"], contact["lastName"], contact["rev"]) == (None, None, 0)
    assert contact["activeSubscriptionCount"] == 1


async def test_a_log_at_its_bound_moves_its_oldest_entries_to_the_archive(database):
    log = [
        activity.entry("NOTE", text=f"note {i}", at=day(-20) + dt.timedelta(minutes=i))
        for i in range(SPILL_AT - 1)
    ]
    customer = await stored_contact(database, "CUSTOMER", entries=log)

    recorded = await record(database, report())

    assert recorded.logged == {"_id": customer["_id"], "activityEmbedded": SPILL_AT}
    contact = await contact_by_id(database, customer["_id"])
    assert (contact["activityEmbedded"], contact["activityArchived"]) == (100, 100)
    assert await database.activity_archive.count_documents({"contactId": customer["_id"]}) == 1


async def test_a_log_one_under_its_bound_stays_embedded(database):
    log = [
        activity.entry("NOTE", text=f"note {i}", at=day(-20) + dt.timedelta(minutes=i))
        for i in range(SPILL_AT - 2)
    ]
    customer = await stored_contact(database, "CUSTOMER", entries=log)

    await record(database, report())

    contact = await contact_by_id(database, customer["_id"])
    assert contact["activityEmbedded"] == SPILL_AT - 1
    assert await database.activity_archive.count_documents({}) == 0


async def test_a_contact_without_a_log_counter_is_counted_from_zero(database):
    customer = await stored_contact(database, "CUSTOMER")
    await database.contacts.update_one(
        {"_id": customer["_id"]}, {"$unset": {"activityEmbedded": 1}}
    )

    recorded = await record(database, report())

    assert recorded.logged == {"_id": customer["_id"], "activityEmbedded": 1}


# -- later reports ----------------------------------------------------------------------


async def test_a_replay_writes_nothing_and_logs_nothing(database, commands):
    await record(database, report(updated_at=day(1), first_name="Ann"))
    before = await everything(database)
    commands.reset()

    again = await record(database, report(updated_at=day(1), first_name="Ann"))

    assert "update" not in commands.on("subscription_contracts")
    assert commands.on("contacts") == []
    assert again.created is False
    assert (again.contact, again.logged) == (None, None)
    assert again.contract == await contract_of(database)
    assert await everything(database) == before


async def test_a_replay_without_times_writes_nothing(database, commands):
    await record(database, report())
    before = await everything(database)
    commands.reset()

    again = await record(database, report(price=Decimal("12.5")))  # the same amount

    assert "update" not in commands.on("subscription_contracts")
    assert again.contract == before[1][0]
    assert await everything(database) == before


async def test_a_report_older_than_the_one_applied_changes_nothing(database):
    await record(database, report(updated_at=day(2)))
    before = await everything(database)

    older = await record(database, report(status="CANCELED", updated_at=day(1)))

    assert older.created is False
    assert (older.contact, older.logged) == (None, None)
    assert older.contract == before[1][0]
    assert await everything(database) == before


async def test_a_report_as_new_as_the_one_applied_is_applied(database):
    await record(database, report(updated_at=day(2)))

    same_time = await record(database, report(status="PAUSED", updated_at=day(2)))

    stored = await contract_of(database)
    assert same_time.contract == stored
    assert (stored["status"], stored["shopUpdatedAt"], stored["updatedAt"]) == (
        "PAUSED",
        day(2),
        NOW,
    )


async def test_a_newer_report_that_changes_nothing_stores_only_its_time(database):
    first = await record(database, report(updated_at=day(2)))
    contact_before = await contact_by_id(database, first.contract["contactId"])
    events_before = await event_list(database)

    newer = await record(database, report(updated_at=day(3)))

    stored = await contract_of(database)
    assert stored == {**first.contract, "shopUpdatedAt": day(3)}
    assert newer.contract == stored
    assert (newer.created, newer.contact, newer.logged) == (False, None, None)
    assert await contact_by_id(database, first.contract["contactId"]) == contact_before
    assert await event_list(database) == events_before


async def test_a_first_time_is_stored_for_a_contract_reported_without_one(database):
    first = await record(database, report())

    await record(database, report(updated_at=day(1)))

    assert await contract_of(database) == {**first.contract, "shopUpdatedAt": day(1)}


async def test_a_report_without_a_time_is_applied_and_keeps_the_time_applied(database):
    await record(database, report(updated_at=day(2)))

    untimed = await record(database, report(status="PAUSED"))

    stored = await contract_of(database)
    assert untimed.contract == stored
    assert (stored["status"], stored["shopUpdatedAt"]) == ("PAUSED", day(2))


async def test_a_renewal_is_stored_without_an_entry_or_a_contact_write(database):
    first = await record(database, report(next_billing_at=day(30), updated_at=day(1)))
    contact_before = await contact_by_id(database, first.contract["contactId"])
    events_before = await event_list(database)

    renewed = await record(
        database, report(next_billing_at=day(60), started_at=day(-1), updated_at=day(2))
    )

    stored = await contract_of(database)
    assert stored == {
        **first.contract,
        "nextBillingAt": day(60),
        "startedAt": day(-1),
        "shopUpdatedAt": day(2),
        "updatedAt": NOW,
    }
    assert (renewed.contract, renewed.created, renewed.contact, renewed.logged) == (
        stored,
        False,
        None,
        None,
    )
    assert await contact_by_id(database, first.contract["contactId"]) == contact_before
    assert await event_list(database) == events_before


async def test_a_renewal_that_names_the_buyer_fills_the_contact_s_blank_name(database):
    first = await record(database, report(next_billing_at=day(30), updated_at=day(1)))
    contact_id = first.contract["contactId"]

    renewed = await record(
        database, report(next_billing_at=day(60), first_name="Ann", updated_at=day(2))
    )

    contact = await contact_by_id(database, contact_id)
    assert (contact["firstName"], contact["rev"], contact["updatedAt"]) == ("Ann", 1, NOW)
    assert contact["activityCount"] == 1  # no entry for a renewal
    assert renewed.logged == {"_id": contact_id, "activityEmbedded": 1}
    assert (await event_list(database))[-1] == (
        "CONTACT_UPDATED",
        contact_id,
        {"id": contact_gid(contact_id), "firstName": "Ann"},
    )


async def test_a_change_is_stored_and_logged_once_on_the_contact(database):
    customer = await stored_contact(database, "CUSTOMER", firstName="Ann", activityEmbedded=0)
    first = await record(database, report(updated_at=day(1)))

    changed = await record(database, report(price=Decimal("14.00"), quantity=2, updated_at=day(2)))

    stored = await contract_of(database)
    assert stored == {
        **first.contract,
        "price": Decimal128("14.00"),
        "quantity": 2,
        "shopUpdatedAt": day(2),
        "updatedAt": NOW,
    }
    assert (changed.contract, changed.created, changed.contact) == (stored, False, None)
    assert changed.logged == {"_id": customer["_id"], "activityEmbedded": 2}
    contact = await contact_by_id(database, customer["_id"])
    assert said(contact["activity"])[-1] == (
        "SUBSCRIPTION_CHANGED",
        "Tea club: price 12.50 EUR → 14.00 EUR; quantity 1 → 2",
        NOW,
        stored["_id"],
    )
    assert (contact["activityCount"], contact["updatedAt"]) == (2, NOW)
    # The counts did not move: no event names them again.
    assert [e[0] for e in await event_list(database)] == ["CONTACT_UPDATED"]


async def test_an_end_logs_it_and_the_counts_follow(database):
    first = await record(database, report(kind="MEMBERSHIP", updated_at=day(1)))

    ended = await record(
        database, report(kind="MEMBERSHIP", status="CANCELED", ended_at=day(5), updated_at=day(5))
    )

    contact_id = first.contract["contactId"]
    contact = await contact_by_id(database, contact_id)
    assert (contact["activeSubscriptionCount"], contact["isMember"]) == (0, False)
    assert said(contact["activity"])[-1] == (
        "SUBSCRIPTION_ENDED",
        "Tea club: canceled",
        day(5),
        first.contract["_id"],
    )
    assert ended.logged == {"_id": contact_id, "activityEmbedded": 2}
    assert (await event_list(database))[-1] == (
        "CONTACT_UPDATED",
        contact_id,
        {"id": contact_gid(contact_id), "activeSubscriptionCount": 0, "isMember": False},
    )


async def test_an_ended_contract_stays_ended_whatever_is_reported_later(database):
    await record(database, report(status="CANCELED", ended_at=day(5), updated_at=day(5)))
    before = await contract_of(database)
    contact_before = await contact_by_id(database, before["contactId"])

    revived = await record(database, report(price=Decimal("14.00"), updated_at=day(6)))

    assert await contract_of(database) == {**before, "shopUpdatedAt": day(6)}
    assert revived.logged is None
    assert await contact_by_id(database, before["contactId"]) == contact_before


async def test_an_ended_contract_takes_a_corrected_end_time_without_an_entry(database):
    await record(database, report(status="CANCELED", ended_at=day(5), updated_at=day(5)))
    before = await contract_of(database)
    contact_before = await contact_by_id(database, before["contactId"])

    corrected = await record(
        database, report(status="EXPIRED", ended_at=day(4), title="Other", updated_at=day(6))
    )

    stored = await contract_of(database)
    assert stored == {**before, "endedAt": day(4), "shopUpdatedAt": day(6), "updatedAt": NOW}
    assert corrected.contract == stored
    assert await contact_by_id(database, before["contactId"]) == contact_before


async def test_an_ended_contract_reported_ended_without_a_time_keeps_its_end(database):
    await record(database, report(status="CANCELED", ended_at=day(5), updated_at=day(5)))
    before = await contract_of(database)

    await record(database, report(status="CANCELED", updated_at=day(6)))

    assert await contract_of(database) == {**before, "shopUpdatedAt": day(6)}


async def test_a_legacy_contact_without_counts_is_not_written_when_they_are_zero(database):
    customer = await stored_contact(database, "CUSTOMER", firstName="Ann")
    await record(database, report(status="CANCELED", ended_at=day(5), updated_at=day(5)))
    await database.contacts.update_one(
        {"_id": customer["_id"]}, {"$unset": {"activeSubscriptionCount": 1, "isMember": 1}}
    )
    contact_before = await contact_by_id(database, customer["_id"])

    recorded = await record(database, report(status="CANCELED", ended_at=day(4), updated_at=day(6)))

    assert recorded.contract["endedAt"] == day(4)
    assert recorded.logged is None
    assert await contact_by_id(database, customer["_id"]) == contact_before


async def test_contracts_of_one_contact_count_together(database):
    first = await record(database, report("SUB-1"))
    await record(database, report("SUB-2", kind="MEMBERSHIP", status="PAUSED"))
    await record(database, report("SUB-3", status="EXPIRED"))

    contact = await contact_by_id(database, first.contract["contactId"])
    assert (contact["activeSubscriptionCount"], contact["isMember"]) == (2, True)
    assert await subscription_summary(database, SHOP, [first.contract["contactId"]]) == {
        "activeSubscriptionCount": 2,
        "isMember": True,
    }


async def test_the_summary_of_several_contacts_takes_all_their_contracts(database):
    ann = await record(database, report("SUB-1", "ann@example.com"))
    bob = await record(database, report("SUB-2", "bob@example.com", kind="MEMBERSHIP"))
    await record(database, report("SUB-3", "cat@example.com"))
    await record_subscription(
        database, OTHER, report("SUB-4", "ann@example.com"), shop_currency="EUR"
    )
    ids = [ann.contract["contactId"], bob.contract["contactId"]]

    assert await subscription_summary(database, SHOP, ids) == {
        "activeSubscriptionCount": 2,
        "isMember": True,
    }
    assert await subscription_summary(database, SHOP, ids[1:]) == {
        "activeSubscriptionCount": 1,
        "isMember": True,
    }
    assert await subscription_summary(database, OTHER, ids[:1]) == {
        "activeSubscriptionCount": 0,
        "isMember": False,
    }


# -- a deleted contact ---------------------------------------------------------------


async def test_a_change_lands_on_the_contract_s_own_contact_among_others(database):
    bob = new_contact(SHOP, "bob@example.com", "bob@example.com", "LEAD", {}, day(-40))
    await database.contacts.insert_one(bob)
    first = await record(database, report(updated_at=day(1)))

    await record(database, report(status="PAUSED", updated_at=day(2)))

    ann = await contact_by_id(database, first.contract["contactId"])
    assert said(ann["activity"])[-1][:2] == ("SUBSCRIPTION_CHANGED", "Tea club: paused")
    assert await contact_by_id(database, bob["_id"]) == bob


async def test_a_change_of_a_contract_whose_contact_was_deleted_makes_the_person_again(database):
    first = await record(database, report(updated_at=day(1), first_name="Ann"))
    await database.contacts.delete_many({})

    again = await record(database, report(status="PAUSED", updated_at=day(2), first_name="Ann"))

    stored = await contract_of(database)
    assert stored["contactId"] not in (None, first.contract["contactId"])
    assert again.contract == stored
    assert (stored["status"], stored["updatedAt"]) == ("PAUSED", NOW)
    contact = await contact_by_id(database, stored["contactId"])
    assert again.created is False
    assert again.contact == without_log(contact)
    assert again.logged is again.contact
    assert contact["shopId"] == SHOP
    assert (contact["kind"], contact["firstName"], contact["activeSubscriptionCount"]) == (
        "CUSTOMER",
        "Ann",
        1,
    )
    assert said(contact["activity"]) == [
        ("SUBSCRIPTION_STARTED", STARTED + ", paused", day(0), stored["_id"])
    ]


async def test_a_change_of_an_unlinked_contract_lands_on_the_person_with_its_e_mail(database):
    await record(database, report(updated_at=day(1)))
    await database.contacts.delete_many({})
    await database.subscription_contracts.update_many({}, {"$set": {"contactId": None}})
    lead = await stored_contact(database, "LEAD", firstName="Ann")

    again = await record(database, report(status="PAUSED", updated_at=day(2)))

    stored = await contract_of(database)
    assert stored["contactId"] == lead["_id"]
    assert (again.contract, again.contact) == (stored, None)
    contact = await contact_by_id(database, lead["_id"])
    assert (contact["kind"], contact["activeSubscriptionCount"]) == ("CUSTOMER", 1)
    assert said(contact["activity"])[0][:2] == ("SUBSCRIPTION_CHANGED", "Tea club: paused")


async def test_a_newer_replay_of_a_contract_whose_contact_was_deleted_makes_no_one(database):
    first = await record(database, report(updated_at=day(1)))
    await database.contacts.delete_many({})

    await record(database, report(updated_at=day(2)))

    assert await contract_of(database) == {**first.contract, "shopUpdatedAt": day(2)}
    assert await database.contacts.count_documents({}) == 0


# -- shops, currency, input -------------------------------------------------------------


async def test_another_shop_s_contract_and_contact_are_not_this_shop_s(database):
    theirs = await record_subscription(
        database, OTHER, report(first_name="Other"), shop_currency="EUR"
    )
    their_contact = await database.contacts.find_one({"shopId": OTHER})
    their_contract = await database.subscription_contracts.find_one({"shopId": OTHER})

    mine = await record(database, report(first_name="Ann", status="PAUSED"))

    assert mine.created is True
    assert mine.contract["contactId"] != theirs.contract["contactId"]
    contact = await contact_by_id(database, mine.contract["contactId"])
    assert (contact["shopId"], contact["firstName"]) == (SHOP, "Ann")
    assert await database.contacts.find_one({"shopId": OTHER}) == their_contact
    assert await database.subscription_contracts.find_one({"shopId": OTHER}) == their_contract


async def test_a_shop_without_a_currency_takes_the_report_s(database):
    await database.shops.insert_one({"_id": SHOP, "currency": None})

    await record(database, report(currency_code="USD"), shop_currency=None)

    assert (await database.shops.find_one({"_id": SHOP}))["currency"] == "USD"
    assert (await contract_of(database))["currency"] == "USD"


async def test_a_report_in_another_currency_is_refused_and_stores_nothing(database):
    await database.shops.insert_one({"_id": SHOP, "currency": "EUR"})
    before = await everything(database)

    with pytest.raises(Refused) as refused:
        await record(database, report(currency_code="USD"), shop_currency=None)

    assert [(p.field, p.message, p.code) for p in refused.value.problems] == [
        (("input", "currencyCode"), "This shop records orders in EUR, not USD.", "INVALID")
    ]
    assert await everything(database) == before


async def test_a_report_is_checked_against_the_clock(database):
    with pytest.raises(Refused) as refused:
        await record(database, report(started_at=NOW + dt.timedelta(minutes=6)))

    assert [(p.field, p.message) for p in refused.value.problems] == [
        (("input", "startedAt"), "A subscription cannot start in the future.")
    ]
    await record(database, report(started_at=LATER))
    assert (await contract_of(database))["startedAt"] == LATER


# -- the transaction --------------------------------------------------------------------


async def in_one_transaction(database: Any, *reports: SubscriptionData) -> list[Any]:
    """The reports recorded one after another in a single transaction, after Ann is inserted in it."""

    async def work(session: Any) -> list[Any]:
        ann = new_contact(SHOP, "Ann@example.com", "ann@example.com", "LEAD", {}, day(-30))
        await database.contacts.insert_one(ann, session=session)
        return [
            await subscription_record._record_once(
                database, SHOP, check_subscription(r, NOW), NOW, session
            )
            for r in reports
        ]

    return await activity.in_transaction(database, work)


async def test_a_report_finds_the_contact_its_own_transaction_wrote(database):
    [recorded] = await in_one_transaction(database, report())

    ann = await database.contacts.find_one({"emailKey": "ann@example.com"})
    assert recorded.contract["contactId"] == ann["_id"]
    assert (ann["kind"], ann["activeSubscriptionCount"]) == ("CUSTOMER", 1)
    assert await database.contacts.count_documents({}) == 1


async def test_reports_in_one_transaction_see_each_other(database):
    first, again, second = await in_one_transaction(
        database,
        report("SUB-1"),
        report("SUB-1", "bob@example.com", status="PAUSED"),
        report("SUB-2", kind="MEMBERSHIP"),
    )

    ann = await database.contacts.find_one({"emailKey": "ann@example.com"})
    assert first.created is True
    assert again.created is False
    assert second.created is True
    assert again.contract["contactId"] == ann["_id"]  # the contract's person, not the new e-mail
    assert await database.contacts.count_documents({}) == 1
    assert await database.subscription_contracts.count_documents({}) == 2
    assert (ann["activeSubscriptionCount"], ann["isMember"]) == (2, True)
    assert [e[:2] for e in said(ann["activity"])] == [
        ("SUBSCRIPTION_STARTED", STARTED),
        ("CONVERTED_TO_CUSTOMER", "Tea club"),
        ("SUBSCRIPTION_CHANGED", "Tea club: paused"),
        ("SUBSCRIPTION_STARTED", "Membership: " + STARTED),
    ]


async def test_a_change_of_a_contract_whose_contact_was_deleted_finds_the_person_its_transaction_wrote(
    database,
):
    await record(database, report(updated_at=day(1)))
    await database.contacts.delete_many({})

    [again] = await in_one_transaction(database, report(status="PAUSED", updated_at=day(2)))

    ann = await database.contacts.find_one({"emailKey": "ann@example.com"})
    assert again.contract["contactId"] == ann["_id"]
    assert (await contract_of(database))["contactId"] == ann["_id"]
    assert (ann["kind"], ann["activeSubscriptionCount"]) == ("CUSTOMER", 1)
    assert await database.contacts.count_documents({}) == 1


async def test_a_new_person_and_its_next_report_in_one_transaction(database):
    async def work(session: Any) -> list[Any]:
        return [
            await subscription_record._record_once(
                database, SHOP, check_subscription(r, NOW), NOW, session
            )
            for r in (report("SUB-1", "bob@example.com"), report("SUB-1", status="PAUSED"))
        ]

    made, changed = await activity.in_transaction(database, work)

    bob = await contact_by_id(database, made.contract["contactId"])
    assert changed.contract["contactId"] == bob["_id"]
    assert (bob["emailKey"], bob["activityEmbedded"]) == ("bob@example.com", 2)
    assert await database.contacts.count_documents({}) == 1


async def test_a_first_report_that_fails_before_the_commit_leaves_nothing(database, monkeypatch):
    await database.shops.insert_one({"_id": SHOP, "currency": None})
    before = await everything(database)
    real = subscription_record._record_once

    async def then_stop(*args: Any) -> None:
        await real(*args)
        raise Stop

    monkeypatch.setattr(subscription_record, "_record_once", then_stop)

    with pytest.raises(Stop):
        await record(database, report(first_name="Ann"), shop_currency=None)

    assert await everything(database) == before


async def test_a_report_on_a_lead_that_fails_before_the_commit_leaves_nothing(
    database, monkeypatch
):
    await stored_contact(database, "LEAD")
    before = await everything(database)
    real = subscription_record._record_once

    async def then_stop(*args: Any) -> None:
        await real(*args)
        raise Stop

    monkeypatch.setattr(subscription_record, "_record_once", then_stop)

    with pytest.raises(Stop):
        await record(database, report(first_name="Ann"))

    assert await everything(database) == before


async def test_a_change_that_fails_before_the_commit_leaves_nothing(database, monkeypatch):
    await record(database, report(updated_at=day(1)))
    before = await everything(database)
    real = subscription_record._record_once

    async def then_stop(*args: Any) -> None:
        await real(*args)
        raise Stop

    monkeypatch.setattr(subscription_record, "_record_once", then_stop)

    with pytest.raises(Stop):
        await record(database, report(status="CANCELED", updated_at=day(2)))

    assert await everything(database) == before
    # Its contact deleted, the change would make the person again: not without the commit.
    await database.contacts.delete_many({})
    before = await everything(database)
    with pytest.raises(Stop):
        await record(database, report(status="CANCELED", updated_at=day(2)))

    assert await everything(database) == before


async def test_a_contact_that_cannot_be_written_fails_the_report(database, monkeypatch):
    await stored_contact(database, "LEAD")
    before = await everything(database)
    real = AsyncCollection.update_one

    async def lost(self: AsyncCollection, where: Any, *args: Any, **kwargs: Any) -> Any:
        if self.name == "contacts":
            where = {**where, "_id": ObjectId()}  # as if the contact were gone
        return await real(self, where, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "update_one", lost)

    with pytest.raises(RuntimeError, match="^the contact read in this transaction could not be"):
        await record(database, report())

    assert await everything(database) == before


async def test_a_duplicate_key_runs_the_report_again_up_to_five_times(database, monkeypatch):
    real = activity.in_transaction
    calls = []

    async def colliding(database_: Any, work: Any) -> Any:
        calls.append(1)
        if len(calls) < 5:
            raise DuplicateKeyError("E11000 duplicate key")
        return await real(database_, work)

    monkeypatch.setattr(activity, "in_transaction", colliding)

    recorded = await record(database, report())

    assert len(calls) == 5
    assert recorded.created is True
    assert await database.subscription_contracts.count_documents({}) == 1


async def test_a_sixth_duplicate_key_is_not_retried(database, monkeypatch):
    calls = []

    async def colliding(database_: Any, work: Any) -> Any:
        calls.append(1)
        raise DuplicateKeyError("E11000 duplicate key")

    monkeypatch.setattr(activity, "in_transaction", colliding)

    with pytest.raises(DuplicateKeyError):
        await record(database, report())

    assert len(calls) == 5
    assert await database.subscription_contracts.count_documents({}) == 0
