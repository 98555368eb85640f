"""Contact reads to the edge: which contacts a filter selects, the loaders by id and email, counts.

tests/test_contacts_filters.py filters through the API; these call
loaders/contacts.py directly on the database: every bound on both sides
of its value (the "at most" bounds as the embedded server is sent them,
`$lt` or `$eq`, read through the field's own index as a sorted page
does), the fields stored before they were recorded, another shop's twin
of every contact never selected, what the loaders return and leave out,
and which counts come from the shop's counters rather than the contacts.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from bson import Decimal128, ObjectId

from loaders import contacts as loaders_contacts
from loaders.contacts import (
    LIST_PROJECTION,
    SORT_FIELDS,
    ContactByEmailKeyLoader,
    ContactByIdLoader,
    ContactFilterSpec,
    adapt_to_server,
    contact_match,
    count_contacts,
    label_key,
)
from loaders.keyset import PageRequest, find_page
from loaders.mongo import Database
from resolvers.contact_counts import rebuild_counts
from resolvers.contacts import new_contact
from resolvers.validation import email_key

SHOP, OTHER = "acme", "other"
T0 = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)


def person(email: str, *, drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """A contact of SHOP as stored; `drop` leaves out fields older documents lack."""
    details: dict[str, Any] = {
        k: fields.pop(k) for k in ("firstName", "lastName", "company") if k in fields
    }
    doc = new_contact(
        SHOP,
        email,
        email_key(email),
        fields.pop("kind", "LEAD"),
        details,
        fields.pop("createdAt", T0),
        labels=fields.pop("labels", None),
    )
    doc.update(fields)
    for name in drop:
        doc.pop(name, None)
    return doc


async def store(database: Any, *docs: dict[str, Any]) -> None:
    """The contacts, and a twin of each in another shop that every read of SHOP must pass over."""
    twins = [{**doc, "_id": ObjectId(), "shopId": OTHER} for doc in docs]
    await database.contacts.insert_many([*docs, *twins])


async def selected(
    database: Any, spec: ContactFilterSpec | None = None, text: str | None = None, *, by: str = ""
) -> list[str]:
    """The emails a page sorted by `by` (a SORT_FIELDS name) finds, read as the API reads it."""
    field = SORT_FIELDS[by] if by else "emailKey"
    page = await find_page(
        database.contacts,
        contact_match(SHOP, text, spec),
        field,
        True,
        PageRequest(first=250),
        projection=LIST_PROJECTION,
    )
    return sorted(row["email"] for row in page.rows)


# -- labels are compared by key -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("VIP", "vip"),
        ("  Big \t SALE\n", "big sale"),
        ("Straße", "strasse"),  # case-folded, not only lower-cased
        ("ǅemal", "ǆemal"),
        ("", ""),
    ],
)
def test_a_label_key_is_the_name_case_folded_with_its_spaces_collapsed(name, key):
    assert label_key(name) == key


# -- ranges: each bound on both sides of its value --------------------------------

AMOUNTS = ["9.99", "10.00", "10.01", "19.99", "20.00", "20.01"]


@pytest.fixture
async def spenders(database) -> None:
    await store(database, *[person(f"s{a}@x.test", totalSpent=Decimal128(a)) for a in AMOUNTS])


def spent(*amounts: str) -> list[str]:
    return sorted(f"s{a}@x.test" for a in amounts)


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        ("10.00", None, spent("10.00", "10.01", "19.99", "20.00", "20.01")),
        ("10.01", None, spent("10.01", "19.99", "20.00", "20.01")),
        (None, "20.00", spent("9.99", "10.00", "10.01", "19.99", "20.00")),
        (None, "19.99", spent("9.99", "10.00", "10.01", "19.99")),
        ("10", "20", spent("10.00", "10.01", "19.99", "20.00")),
        ("10.00", "10.00", spent("10.00")),
        ("10.01", "10.00", []),
    ],
)
async def test_total_spent_bounds_include_the_amounts_at_them(
    database, spenders, low, high, expected
):
    spec = ContactFilterSpec(
        total_spent_min=None if low is None else Decimal(low),
        total_spent_max=None if high is None else Decimal(high),
    )
    # The page sorted by the amount reads its (shopId, totalSpent, _id) index.
    assert await selected(database, spec, by="TOTAL_SPENT") == expected


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (2, None, [2, 3, 4, 5]),
        (None, 4, [1, 2, 3, 4]),
        (2, 4, [2, 3, 4]),
        (3, 3, [3]),
        (0, 0, []),
        (4, 3, []),
    ],
)
async def test_order_count_bounds_include_the_counts_at_them(database, low, high, expected):
    await store(database, *[person(f"n{n}@x.test", orderCount=n) for n in range(1, 6)])
    spec = ContactFilterSpec(order_count_min=low, order_count_max=high)
    found = await selected(database, spec, by="ORDER_COUNT")
    assert found == [f"n{n}@x.test" for n in expected]


async def test_at_most_zero_orders_holds_the_contacts_without_orders(database, spenders):
    await database.contacts.insert_one(person("one@x.test", orderCount=1))
    found = await selected(database, ContactFilterSpec(order_count_max=0), by="ORDER_COUNT")
    assert found == spent(*AMOUNTS)


MOMENTS = {"early": T0 - MS, "at-low": T0, "inside": T0 + dt.timedelta(days=1)}
MOMENTS |= {"at-high": T0 + dt.timedelta(days=2), "late": T0 + dt.timedelta(days=2) + MS}


@pytest.mark.parametrize(
    ("after", "before", "expected"),
    [
        ("at-low", None, ["at-high", "inside", "late"]),
        ("early", None, ["at-high", "at-low", "inside", "late"]),
        (None, "at-high", ["at-low", "early", "inside"]),
        (None, "late", ["at-high", "at-low", "early", "inside"]),
        ("at-low", "at-high", ["inside"]),
        ("early", "late", ["at-high", "at-low", "inside"]),
        ("inside", "inside", []),
    ],
)
@pytest.mark.parametrize(
    ("sort_key", "stored", "after_field", "before_field"),
    [
        ("LAST_ORDER_AT", "lastOrderAt", "last_order_after", "last_order_before"),
        ("CREATED_AT", "createdAt", "created_after", "created_before"),
    ],
)
async def test_moment_bounds_leave_out_the_moments_at_them(
    database, sort_key, stored, after_field, before_field, after, before, expected
):
    # A contact without an order has no lastOrderAt: no order bound selects it.
    await store(
        database,
        *[person(f"{name}@x.test", **{stored: at}) for name, at in MOMENTS.items()],
        person("never@x.test", createdAt=MOMENTS["inside"], drop=("lastOrderAt",)),
    )
    bounds = {
        after_field: None if after is None else MOMENTS[after],
        before_field: None if before is None else MOMENTS[before],
    }
    found = await selected(database, ContactFilterSpec(**bounds), by=sort_key)
    if stored == "createdAt" and "inside" in expected:
        expected = [*expected, "never"]  # created at the same moment
    assert found == sorted(f"{name}@x.test" for name in expected)


async def test_the_embedded_server_is_sent_at_most_as_below_or_equal(monkeypatch):
    monkeypatch.setattr(loaders_contacts, "_lte_as_lt_or_eq", True)
    spec = ContactFilterSpec(
        total_spent_min=Decimal("10"), total_spent_max=Decimal("20.5"), order_count_max=3
    )
    assert contact_match(SHOP, spec=spec) == {
        "$and": [
            {"shopId": SHOP, "totalSpent": {"$gte": Decimal128("10")}},
            {
                "$or": [
                    {"totalSpent": {"$lt": Decimal128("20.5")}},
                    {"totalSpent": {"$eq": Decimal128("20.5")}},
                ]
            },
            {"$or": [{"orderCount": {"$lt": 3}}, {"orderCount": {"$eq": 3}}]},
        ]
    }


async def test_mongodb_is_sent_one_range_per_field(monkeypatch):
    # One `$gte`/`$lte` range beside shopId, which its (shopId, field, _id) index answers.
    monkeypatch.setattr(loaders_contacts, "_lte_as_lt_or_eq", False)
    spec = ContactFilterSpec(
        total_spent_min=Decimal("10"),
        total_spent_max=Decimal("20.5"),
        order_count_max=3,
        created_after=T0,
        created_before=T0 + MS,
    )
    assert contact_match(SHOP, spec=spec) == {
        "shopId": SHOP,
        "totalSpent": {"$gte": Decimal128("10"), "$lte": Decimal128("20.5")},
        "orderCount": {"$lte": 3},
        "createdAt": {"$gt": T0, "$lt": T0 + MS},
    }


# -- which server: learnt from buildInfo at connect ---------------------------------


async def test_the_server_in_use_was_recognised_at_connect(database):
    info = await database.db.command("buildInfo")
    assert loaders_contacts._lte_as_lt_or_eq is ("secantusVersion" in info)


class Reporting:
    """A server answering buildInfo, under its name or its alias as MongoDB does."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.asked = 0

    async def command(self, name: str) -> dict[str, Any]:
        if name not in ("buildInfo", "buildinfo"):
            raise AssertionError(f"no such command: {name!r}")
        self.asked += 1
        return self.info


