"""A contact's orders and subscription contracts, read straight from the loaders.

tests/test_orders.py and tests/test_subscription_contracts.py page through
the API; these pin the reads underneath on the embedded server: newest
first by (sort field desc, _id desc), ties broken by _id, drafts last;
canceled and draft orders hidden unless asked; every page size around the
edges, each cursor continuing exactly where its page stopped; many
contacts' first pages and counts in one command, each contact getting only
its own records; and another shop's records never appearing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from loaders.contact_records import (
    CountByContactIdLoader,
    CountKey,
    PageKey,
    PagesByContactIdLoader,
    RecordByIdLoader,
    Records,
)
from loaders.keyset import BadCursor, Page, encode_cursor
from loaders.orders import DEFAULT_PAGE, ORDERS, history_stages, order_statuses
from loaders.subscription_contracts import ALL_STATUSES, CONTRACTS

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
SHOWN = ("OPEN", "FULFILLED")  # what an order history shows unless asked for more
EVERY_ORDER = ("OPEN", "FULFILLED", "CANCELED", "DRAFT")


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def newest_first(rows: list[dict[str, Any]], field: str) -> list[ObjectId]:
    """The ids in the order a contact's tab shows them: dated newest first, undated last, ties by _id."""
    dated = [r for r in rows if r.get(field) is not None]
    undated = [r for r in rows if r.get(field) is None]
    dated.sort(key=lambda r: (r[field], r["_id"]), reverse=True)
    undated.sort(key=lambda r: r["_id"], reverse=True)
    return [r["_id"] for r in dated + undated]


def ids(page: Page) -> list[ObjectId]:
    return [row["_id"] for row in page.rows]


class Store:
    """Records written the way the shop writes them, with external ids unique per shop."""

    def __init__(self, database: Any) -> None:
        self.database = database
        self.written = 0

    async def order(
        self,
        contact_id: ObjectId,
        placed: dt.datetime | None,
        status: str = "OPEN",
        shop: str = SHOP,
        oid: ObjectId | None = None,
    ) -> dict[str, Any]:
        self.written += 1
        doc: dict[str, Any] = {
            "_id": oid or ObjectId(),
            "shopId": shop,
            "contactId": contact_id,
            "externalId": f"#{self.written}",
            "status": status,
        }
        if placed is not None:
            doc["placedAt"] = placed
        await self.database.orders.insert_one(doc)
        return doc

    async def contract(
        self, contact_id: ObjectId, started: dt.datetime, status: str = "ACTIVE", shop: str = SHOP
    ) -> dict[str, Any]:
        self.written += 1
        doc = {
            "_id": ObjectId(),
            "shopId": shop,
            "contactId": contact_id,
            "externalId": f"sub-{self.written}",
            "status": status,
            "startedAt": started,
        }
        await self.database.subscription_contracts.insert_one(doc)
        return doc


@pytest.fixture
def store(database: Any) -> Store:
    return Store(database)


async def history(store: Store, contact_id: ObjectId) -> list[dict[str, Any]]:
    """Ten shown orders: three placed at one instant (ties), two drafts, one canceled, written out of order."""
    tied = sorted(ObjectId() for _ in range(3))
    rows = [
        await store.order(contact_id, at(30)),
        await store.order(contact_id, at(10), "FULFILLED"),
        await store.order(contact_id, at(20), oid=tied[1]),
        await store.order(contact_id, None, "DRAFT"),
        await store.order(contact_id, at(20), "FULFILLED", oid=tied[0]),
        await store.order(contact_id, at(40)),
        await store.order(contact_id, at(20), oid=tied[2]),
        await store.order(contact_id, at(25), "CANCELED"),
        await store.order(contact_id, None, "DRAFT"),
        await store.order(contact_id, at(5)),
    ]
    return rows


async def every_page(
    database: Any, records: Records, contact_id: ObjectId, first: int, statuses: tuple[str, ...]
) -> list[Page]:
    """Pages one after another, each after the last row of the one before, as a client pages."""
    pages = [
        await PagesByContactIdLoader(database, SHOP, records).load(
            PageKey(contact_id, first, None, statuses)
        )
    ]
    while pages[-1].has_next:
        after = pages[-1].cursor(pages[-1].rows[-1])
        pages.append(
            await PagesByContactIdLoader(database, SHOP, records).load(
                PageKey(contact_id, first, after, statuses)
            )
        )
        assert len(pages) <= 20, "paging does not end"
    return pages


