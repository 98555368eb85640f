"""Merging contacts to the edge: which ids are refused, what the merged contact holds, what moves.

tests/test_merge.py tells the story through the API; these call the rules
directly, with a fixed clock and chosen documents, for the exact results:
each refusal's field, message and code (and nothing written), which
details fill the target's gaps, how labels, consent, the shipping address
and the activity log combine, the counters and events a merge leaves, and
that the whole merge stands or falls in one transaction.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId

from resolvers import activity, merge
from resolvers.activity import BUCKET_SIZE, EMBEDDED_KEEP, in_transaction
from resolvers.contact_counts import contact_totals, count_contacts
from resolvers.contacts import new_contact
from resolvers.errors import Problem, Refused
from resolvers.events import contact_gid
from resolvers.merge import MergeRequest, merge_contacts, plan_merge, preview_merge

SHOP = "acme"
OTHER_SHOP = "globex"
# Far ahead on purpose: the TTL monitor deletes what expired before now, mid-test.
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2126, 1, 1, 9, 0, tzinfo=dt.UTC)
NOT_FOUND = "Contact not found."
NO_STATS = {
    "orderCount": 0,
    "totalSpent": Decimal128("0"),
    "firstOrderAt": None,
    "lastOrderAt": None,
}


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge, "now", lambda: NOW)
    monkeypatch.setattr(activity, "now", lambda: NOW)


def day(n: float) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def doc(email: str, kind: str = "LEAD", **fields: Any) -> dict[str, Any]:
    """A contact as stored (not yet inserted)."""
    labels = fields.pop("labels", None)
    entries = fields.pop("entries", None)
    contact = new_contact(
        fields.pop("shop", SHOP),
        email,
        email.casefold(),
        kind,
        {},
        fields.pop("created", T0),
        labels=labels,
        entries=entries,
    )
    contact.update(fields)
    return contact


async def stored(database: Any, email: str, kind: str = "LEAD", **fields: Any) -> dict[str, Any]:
    contact = doc(email, kind, **fields)
    await database.contacts.insert_one(contact)
    return contact


def entries(count: int, start: dt.datetime, prefix: str, kind: str = "NOTE") -> list[dict]:
    return [
        activity.entry(kind, text=f"{prefix}{i}", at=start + dt.timedelta(minutes=i))
        for i in range(count)
    ]


def plan(target: dict, sources: list[dict], stats: dict | None = None) -> merge.MergePlan:
    return plan_merge(target, sources, stats or NO_STATS, "Staff", NOW)


async def refused(call: Any) -> list[Problem]:
    with pytest.raises(Refused) as caught:
        await call
    return caught.value.problems


async def everything(database: Any) -> dict[str, list]:
    out = {}
    for name in (
        "contacts",
        "orders",
        "messages",
        "activity_archive",
        "subscription_contracts",
        "labels",
        "events",
        "contact_counts",
    ):
        out[name] = await database.db[name].find({}).sort("_id").to_list()
    return out


async def order(
    database: Any,
    contact_id: ObjectId,
    total: str,
    placed: dt.datetime,
    status: str = "OPEN",
    shop: str = SHOP,
) -> dict:
    row = {
        "_id": ObjectId(),
        "shopId": shop,
        "externalId": str(ObjectId()),
        "number": f"#{total}",
        "contactId": contact_id,
        "status": status,
        "placedAt": placed,
        "total": Decimal128(total),
        "currency": "EUR",
    }
    await database.orders.insert_one(row)
    return row


async def contract(
    database: Any,
    contact_id: ObjectId,
    status: str = "ACTIVE",
    kind: str = "MEMBERSHIP",
    shop: str = SHOP,
) -> dict:
    row = {
        "_id": ObjectId(),
        "shopId": shop,
        "externalId": str(ObjectId()),
        "contactId": contact_id,
        "status": status,
        "kind": kind,
        "createdAt": T0,
    }
    await database.subscription_contracts.insert_one(row)
    return row


async def label_counts(database: Any, shop: str = SHOP) -> dict[str, int]:
    rows = await database.labels.find({"shopId": shop}).to_list()
    return {row["key"]: row["contactCount"] for row in rows}


async def labels(database: Any, shop: str = SHOP, **counts: int) -> None:
    await database.labels.insert_many(
        [
            {"shopId": shop, "key": key, "name": key, "contactCount": n, "createdAt": T0}
            for key, n in counts.items()
        ]
    )


# -- which ids are refused ---------------------------------------------------------------


async def test_a_malformed_target_is_not_found(database):
    bob = await stored(database, "bob@example.com")

    problems = await refused(merge_contacts(database, SHOP, MergeRequest(None, [bob["_id"]]), None))

    assert problems == [Problem(("targetId",), NOT_FOUND, "NOT_FOUND")]


async def test_no_sources_is_refused_before_anything_else(database):
    ann = await stored(database, "ann@example.com")
    required = Problem(
        ("sourceIds",), "Name at least one contact to merge into the target.", "REQUIRED"
    )

    assert await refused(merge_contacts(database, SHOP, MergeRequest(ann["_id"], []), None)) == [
        required
    ]
    assert await refused(merge_contacts(database, SHOP, MergeRequest(None, []), None)) == [required]
    assert await refused(preview_merge(database, SHOP, MergeRequest(ann["_id"], []), None)) == [
        required
    ]


async def test_every_bad_source_is_named_by_its_position(database):
    ann = await stored(database, "ann@example.com")
    bob = await stored(database, "bob@example.com")
    foreign = await stored(database, "zed@example.com", shop=OTHER_SHOP)
    before = await everything(database)
    request = MergeRequest(
        ann["_id"], [bob["_id"], None, ann["_id"], ObjectId(), foreign["_id"], bob["_id"]]
    )

    problems = await refused(merge_contacts(database, SHOP, request, "Staff"))

    assert problems == [
        Problem(("sourceIds", 1), NOT_FOUND, "NOT_FOUND"),
        Problem(("sourceIds", 2), "A contact cannot be merged into itself.", "INVALID"),
        Problem(("sourceIds", 3), NOT_FOUND, "NOT_FOUND"),
        Problem(("sourceIds", 4), NOT_FOUND, "NOT_FOUND"),
    ]
    assert await refused(preview_merge(database, SHOP, request, "Staff")) == problems
    assert await everything(database) == before


async def test_an_unknown_target_named_again_as_a_source_is_refused_once_for_each(database):
    bob = await stored(database, "bob@example.com")
    ghost = ObjectId()

    problems = await refused(
        merge_contacts(database, SHOP, MergeRequest(ghost, [ghost, bob["_id"]]), None)
    )

    assert problems == [
        Problem(("sourceIds", 0), "A contact cannot be merged into itself.", "INVALID"),
        Problem(("targetId",), NOT_FOUND, "NOT_FOUND"),
    ]


async def test_a_target_of_another_shop_is_not_found(database):
    zed = await stored(database, "zed@example.com", shop=OTHER_SHOP)
    bob = await stored(database, "bob@example.com")
    before = await everything(database)

    problems = await refused(
        merge_contacts(database, SHOP, MergeRequest(zed["_id"], [bob["_id"]]), None)
    )

    assert problems == [Problem(("targetId",), NOT_FOUND, "NOT_FOUND")]
    assert await everything(database) == before


async def test_eleven_distinct_sources_are_too_many_whatever_they_are(database):
    ann = await stored(database, "ann@example.com")
    eleven = [ObjectId() for _ in range(11)]

    problems = await refused(merge_contacts(database, SHOP, MergeRequest(ann["_id"], eleven), None))

    assert problems == [Problem(("sourceIds",), "At most 10 contacts per merge.", "LIMIT_EXCEEDED")]


async def test_ten_sources_are_read_and_malformed_ids_do_not_count_toward_the_limit(database):
    ann = await stored(database, "ann@example.com")
    ten = [ObjectId() for _ in range(10)]

    problems = await refused(
        merge_contacts(database, SHOP, MergeRequest(ann["_id"], [*ten, None]), None)
    )

    assert problems == [Problem(("sourceIds", 10), NOT_FOUND, "NOT_FOUND")] + [
        Problem(("sourceIds", i), NOT_FOUND, "NOT_FOUND") for i in range(10)
    ]


async def test_ten_sources_named_twice_merge(database):
    ann = await stored(database, "ann@example.com")
    sources = [await stored(database, f"s{i}@example.com") for i in range(10)]
    ids = [s["_id"] for s in sources]

    merged = await merge_contacts(database, SHOP, MergeRequest(ann["_id"], ids + ids[:3]), None)

    assert merged["mergedIds"] == ids
    assert await database.contacts.count_documents({"shopId": SHOP}) == 1


# -- what the merged contact holds ---------------------------------------------------------


def test_the_target_keeps_its_details_and_fills_gaps_from_the_first_source_that_has_them():
    target = doc("ann@example.com", firstName="Ann", lastName=None, phone="", billingAddress={})
    first = doc(
        "a2@example.com",
        firstName="Annie",
        lastName="",
        phone=None,
        company="ACME",
        billingAddress={},
    )
    second = doc(
        "a3@example.com",
        lastName="Lee",
        phone="+4930123456",
        company="Other",
        billingAddress={"city": "Bonn"},
    )

    merged = plan(target, [first, second]).contact

    assert {k: merged[k] for k in merge.FILLED_DETAILS} == {
        "firstName": "Ann",
        "lastName": "Lee",
        "phone": "+4930123456",
        "company": "ACME",
        "billingAddress": {"city": "Bonn"},
    }
    assert merged["email"] == "ann@example.com"
    # Derived from the merged details, for sorting and search.
    assert merged["nameKey"] == "ann lee"
    assert "acme" in merged["searchTerms"] and "lee" in merged["searchTerms"]
    assert merged["emailCanon"] == "ann@example.com"


def test_a_gap_no_source_fills_stays_as_the_target_had_it():
    target = doc("ann@example.com", phone="", billingAddress={}, company=None)
    source = doc("bob@example.com", phone=None, billingAddress={}, company="")

    fields = plan(target, [source]).set_fields

    assert (fields["phone"], fields["billingAddress"], fields["company"]) == ("", {}, None)


def test_kind_account_creation_time_and_update_time():
    lead = doc("ann@example.com", created=day(5))
    customer = doc("bob@example.com", "CUSTOMER", created=day(2), hasAccount=True)
    other_lead = doc("cat@example.com", created=day(9))

    merged = plan(lead, [customer, other_lead]).contact
    leads_only = plan(lead, [other_lead]).contact

    assert (merged["kind"], merged["hasAccount"]) == ("CUSTOMER", True)
    assert (merged["createdAt"], merged["updatedAt"]) == (day(2), NOW)
    assert (leads_only["kind"], leads_only["hasAccount"]) == ("LEAD", False)
    assert leads_only["createdAt"] == day(5)


def test_a_target_stored_without_a_kind_merges_as_a_lead_unless_a_customer_joins():
    kindless = doc("ann@example.com")
    del kindless["kind"]

    assert plan(kindless, [doc("bob@example.com")]).contact["kind"] == "LEAD"
    assert plan(kindless, [doc("cat@example.com", "CUSTOMER")]).contact["kind"] == "CUSTOMER"


def test_labels_are_the_union_in_the_target_s_spelling_and_counts_drop_for_the_duplicates():
    target = doc("ann@example.com", labels=["VIP", "Blue"])
    first = doc("bob@example.com", labels=["vip", "Gold"])
    # Stored before label keys were kept: the keys come from the names.
    second = doc("cat@example.com", labels=["Silver", "gold ", "V I P", "ViP"])
    del second["labelKeys"]

    result = plan(target, [first, second])

    assert result.contact["labels"] == ["VIP", "Blue", "Gold", "Silver", "V I P"]
    assert result.contact["labelKeys"] == ["vip", "blue", "gold", "silver", "v i p"]
    # vip: three holders become one; gold: two become one; the rest keep their count.
    assert result.label_deltas == {"vip": -2, "gold": -1}


def test_consent_histories_are_merged_by_time_and_the_newest_event_is_the_state():
    def event(state: str, at: dt.datetime, source: str, level: str | None = None) -> dict:
        return {"state": state, "optInLevel": level, "at": at, "source": source, "actor": None}

    early, late = event("SUBSCRIBED", day(1), "ADMIN"), event("UNSUBSCRIBED", day(3), "API")
    middle = event("SUBSCRIBED", day(2), "CHECKOUT", "CONFIRMED_OPT_IN")
    target = doc("ann@example.com", consent={"state": "SUBSCRIBED", "history": [early]})
    source = doc("bob@example.com", consent={"state": "SUBSCRIBED", "history": [middle]})
    newest = doc("cat@example.com", consent={"state": "UNSUBSCRIBED", "history": [late]})

    assert plan(target, [newest, source]).contact["consent"] == {
        "state": "UNSUBSCRIBED",
        "optInLevel": None,
        "at": day(3),
        "source": "API",
        "history": [early, middle, late],
    }
    assert plan(target, [source]).contact["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "CONFIRMED_OPT_IN",
        "at": day(2),
        "source": "CHECKOUT",
        "history": [early, middle],
    }


def test_of_two_consent_events_at_the_same_moment_the_target_s_wins():
    mine = {"state": "SUBSCRIBED", "optInLevel": "SINGLE_OPT_IN", "at": day(1), "source": "API"}
    theirs = {"state": "UNSUBSCRIBED", "optInLevel": None, "at": day(1), "source": "ADMIN"}
    target = doc("ann@example.com", consent={"state": "SUBSCRIBED", "history": [mine]})
    source = doc("bob@example.com", consent={"state": "UNSUBSCRIBED", "history": [theirs]})

    consent = plan(target, [source]).contact["consent"]

    assert (consent["state"], consent["source"], consent["history"]) == (
        "SUBSCRIBED",
        "API",
        [mine, theirs],
    )


def test_without_any_consent_history_the_target_s_consent_stays():
    target = doc("ann@example.com", consent={"state": "PENDING", "history": [], "at": day(1)})
    bare = doc("bob@example.com")
    del bare["consent"]
    no_consent = doc("cat@example.com")
    del no_consent["consent"]

    assert plan(target, [bare]).contact["consent"] == {
        "state": "PENDING",
        "history": [],
        "at": day(1),
    }
    assert plan(no_consent, [bare]).contact["consent"] == {
        "state": "NOT_SUBSCRIBED",
        "history": [],
    }


def test_the_newest_shipping_address_wins_unless_the_target_s_details_are_locked():
    home, office, shop = {"city": "Bonn"}, {"city": "Köln"}, {"city": "Essen"}
    target = doc("ann@example.com", shippingAddress=home, shipAt=day(1))
    newer = doc("bob@example.com", shippingAddress=office, shipAt=day(4))
    undated = doc("cat@example.com", shippingAddress=shop)
    nowhere = doc("dan@example.com")

    assert plan(target, [newer, undated]).set_fields["shippingAddress"] == office
    assert plan(target, [newer]).set_fields["shipAt"] == day(4)
    # A date beats none, either way round; of equal dates the target's.
    assert plan(target, [undated]).set_fields["shippingAddress"] == home
    assert plan(undated, [newer]).set_fields["shippingAddress"] == office
    same_day = doc("eve@example.com", shippingAddress=office, shipAt=day(1))
    assert plan(target, [same_day]).set_fields["shippingAddress"] == home
    assert (plan(undated, [nowhere]).set_fields["shipAt"]) is None
    # Nobody shipped anywhere: no address.
    fields = plan(nowhere, [doc("fay@example.com")]).set_fields
    assert (fields["shippingAddress"], fields["shipAt"]) == (None, None)
    # Locked details keep the target's address; locked without one, the sources decide.
    locked = {**target, "detailsLocked": True}
    assert plan(locked, [newer]).set_fields["shippingAddress"] == home
    assert plan(locked, [newer]).set_fields["shipAt"] == day(1)
    locked_empty = {**nowhere, "detailsLocked": True}
    assert plan(locked_empty, [undated, newer]).set_fields["shippingAddress"] == office


def test_merged_ids_keep_what_each_contact_had_absorbed_once_each():
    earlier, older = ObjectId(), ObjectId()
    target = doc("ann@example.com", mergedIds=[earlier])
    first = doc("bob@example.com", mergedIds=[earlier, older])
    second = doc("cat@example.com")

    result = plan(target, [first, second])

    assert result.contact["mergedIds"] == [earlier, first["_id"], older, second["_id"]]
    assert result.source_ids == [first["_id"], second["_id"]]


def test_the_order_statistics_are_the_ones_given():
    stats = {
        "orderCount": 3,
        "totalSpent": Decimal128("35.75"),
        "firstOrderAt": day(1),
        "lastOrderAt": day(6),
    }

    fields = plan(doc("ann@example.com"), [doc("bob@example.com")], stats).set_fields

    assert {k: fields[k] for k in stats} == stats


def test_the_newest_entries_stay_embedded_and_the_rest_go_to_new_buckets_newest_first():
    target = doc(
        "ann@example.com",
        entries=entries(150, day(1), "ann"),
        activityCount=170,
        activityArchived=20,
        activityArchivedKinds={"NOTE": 15, "ORDER_PLACED": 5},
        activityArchivedAt=day(0),
    )
    source = doc(
        "bob@example.com",
        entries=entries(100, day(1) + dt.timedelta(seconds=30), "bob", "FORM_SUBMITTED"),
        activityArchivedKinds={"FORM_SUBMITTED": 1},
        activityArchived=1,
        activityCount=101,
        activityArchivedAt=day(-1),
    )

    result = plan(target, [source])

    log = result.contact["activity"]
    assert len(log) == result.contact["activityEmbedded"] == EMBEDDED_KEEP
    assert log[0]["kind"] == "CONTACTS_MERGED"
    assert (log[0]["text"], log[0]["author"], log[0]["at"]) == (
        "Merged into this contact: bob@example.com",
        "Staff",
        NOW,
    )
    # Interleaved by time: Bob's entries fall half a minute after Ann's of the same number.
    assert log[1]["text"] == "ann149" and log[50]["text"] == "ann100"
    assert [e["text"] for e in log[51:55]] == ["bob99", "ann99", "bob98", "ann98"]
    assert log[-1]["text"] == "bob75"
    # 251 entries: 100 embedded, 151 archived in two buckets, newest first.
    assert [len(bucket) for bucket in result.overflow] == [BUCKET_SIZE, 51]
    assert result.overflow[0][0]["text"] == "ann75"
    assert result.overflow[1][-1]["text"] == "ann0"
    texts = [e["text"] for bucket in result.overflow for e in bucket]
    assert len(set(texts)) == 151 and "bob74" in texts and "bob0" in texts
    assert result.contact["activityCount"] == 170 + 101 + 1
    assert result.contact["activityArchived"] == 20 + 1 + 151
    assert result.contact["activityArchivedKinds"] == {
        "NOTE": 15 + 76,
        "ORDER_PLACED": 5,
        "FORM_SUBMITTED": 1 + 75,
    }
    assert result.contact["activityArchivedAt"] == day(1) + dt.timedelta(minutes=75)


def test_the_merge_entry_is_dated_at_the_merge_and_names_every_source():
    sources = [doc("bob@example.com"), doc("cat@example.com")]

    result = plan_merge(doc("ann@example.com"), sources, NO_STATS, None, day(7))

    entry = result.contact["activity"][0]
    assert entry == {
        "_id": entry["_id"],
        "kind": "CONTACTS_MERGED",
        "text": "Merged into this contact: bob@example.com, cat@example.com",
        "at": day(7),
    }
    assert result.contact["updatedAt"] == day(7)


def test_a_short_log_stays_embedded_and_keeps_the_newest_archived_time():
    target = doc("ann@example.com", entries=entries(3, day(1), "ann"))
    source = doc("bob@example.com", entries=entries(2, day(2), "bob"), activityArchivedAt=day(-3))
    archived = doc("cat@example.com", activityArchivedAt=day(-1), activityArchived=4)

    result = plan(target, [source, archived])
    bare = plan(doc("dan@example.com"), [doc("eve@example.com")])

    assert result.overflow == []
    assert [e["text"] for e in result.contact["activity"][1:]] == [
        "bob1",
        "bob0",
        "ann2",
        "ann1",
        "ann0",
    ]
    assert result.contact["activityEmbedded"] == 6
    assert (result.contact["activityArchived"], result.contact["activityArchivedAt"]) == (
        4,
        day(-1),
    )
    assert result.contact["activityArchivedKinds"] == {}
    assert (bare.contact["activityArchivedAt"], bare.contact["activityCount"]) == (None, 1)
    assert "activityArchivedAt" in bare.set_fields


# -- what a merge writes -------------------------------------------------------------------


async def test_the_statistics_count_only_counted_orders_of_the_merged_contacts(database):
    ann = await stored(database, "ann@example.com", "CUSTOMER")
    bob = await stored(database, "bob@example.com", "CUSTOMER")
    cat = await stored(database, "cat@example.com", "CUSTOMER")
    await order(database, ann["_id"], "10.00", day(10))
    await order(database, bob["_id"], "20.50", day(5), status="FULFILLED")
    await order(database, bob["_id"], "99.00", day(1), status="CANCELED")
    await order(database, cat["_id"], "7.00", day(2))
    await order(database, ann["_id"], "50.00", day(3), shop=OTHER_SHOP)
    request = MergeRequest(ann["_id"], [bob["_id"]])

    preview = await preview_merge(database, SHOP, request, "Staff")
    merged = await merge_contacts(database, SHOP, request, "Staff")

    stats = {"orderCount": 2, "firstOrderAt": day(5), "lastOrderAt": day(10)}
    stored_ann = await database.contacts.find_one({"_id": ann["_id"]})
    for contact in (preview, merged, stored_ann):
        assert {k: contact[k] for k in stats} == stats
        assert contact["totalSpent"].to_decimal() == Decimal("30.50")


async def test_without_counted_orders_the_statistics_are_zero_and_the_order_times_go(database):
    ann = await stored(
        database,
        "ann@example.com",
        "CUSTOMER",
        orderCount=1,
        totalSpent=Decimal128("5"),
        firstOrderAt=day(1),
        lastOrderAt=day(1),
    )
    bob = await stored(database, "bob@example.com")
    await order(database, ann["_id"], "5.00", day(1), status="CANCELED")

    await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"]]), None)

    stored_ann = await database.contacts.find_one({"_id": ann["_id"]})
    assert (stored_ann["orderCount"], stored_ann["totalSpent"]) == (0, Decimal128("0"))
    assert "firstOrderAt" not in stored_ann and "lastOrderAt" not in stored_ann


async def test_subscriptions_of_all_merged_contacts_count_on_the_target(database):
    ann = await stored(database, "ann@example.com", "CUSTOMER")
    bob = await stored(database, "bob@example.com", "CUSTOMER")
    cat = await stored(database, "cat@example.com")
    await contract(database, ann["_id"], "PAST_DUE", "SUBSCRIPTION")
    await contract(database, bob["_id"], "PAUSED", "MEMBERSHIP")
    await contract(database, cat["_id"], "ACTIVE", "SUBSCRIPTION")
    request = MergeRequest(ann["_id"], [bob["_id"]])

    preview = await preview_merge(database, SHOP, request, None)
    await merge_contacts(database, SHOP, request, None)

    stored_ann = await database.contacts.find_one({"_id": ann["_id"]})
    for contact in (preview, stored_ann):
        assert (contact["activeSubscriptionCount"], contact["isMember"]) == (2, True)


async def test_everything_of_the_sources_moves_to_the_target_and_nothing_else(database):
    ann = await stored(database, "ann@example.com")
    bob = await stored(database, "bob@example.com")
    cat = await stored(database, "cat@example.com")
    dan = await stored(database, "dan@example.com")
    moved, kept = [], []
    for owner, bucket in ((bob, moved), (cat, moved), (dan, kept)):
        bucket.append(("orders", (await order(database, owner["_id"], "1.00", day(1)))["_id"]))
        bucket.append(("subscription_contracts", (await contract(database, owner["_id"]))["_id"]))
        for name in ("messages", "activity_archive"):
            row = {"_id": ObjectId(), "shopId": SHOP, "contactId": owner["_id"]}
            await database.db[name].insert_one(row)
            bucket.append((name, row["_id"]))
    # Another shop's rows are never touched, even under the same contact id.
    for name in ("orders", "messages", "activity_archive", "subscription_contracts"):
        row = {"_id": ObjectId(), "shopId": OTHER_SHOP, "contactId": bob["_id"]}
        await database.db[name].insert_one(row)
        kept.append((name, row["_id"]))
    owners = {
        row_id: (await database.db[n].find_one({"_id": row_id}))["contactId"] for n, row_id in kept
    }

    await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"], cat["_id"]]), None)

    for name, row_id in moved:
        assert (await database.db[name].find_one({"_id": row_id}))["contactId"] == ann["_id"], name
    for name, row_id in kept:
        row = await database.db[name].find_one({"_id": row_id})
        assert row["contactId"] == owners[row_id], name


async def test_the_sources_are_deleted_and_the_target_written_once(database):
    ann = await stored(database, "ann@example.com", rev=4, orderRev=7, labels=["VIP"])
    bob = await stored(database, "bob@example.com", "CUSTOMER", labels=["vip", "Gold"])
    cat = await stored(database, "cat@example.com", labels=["Gold"])
    dan = await stored(database, "dan@example.com", labels=["VIP"])
    zed = await stored(database, "bob@example.com", shop=OTHER_SHOP, labels=["VIP"])
    await labels(database, vip=3, gold=2)
    await labels(database, OTHER_SHOP, vip=1)
    await count_contacts(database, SHOP, {"LEAD": 3, "CUSTOMER": 1}, session=None)

    merged = await merge_contacts(
        database, SHOP, MergeRequest(ann["_id"], [bob["_id"], cat["_id"]]), "Staff"
    )

    rows = await database.contacts.find({}).sort("email").to_list()
    assert [row["_id"] for row in rows] == [ann["_id"], zed["_id"], dan["_id"]]
    stored_ann = rows[0]
    assert (stored_ann["rev"], stored_ann["orderRev"]) == (5, 8)
    assert stored_ann["labels"] == merged["labels"] == ["VIP", "Gold"]
    assert stored_ann["kind"] == merged["kind"] == "CUSTOMER"
    assert stored_ann["mergedIds"] == merged["mergedIds"] == [bob["_id"], cat["_id"]]
    assert stored_ann["updatedAt"] == NOW
    newest = max(stored_ann["activity"], key=activity.sort_key)
    assert (newest["kind"], newest["text"], newest["author"], newest["at"]) == (
        "CONTACTS_MERGED",
        "Merged into this contact: bob@example.com, cat@example.com",
        "Staff",
        NOW,
    )
    assert merged["_id"] == ann["_id"]
    assert await label_counts(database) == {"vip": 2, "gold": 1}
    assert await label_counts(database, OTHER_SHOP) == {"vip": 1}
    # Ann turned customer and Bob and Cat are gone: one customer and Dan the lead remain.
    assert await contact_totals(database, SHOP) == {"total": 2, "CUSTOMER": 1, "LEAD": 1}
    events = await database.events.find({"shopId": SHOP}).to_list()
    assert [(e["type"], e["contactId"], e["data"]) for e in events] == [
        (
            "CONTACT_MERGED",
            ann["_id"],
            {
                "id": contact_gid(ann["_id"]),
                "mergedIds": [contact_gid(bob["_id"]), contact_gid(cat["_id"])],
                "kind": "CUSTOMER",
            },
        )
    ]


async def test_a_long_merged_log_spills_into_buckets_of_the_target(database):
    ann = await stored(database, "ann@example.com", entries=entries(150, day(1), "ann"))
    bob = await stored(database, "bob@example.com", entries=entries(100, day(2), "bob"))

    await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"]]), None)

    buckets = await database.activity_archive.find({}).sort("maxAt", -1).to_list()
    assert [(b["shopId"], b["contactId"], b["count"]) for b in buckets] == [
        (SHOP, ann["_id"], BUCKET_SIZE),
        (SHOP, ann["_id"], 51),
    ]
    assert buckets[1]["minAt"] == day(1)
    stored_ann = await database.contacts.find_one({"_id": ann["_id"]})
    assert (stored_ann["activityEmbedded"], stored_ann["activityArchived"]) == (EMBEDDED_KEEP, 151)
    assert len(stored_ann["activity"]) == EMBEDDED_KEEP


async def test_the_preview_shows_the_merge_and_writes_nothing(database):
    ann = await stored(database, "ann@example.com", labels=["VIP"])
    bob = await stored(database, "bob@example.com", "CUSTOMER", labels=["Gold"], phone="+4930123")
    await order(database, bob["_id"], "12.00", day(3))
    before = await everything(database)
    request = MergeRequest(ann["_id"], [bob["_id"]])

    preview = await preview_merge(database, SHOP, request, "Staff")

    assert await everything(database) == before
    assert (preview["labels"], preview["phone"], preview["kind"], preview["orderCount"]) == (
        ["VIP", "Gold"],
        "+4930123",
        "CUSTOMER",
        1,
    )
    assert preview["updatedAt"] == NOW
    assert (preview["activity"][0]["kind"], preview["activity"][0]["author"]) == (
        "CONTACTS_MERGED",
        "Staff",
    )
    merged = await merge_contacts(database, SHOP, request, "Staff")
    skip = {"activity"}
    assert {k: v for k, v in preview.items() if k not in skip} == {
        k: v for k, v in merged.items() if k not in skip
    }


# -- one transaction -----------------------------------------------------------------------


async def test_a_failure_after_every_write_leaves_everything_as_it_was(database, monkeypatch):
    ann = await stored(
        database, "ann@example.com", labels=["VIP"], entries=entries(150, day(1), "a")
    )
    bob = await stored(
        database, "bob@example.com", "CUSTOMER", labels=["vip"], entries=entries(60, day(2), "b")
    )
    await labels(database, vip=2)
    await order(database, bob["_id"], "3.00", day(1))
    await contract(database, bob["_id"])
    await database.messages.insert_one({"_id": ObjectId(), "shopId": SHOP, "contactId": bob["_id"]})
    await database.activity_archive.insert_one(
        {"_id": ObjectId(), "shopId": SHOP, "contactId": bob["_id"], "entries": []}
    )
    await count_contacts(database, SHOP, {"LEAD": 1, "CUSTOMER": 1}, session=None)
    before = await everything(database)
    real = merge.contacts_merged
    reached = []

    async def record_then_fail(database, shop_id, survivor, kind, merged, *, session):
        await real(database, shop_id, survivor, kind, merged, session=session)
        reached.append(await database.events.count_documents({}, session=session))
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(merge, "contacts_merged", record_then_fail)

    with pytest.raises(RuntimeError, match="disk on fire"):
        await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"]]), None)

    assert reached == [1]
    assert await everything(database) == before


async def test_a_merge_reads_what_its_own_transaction_wrote(database):
    ann = await stored(database, "ann@example.com")
    bob = doc("bob@example.com", "CUSTOMER")
    request = MergeRequest(ann["_id"], [bob["_id"]])
    seen = []

    async def work(session: Any) -> None:
        await database.contacts.insert_one(bob, session=session)
        await database.orders.insert_one(
            {
                "_id": ObjectId(),
                "shopId": SHOP,
                "contactId": bob["_id"],
                "status": "OPEN",
                "placedAt": day(1),
                "total": Decimal128("4.00"),
            },
            session=session,
        )
        target, sources = await merge._read(
            database, SHOP, request, merge._check_ids(request), session
        )
        stats = await merge._order_stats(database, SHOP, [ann["_id"], bob["_id"]], session)
        seen.append(([s["email"] for s in sources], stats["orderCount"]))

    await in_transaction(database, work)

    assert seen == [(["bob@example.com"], 1)]


async def test_a_change_to_a_source_while_the_merge_runs_makes_it_start_over(database, monkeypatch):
    ann = await stored(database, "ann@example.com")
    bob = await stored(database, "bob@example.com", labels=["Gold"])
    real = merge._order_stats
    calls = []

    async def late_label_then_stats(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            # Another client labels Bob after the merge read him.
            await database.contacts.update_one(
                {"_id": bob["_id"]},
                {"$push": {"labels": "Late", "labelKeys": "late"}},
            )
        calls.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(merge, "_order_stats", late_label_then_stats)

    merged = await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"]]), None)

    assert len(calls) == 2
    assert merged["labels"] == ["Gold", "Late"]


async def test_rows_that_land_on_a_source_during_the_merge_are_counted_where_they_end_up(
    database, monkeypatch
):
    ann = await stored(database, "ann@example.com")
    bob = await stored(database, "bob@example.com")
    real = merge._read

    async def read_then_late_rows(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        await order(database, bob["_id"], "9.00", day(1))
        await contract(database, bob["_id"])
        return result

    monkeypatch.setattr(merge, "_read", read_then_late_rows)

    await merge_contacts(database, SHOP, MergeRequest(ann["_id"], [bob["_id"]]), None)

    stored_ann = await database.contacts.find_one({"_id": ann["_id"]})
    on_ann = {"shopId": SHOP, "contactId": ann["_id"]}
    assert stored_ann["orderCount"] == await database.orders.count_documents(on_ann)
    assert stored_ann["activeSubscriptionCount"] == (
        await database.subscription_contracts.count_documents(on_ann)
    )


async def test_a_target_or_source_gone_inside_the_transaction_fails_the_merge(database):
    ann = await stored(database, "ann@example.com")
    bob = await stored(database, "bob@example.com")
    result = plan(ann, [bob])
    gone_target = plan({**ann, "_id": ObjectId()}, [bob])
    gone_source = merge.MergePlan(
        result.contact, result.set_fields, [], {}, [bob["_id"], ObjectId()]
    )

    with pytest.raises(RuntimeError, match="^the merge target disappeared inside its transaction$"):
        await in_transaction(
            database, lambda s: merge._write_target(database, SHOP, gone_target, s)
        )
    with pytest.raises(RuntimeError, match="^a merge source disappeared inside its transaction$"):
        await in_transaction(
            database, lambda s: merge._delete_sources(database, SHOP, gone_source, s)
        )
    assert await database.contacts.count_documents({}) == 2