@pytest.mark.parametrize(
    ("info", "workaround"),
    [
        ({"version": "8.0.4"}, False),
        ({"version": "8.0.4", "gitVersion": "secantusVersion"}, False),
        ({"version": "8.2.11", "secantusVersion": "0.7.0b3"}, True),
    ],
)
async def test_the_embedded_server_is_recognised_by_its_build_info(monkeypatch, info, workaround):
    monkeypatch.setattr(loaders_contacts, "_lte_as_lt_or_eq", not workaround)
    server = Reporting(info)
    await adapt_to_server(Database(server))
    assert server.asked == 1
    assert loaders_contacts._lte_as_lt_or_eq is workaround


# -- the other conditions ---------------------------------------------------------


@pytest.fixture
async def people(database) -> None:
    await store(
        database,
        person(
            "ann@x.test",
            kind="CUSTOMER",
            labels=["VIP", "Newsletter"],
            firstName="Ann",
            lastName="Lee",
            company="Acme",
            hasAccount=True,
            consent={"state": "SUBSCRIBED", "history": []},
            activeSubscriptionCount=1,
            isMember=True,
        ),
        person(
            "bob@x.test",
            kind="CUSTOMER",
            labels=["vip"],
            firstName="Bob",
            lastName="Ann",
            consent={"state": "UNSUBSCRIBED", "history": []},
            activeSubscriptionCount=2,
            isMember=False,
        ),
        person(
            "cleo@x.test",
            labels=["Wholesale", "Newsletter"],
            firstName="Cleo",
            lastName="Lee",
            company="Lee & Sons",
            consent={"state": "PENDING", "history": []},
            activeSubscriptionCount=0,
            isMember=False,
        ),
        # Explicitly not subscribed.
        person("dan@x.test", firstName="Dan", hasAccount=True, activeSubscriptionCount=0),
        # Stored before consent, subscriptions and membership were recorded.
        person(
            "eve@x.test",
            labels=["Newsletter"],
            consent={},
            drop=("activeSubscriptionCount", "isMember"),
        ),
        person("fay@x.test", drop=("consent", "activeSubscriptionCount", "isMember")),
    )