# -- the statuses an order history shows --------------------------------------


@pytest.mark.parametrize(
    ("include_canceled", "include_drafts", "statuses"),
    [
        (False, False, ("OPEN", "FULFILLED")),
        (True, False, ("OPEN", "FULFILLED", "CANCELED")),
        (False, True, ("OPEN", "FULFILLED", "DRAFT")),
        (True, True, ("OPEN", "FULFILLED", "CANCELED", "DRAFT")),
    ],
)
def test_canceled_and_draft_orders_are_shown_only_when_asked_for(
    include_canceled, include_drafts, statuses
):
    assert order_statuses(include_canceled, include_drafts) == statuses


# -- one contact's pages ------------------------------------------------------


@pytest.mark.parametrize("first", [1, 2, 3, 4, 7, 8, 9, 10, 11, DEFAULT_PAGE])
async def test_order_pages_walk_the_history_newest_first_with_ties_by_id_and_drafts_last(
    database, store, first
):
    contact = ObjectId()
    rows = await history(store, contact)
    pages = await every_page(database, ORDERS, contact, first, EVERY_ORDER)
    expected = newest_first(rows, "placedAt")
    assert [i for page in pages for i in ids(page)] == expected
    assert [len(page.rows) for page in pages[:-1]] == [first] * (len(pages) - 1)
    assert len(pages) == -(-len(rows) // first)
    assert [page.has_previous for page in pages] == [False] + [True] * (len(pages) - 1)
    assert [page.has_next for page in pages] == [True] * (len(pages) - 1) + [False]


async def test_a_page_holds_the_records_as_stored(database, store):
    contact = ObjectId()
    placed = await store.order(contact, at(1), "FULFILLED")
    draft = await store.order(contact, None, "DRAFT")
    page = await PagesByContactIdLoader(database, SHOP, ORDERS).load(
        PageKey(contact, 5, None, EVERY_ORDER)
    )
    assert page.rows == [placed, draft]
    assert page.field == "placedAt"


async def test_the_default_page_of_orders_is_twenty_and_the_twenty_first_starts_the_next(
    database, store
):
    contact = ObjectId()
    rows = [await store.order(contact, at(i)) for i in range(DEFAULT_PAGE)]
    loader = PagesByContactIdLoader(database, SHOP, ORDERS)
    full = await loader.load(PageKey(contact, DEFAULT_PAGE, None, SHOWN))
    assert ids(full) == newest_first(rows, "placedAt")
    assert not full.has_next

    later = await store.order(contact, at(-1))
    pages = await every_page(database, ORDERS, contact, DEFAULT_PAGE, SHOWN)
    assert [ids(p) for p in pages] == [newest_first(rows, "placedAt"), [later["_id"]]]
    assert [(p.has_previous, p.has_next) for p in pages] == [(False, True), (True, False)]


@pytest.mark.parametrize(
    ("statuses", "shown"),
    [
        (SHOWN, {"OPEN", "FULFILLED"}),
        (("OPEN", "FULFILLED", "CANCELED"), {"OPEN", "FULFILLED", "CANCELED"}),
        (("OPEN", "FULFILLED", "DRAFT"), {"OPEN", "FULFILLED", "DRAFT"}),
        (("CANCELED",), {"CANCELED"}),
    ],
)
async def test_every_page_and_count_show_only_the_statuses_asked_for(
    database, store, statuses, shown
):
    contact = ObjectId()
    rows = await history(store, contact)
    expected = newest_first([r for r in rows if r["status"] in shown], "placedAt")
    for first in (2, len(expected)):
        pages = await every_page(database, ORDERS, contact, first, statuses)
        assert [i for page in pages for i in ids(page)] == expected
    count = CountByContactIdLoader(database, SHOP, ORDERS)
    assert await count.load(CountKey(contact, statuses)) == len(expected)


async def test_a_cursor_on_a_draft_continues_with_the_older_drafts_only(database, store):
    contact = ObjectId()
    rows = await history(store, contact)
    order = newest_first(rows, "placedAt")
    last_dated = order[-3]
    draft = order[-2]
    by_id = {r["_id"]: r for r in rows}
    for stop, rest in ((last_dated, order[-2:]), (draft, order[-1:]), (order[-1], [])):
        after = Page([], False, False, "placedAt").cursor(by_id[stop])
        page = await PagesByContactIdLoader(database, SHOP, ORDERS).load(
            PageKey(contact, 5, after, EVERY_ORDER)
        )
        assert (ids(page), page.has_next, page.has_previous) == (rest, False, True)


async def test_a_cursor_of_another_sort_order_is_refused(database, store):
    contact = ObjectId()
    await store.order(contact, at(1))
    after = encode_cursor("startedAt", at(1), ObjectId())
    with pytest.raises(BadCursor, match="another sort order"):
        await PagesByContactIdLoader(database, SHOP, ORDERS).load(PageKey(contact, 5, after, SHOWN))


# -- many contacts at once ----------------------------------------------------


async def test_first_pages_of_many_contacts_are_one_command_each_contact_getting_its_own(
    database, store, commands
):
    contacts = [ObjectId() for _ in range(4)]
    rows: dict[ObjectId, list[dict[str, Any]]] = {c: [] for c in contacts}
    for n, contact in enumerate(contacts[:3]):
        for i in range(n + 2):  # 2, 3 and 4 orders; the fourth contact has none
            rows[contact].append(await store.order(contact, at(10 * i + n)))
        rows[contact].append(await store.order(contact, at(99), "CANCELED"))
    loader = PagesByContactIdLoader(database, SHOP, ORDERS)
    commands.reset()
    pages = await asyncio.gather(*[loader.load(PageKey(c, 3, None, SHOWN)) for c in contacts])
    assert commands.on("orders") == ["aggregate"]
    for contact, page in zip(contacts, pages, strict=True):
        shown = newest_first([r for r in rows[contact] if r["status"] != "CANCELED"], "placedAt")
        assert (ids(page), page.has_next, page.has_previous) == (shown[:3], len(shown) > 3, False)


async def test_first_pages_of_many_contacts_come_in_one_reply(database, store, commands):
    contacts = [ObjectId() for _ in range(5)]
    for contact in contacts:
        await store.order(contact, at(1))
    loader = PagesByContactIdLoader(database, SHOP, ORDERS)
    commands.reset()
    pages = await asyncio.gather(*[loader.load(PageKey(c, 1, None, SHOWN)) for c in contacts])
    assert [len(p.rows) for p in pages] == [1] * 5
    assert commands.on("orders") == ["aggregate"]


async def test_one_batch_serves_other_sizes_statuses_and_later_pages_each_as_asked(database, store):
    ann, bob = ObjectId(), ObjectId()
    ann_rows = await history(store, ann)
    bob_rows = [await store.order(bob, at(i)) for i in range(4)]
    ann_shown = newest_first([r for r in ann_rows if r["status"] in SHOWN], "placedAt")
    ann_all = newest_first(ann_rows, "placedAt")
    bob_all = newest_first(bob_rows, "placedAt")
    by_id = {r["_id"]: r for r in ann_rows}
    after = Page([], False, False, "placedAt").cursor(by_id[ann_all[1]])
    loader = PagesByContactIdLoader(database, SHOP, ORDERS)
    keys = [
        PageKey(ann, 2, None, SHOWN),
        PageKey(ann, 3, None, SHOWN),
        PageKey(ann, 2, None, EVERY_ORDER),
        PageKey(bob, 2, None, SHOWN),
        PageKey(bob, 4, None, SHOWN),
        PageKey(ann, 3, after, EVERY_ORDER),
    ]
    pages = await loader.load_many(keys)
    assert [(ids(p), p.has_next, p.has_previous) for p in pages] == [
        (ann_shown[:2], True, False),
        (ann_shown[:3], True, False),
        (ann_all[:2], True, False),
        (bob_all[:2], True, False),
        (bob_all, False, False),
        (ann_all[2:5], True, True),
    ]


async def test_another_shops_records_never_appear(database, store):
    contact = ObjectId()
    mine = [await store.order(contact, at(i)) for i in (1, 3)]
    theirs = [await store.order(contact, at(i), shop=OTHER_SHOP) for i in (0, 2, 4)]
    expected = newest_first(mine, "placedAt")
    for first in (1, 2, 5):
        pages = await every_page(database, ORDERS, contact, first, SHOWN)
        assert [i for page in pages for i in ids(page)] == expected
    # A cursor from the other shop's newest order still reads only this shop's.
    after = Page([], False, False, "placedAt").cursor(theirs[-1])
    page = await PagesByContactIdLoader(database, SHOP, ORDERS).load(
        PageKey(contact, 5, after, SHOWN)
    )
    assert ids(page) == expected
    count = CountByContactIdLoader(database, SHOP, ORDERS)
    assert await count.load(CountKey(contact, SHOWN)) == 2
    by_id = RecordByIdLoader(database, SHOP, ORDERS)
    assert await by_id.load_many([theirs[0]["_id"], mine[0]["_id"]]) == [None, mine[0]]


async def test_counts_of_many_contacts_are_exact_per_status_set_in_one_command_each(
    database, store, commands
):
    ann, bob, cal = ObjectId(), ObjectId(), ObjectId()
    await history(store, ann)  # 7 shown, 1 canceled, 2 drafts
    for i in range(3):
        await store.order(bob, at(i))
    await store.order(bob, at(9), "CANCELED")
    await store.order(cal, at(1), shop=OTHER_SHOP)
    loader = CountByContactIdLoader(database, SHOP, ORDERS)
    keys = [
        CountKey(ann, SHOWN),
        CountKey(bob, SHOWN),
        CountKey(cal, SHOWN),
        CountKey(ann, EVERY_ORDER),
        CountKey(bob, order_statuses(True, False)),
        CountKey(ObjectId(), EVERY_ORDER),
    ]
    commands.reset()
    assert await loader.load_many(keys) == [7, 3, 0, 10, 4, 0]
    assert commands.on("orders") == ["aggregate"] * 3


async def test_counts_of_many_contacts_come_in_one_reply(database, store, commands):
    contacts = [ObjectId() for _ in range(5)]
    for n, contact in enumerate(contacts):
        for i in range(n + 1):
            await store.order(contact, at(i))
    commands.reset()
    counts = await CountByContactIdLoader(database, SHOP, ORDERS).load_many(
        [CountKey(c, SHOWN) for c in contacts]
    )
    assert counts == [1, 2, 3, 4, 5]
    assert commands.on("orders") == ["aggregate"]


async def test_records_by_id_come_in_the_order_asked_with_none_for_the_missing(
    database, store, commands
):
    contact = ObjectId()
    rows = [await store.order(contact, at(i)) for i in range(4)]
    asked = [rows[2]["_id"], ObjectId(), rows[0]["_id"], rows[3]["_id"], rows[1]["_id"]]
    commands.reset()
    found = await RecordByIdLoader(database, SHOP, ORDERS).load_many(asked)
    assert found == [rows[2], None, rows[0], rows[3], rows[1]]
    assert commands.on("orders") == ["find"]


async def test_order_history_stages_select_these_contacts_orders_in_these_statuses(database, store):
    ann, bob, cal = ObjectId(), ObjectId(), ObjectId()
    ann_rows = await history(store, ann)
    bob_rows = [await store.order(bob, at(1)), await store.order(bob, None, "DRAFT")]
    await store.order(cal, at(2))
    await store.order(ann, at(3), shop=OTHER_SHOP)

    async def selected(contacts: list[ObjectId], statuses: tuple[str, ...]) -> set[ObjectId]:
        stages = history_stages(SHOP, contacts, statuses)
        found = await (await database.orders.aggregate(stages)).to_list()
        return {row["_id"] for row in found}

    def of(rows: list[dict[str, Any]], statuses: tuple[str, ...]) -> set[ObjectId]:
        return {r["_id"] for r in rows if r["status"] in statuses}

    assert await selected([ann], SHOWN) == of(ann_rows, SHOWN)
    assert await selected([ann, bob], SHOWN) == of(ann_rows + bob_rows, SHOWN)
    assert await selected([bob, ann], ("DRAFT",)) == of(ann_rows + bob_rows, ("DRAFT",))
    assert await selected([], EVERY_ORDER) == set()


# -- subscription contracts ---------------------------------------------------


async def test_contracts_walk_newest_started_first_in_every_status_or_only_those_asked(
    database, store
):
    contact = ObjectId()
    rows = [
        await store.contract(contact, at(i % 4), status)
        for i, status in enumerate(ALL_STATUSES * 2)
    ]
    await store.contract(contact, at(9), shop=OTHER_SHOP)
    for statuses in (
        ALL_STATUSES,
        tuple(reversed(ALL_STATUSES)),
        ("ACTIVE",),
        ("PAUSED", "CANCELED"),
    ):
        expected = newest_first([r for r in rows if r["status"] in statuses], "startedAt")
        for first in (1, 3, len(expected)):
            pages = await every_page(database, CONTRACTS, contact, first, statuses)
            assert [i for page in pages for i in ids(page)] == expected
        count = CountByContactIdLoader(database, SHOP, CONTRACTS)
        assert await count.load(CountKey(contact, statuses)) == len(expected)


async def test_contracts_in_every_status_are_read_without_a_status_condition(
    database, store, commands
):
    contact = ObjectId()
    await store.contract(contact, at(1), "EXPIRED")
    commands.reset()
    await PagesByContactIdLoader(database, SHOP, CONTRACTS).load(
        PageKey(contact, 5, None, ALL_STATUSES)
    )
    await CountByContactIdLoader(database, SHOP, CONTRACTS).load(CountKey(contact, ALL_STATUSES))
    for command in commands.documents("aggregate", "subscription_contracts"):
        assert "status" not in str(command["pipeline"])
    assert len(commands.documents("aggregate", "subscription_contracts")) == 2


async def test_a_list_of_more_contacts_than_a_default_reply_holds_still_costs_one_command_each(
    database, commands
):
    # A server's first reply holds 101 documents unless asked for more: a page
    # of 120 contacts with their latest orders must not need a second round trip.
    contacts = [ObjectId() for _ in range(120)]
    orders = [
        {
            "_id": ObjectId(),
            "shopId": SHOP,
            "contactId": contact,
            "externalId": f"#{n}",
            "status": "OPEN",
            "placedAt": at(n),
        }
        for n, contact in enumerate(contacts)
    ]
    await database.orders.insert_many(orders)
    commands.reset()
    pages = await PagesByContactIdLoader(database, SHOP, ORDERS).load_many(
        [PageKey(c, 1, None, SHOWN) for c in contacts]
    )
    assert [ids(p) for p in pages] == [[o["_id"]] for o in orders]
    counts = await CountByContactIdLoader(database, SHOP, ORDERS).load_many(
        [CountKey(c, SHOWN) for c in contacts]
    )
    assert counts == [1] * 120
    found = await RecordByIdLoader(database, SHOP, ORDERS).load_many([o["_id"] for o in orders])
    assert found == orders
    assert commands.on("orders") == ["aggregate", "aggregate", "find"]


async def test_a_later_page_of_more_orders_than_a_default_reply_holds_is_one_command(
    database, commands
):
    contact = ObjectId()
    orders = [
        {
            "_id": ObjectId(),
            "shopId": SHOP,
            "contactId": contact,
            "externalId": f"#{n}",
            "status": "OPEN",
            "placedAt": at(-n),
        }
        for n in range(160)
    ]
    await database.orders.insert_many(orders)
    loader = PagesByContactIdLoader(database, SHOP, ORDERS)
    after = Page([], False, False, "placedAt").cursor(orders[4])
    commands.reset()
    page = await loader.load(PageKey(contact, 150, after, SHOWN))
    assert commands.on("orders") == ["aggregate"]
    assert (ids(page), page.has_next) == ([o["_id"] for o in orders[5:155]], True)