ANN, BOB, CLEO, DAN, EVE, FAY = (f"{n}@x.test" for n in ("ann", "bob", "cleo", "dan", "eve", "fay"))
EVERYONE = [ANN, BOB, CLEO, DAN, EVE, FAY]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, EVERYONE),
        (ContactFilterSpec(), EVERYONE),
        (ContactFilterSpec(kind="CUSTOMER"), [ANN, BOB]),
        (ContactFilterSpec(kind="LEAD"), [CLEO, DAN, EVE, FAY]),
        (ContactFilterSpec(labels_any=["  VIP "]), [ANN, BOB]),
        (ContactFilterSpec(labels_any=["vip", "WHOLESALE"]), [ANN, BOB, CLEO]),
        (ContactFilterSpec(labels_any=[]), EVERYONE),
        (ContactFilterSpec(labels_all=["newsletter", "Vip"]), [ANN]),
        (ContactFilterSpec(labels_all=["NEWSLETTER"]), [ANN, CLEO, EVE]),
        (ContactFilterSpec(labels_all=[]), EVERYONE),
        (ContactFilterSpec(labels_none=["Newsletter"]), [BOB, DAN, FAY]),
        (ContactFilterSpec(labels_none=["vip", " wholesale"]), [DAN, EVE, FAY]),
        (ContactFilterSpec(labels_none=[]), EVERYONE),
        (ContactFilterSpec(labels_any=["vip", "newsletter"], labels_none=["NewsLetter"]), [BOB]),
        (ContactFilterSpec(labels_any=["newsletter"], labels_all=["wholesale"]), [CLEO]),
        (ContactFilterSpec(marketing_state="SUBSCRIBED"), [ANN]),
        (ContactFilterSpec(marketing_state="UNSUBSCRIBED"), [BOB]),
        (ContactFilterSpec(marketing_state="PENDING"), [CLEO]),
        # Never asked: stored so, or stored before consent was recorded.
        (ContactFilterSpec(marketing_state="NOT_SUBSCRIBED"), [DAN, EVE, FAY]),
        (ContactFilterSpec(has_account=True), [ANN, DAN]),
        (ContactFilterSpec(has_account=False), [BOB, CLEO, EVE, FAY]),
        (ContactFilterSpec(has_active_subscription=True), [ANN, BOB]),
        (ContactFilterSpec(has_active_subscription=False), [CLEO, DAN, EVE, FAY]),
        (ContactFilterSpec(is_member=True), [ANN]),
        (ContactFilterSpec(is_member=False), [BOB, CLEO, DAN, EVE, FAY]),
        (ContactFilterSpec(extra=[{"company": {"$eq": "Acme"}}]), [ANN]),
        (
            ContactFilterSpec(
                extra=[{"labelKeys": {"$eq": "newsletter"}}, {"hasAccount": {"$eq": False}}]
            ),
            [CLEO, EVE],
        ),
        (ContactFilterSpec(kind="LEAD", labels_any=["newsletter"], has_account=False), [CLEO, EVE]),
    ],
)
async def test_a_filter_selects_exactly_its_contacts_of_the_shop(database, people, spec, expected):
    assert await selected(database, spec) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, EVERYONE),
        ("", EVERYONE),
        ("   ", EVERYONE),
        ("ann", [ANN, BOB]),  # a first name of one, the last name of the other
        ("LEE", [ANN, CLEO]),
        ("ann lee", [ANN]),  # every word must match
        ("lee sons", [CLEO]),
        ("ann cleo", []),
    ],
)
async def test_a_query_selects_the_shops_contacts_with_every_word(database, people, text, expected):
    assert await selected(database, text=text) == expected


@pytest.mark.parametrize(
    ("text", "spec", "expected"),
    [
        ("lee", ContactFilterSpec(kind="LEAD"), [CLEO]),
        ("ann lee", ContactFilterSpec(kind="LEAD"), []),
        ("lee", ContactFilterSpec(extra=[{"company": {"$eq": "Acme"}}]), [ANN]),
        ("x.test", ContactFilterSpec(order_count_max=0), EVERYONE),
    ],
)
async def test_a_query_and_a_filter_both_hold(database, people, text, spec, expected):
    assert await selected(database, spec, text) == expected


def test_a_one_word_query_is_one_condition_beside_the_shop():
    # No top-level `$and`: with one, the embedded server reads every shop's contacts.
    assert contact_match(SHOP, "Ann") == {"shopId": SHOP, "searchTerms": {"$regex": "^ann"}}
    assert contact_match(SHOP, "Ann", ContactFilterSpec(kind="LEAD")) == {
        "shopId": SHOP,
        "searchTerms": {"$regex": "^ann"},
        "kind": {"$eq": "LEAD"},
    }


def test_no_query_and_no_filter_is_the_whole_shop():
    for text in (None, "", " \t "):
        assert contact_match(SHOP, text) == {"shopId": SHOP}
        assert contact_match(SHOP, text, ContactFilterSpec()) == {"shopId": SHOP}


def test_client_values_stay_values_under_an_operator():
    spec = ContactFilterSpec(kind="$where", marketing_state="$ne", labels_any=["$gt"])
    assert contact_match(SHOP, spec=spec) == {
        "shopId": SHOP,
        "kind": {"$eq": "$where"},
        "labelKeys": {"$in": ["$gt"]},
        "consent.state": {"$eq": "$ne"},
    }


# -- the loaders ------------------------------------------------------------------


async def test_contacts_are_loaded_by_id_in_the_order_asked_and_only_from_the_shop(database):
    ann, bob = person("ann@x.test", firstName="Ann"), person("bob@x.test")
    other = {**person("ann@x.test"), "shopId": OTHER}
    await database.contacts.insert_many([ann, bob, other])

    loader = ContactByIdLoader(database, SHOP)
    found = await loader.load_many([bob["_id"], ObjectId(), other["_id"], ann["_id"]])

    assert [None if doc is None else doc["email"] for doc in found] == [
        "bob@x.test",
        None,
        None,
        "ann@x.test",
    ]
    # A list row leaves out the activity log and the search terms.
    assert found[3] == {k: v for k, v in ann.items() if k not in ("activity", "searchTerms")}
    assert "activity" not in found[0] and "searchTerms" not in found[0]


async def test_contacts_are_loaded_by_email_key_in_the_order_asked_and_only_from_the_shop(
    database,
):
    ann, bob = person("Ann@X.test", firstName="Ann"), person("bob@x.test")
    await database.contacts.insert_many(
        [
            ann,
            bob,
            {**person("cleo@x.test"), "shopId": OTHER},
            {**ann, "_id": ObjectId(), "shopId": OTHER},
        ]
    )

    loader = ContactByEmailKeyLoader(database, SHOP)
    found = await loader.load_many(["bob@x.test", "cleo@x.test", ann["emailKey"], "nobody@x.test"])

    assert [None if doc is None else doc["_id"] for doc in found] == [
        bob["_id"],
        None,
        ann["_id"],
        None,
    ]
    assert found[2] == {k: v for k, v in ann.items() if k not in ("activity", "searchTerms")}


# -- counts -----------------------------------------------------------------------


@pytest.fixture
async def counted(database, people) -> None:
    await database.contacts.insert_one(person("gus@x.test", kind=None))
    for shop in (SHOP, OTHER):
        await rebuild_counts(database, shop)


def matching(shop: str = SHOP, text: str | None = None, **spec: Any) -> tuple[Any, ...]:
    """A filter of the API, made into its condition by the test itself."""
    return (shop, text, ContactFilterSpec(**spec) if spec else None)


async def counting(commands, database, match: Any) -> tuple[int, list[str], list[str]]:
    """The count, and the commands it sent to the counters and to the contacts."""
    if isinstance(match, tuple):
        match = contact_match(*match)
    commands.reset()
    n = await count_contacts(database, match)
    return n, commands.on("contact_counts"), commands.on("contacts")


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"shopId": SHOP}, 7),
        (matching(), 7),
        (matching(text="  "), 7),
        (matching(kind="CUSTOMER"), 2),
        (matching(kind="LEAD"), 4),
        (matching(OTHER, kind="LEAD"), 4),
    ],
)
async def test_the_whole_shop_or_one_kind_is_counted_from_the_counters(
    database, commands, counted, match, expected
):
    assert await counting(commands, database, match) == (expected, ["find"], [])


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ({"shopId": SHOP, "kind": "LEAD"}, 4),
        ({"shopId": SHOP, "kind": {"$eq": None}}, 1),  # stored without a kind
        ({"shopId": SHOP, "kind": {"$eq": "VISITOR"}}, 0),
        ({"shopId": SHOP, "kind": {"$in": ["LEAD"]}}, 4),
        ({"shopId": SHOP, "kind": {"$eq": "LEAD", "$ne": "CUSTOMER"}}, 4),
        ({"shopId": SHOP, "kind": {"$eq": "LEAD"}, "hasAccount": {"$eq": True}}, 1),
        ({"shopId": {"$in": [SHOP, OTHER]}}, 13),
        ({"shopId": {"$in": [SHOP, OTHER]}, "kind": {"$eq": "CUSTOMER"}}, 4),
        ({"kind": {"$eq": "CUSTOMER"}}, 4),
        ({}, 13),
        (matching(text="lee"), 2),
        (matching(kind="LEAD", has_account=True), 1),
    ],
)
async def test_any_other_match_is_counted_from_the_contacts(
    database, commands, counted, match, expected
):
    assert await counting(commands, database, match) == (expected, [], ["aggregate"])
