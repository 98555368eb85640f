"""The contact counters as parts: what a change stores, how a read sums and folds them, a rebuild.

tests/test_contact_counts.py checks through the API that every write keeps
the counts exact; these call the counter functions directly for the exact
parts stored, the folding threshold and batches, and a rebuild's count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pymongo.errors import PyMongoError

from resolvers import contact_counts
from resolvers.activity import in_transaction
from resolvers.contact_counts import (
    COMPACT_AT,
    compact,
    contact_totals,
    count_contacts,
    kind_change,
    rebuild_counts,
)

SHOP, OTHER = "acme", "other"


async def parts(database: Any, shop: str = SHOP) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in part.items() if k != "_id"}
        for part in await database.contact_counts.find(
            {"shopId": shop}, sort=[("_id", 1)]
        ).to_list()
    ]


async def add_parts(database: Any, *changes: dict[str, int], shop: str = SHOP) -> None:
    for change in changes:
        await count_contacts(database, shop, change, session=None)


# -- a change is one part --------------------------------------------------------


@pytest.mark.parametrize(
    ("deltas", "part"),
    [
        ({"LEAD": 1}, {"total": 1, "LEAD": 1}),
        ({"CUSTOMER": -1}, {"total": -1, "CUSTOMER": -1}),
        ({"LEAD": -1, "CUSTOMER": 1}, {"total": 0, "LEAD": -1, "CUSTOMER": 1}),
        ({"LEAD": 3, "CUSTOMER": 0}, {"total": 3, "LEAD": 3}),  # no change is not stored
        ({"CUSTOMER": 2, "LEAD": 5}, {"total": 7, "CUSTOMER": 2, "LEAD": 5}),
    ],
)
async def test_a_change_is_stored_as_one_part_holding_it_and_its_total(database, deltas, part):
    await count_contacts(database, SHOP, deltas, session=None)

    assert await parts(database) == [{"shopId": SHOP, **part}]


@pytest.mark.parametrize("deltas", [{}, {"LEAD": 0}, {"LEAD": 0, "CUSTOMER": 0}])
async def test_no_change_stores_nothing(database, deltas):
    await count_contacts(database, SHOP, deltas, session=None)

    assert await database.contact_counts.count_documents({}) == 0


@pytest.mark.parametrize(
    ("deltas", "named"),
    [
        ({"VISITOR": 1}, "VISITOR"),
        ({"LEAD": 1, "lead": 1, "Guest": 1}, "Guest"),
        ({"VISITOR": 1, None: 1}, "None"),  # a contact stored without a kind
    ],
)
async def test_an_unknown_kind_is_refused_by_its_name_and_nothing_is_stored(
    database, deltas, named
):
    with pytest.raises(ValueError) as refused:
        await count_contacts(database, SHOP, deltas, session=None)

    assert str(refused.value) == f"unknown contact kind {named}"
    assert await database.contact_counts.count_documents({}) == 0


async def test_a_change_is_counted_only_if_its_transaction_commits(database):
    async def work(session: Any) -> None:
        await count_contacts(database, SHOP, {"LEAD": 1}, session=session)
        raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await in_transaction(database, work)

    assert await database.contact_counts.count_documents({}) == 0


@pytest.mark.parametrize(
    ("before", "after", "deltas"),
    [
        (None, "LEAD", {"LEAD": 1}),
        ("CUSTOMER", None, {"CUSTOMER": -1}),
        ("LEAD", "CUSTOMER", {"LEAD": -1, "CUSTOMER": 1}),
        ("CUSTOMER", "CUSTOMER", {}),
        (None, None, {}),
    ],
)
def test_a_kind_change_is_one_out_of_the_old_kind_and_one_into_the_new(before, after, deltas):
    assert kind_change(before, after) == deltas


# -- reading and folding --------------------------------------------------------


async def test_a_read_sums_the_shop_s_parts_and_only_its_own(database):
    await add_parts(database, {"LEAD": 2}, {"LEAD": -1, "CUSTOMER": 1}, {"CUSTOMER": 4})
    await add_parts(database, {"LEAD": 7}, shop=OTHER)
    # A part written before the kinds were counted, or by hand: missing and null count 0.
    await database.contact_counts.insert_one({"shopId": SHOP, "total": 1, "LEAD": None})

    assert await contact_totals(database, SHOP) == {"total": 7, "CUSTOMER": 5, "LEAD": 1}
    assert await contact_totals(database, "nobody") == {"total": 0, "CUSTOMER": 0, "LEAD": 0}


async def test_a_read_folds_the_parts_only_past_the_threshold(database):
    await add_parts(database, *[{"LEAD": 1}] * COMPACT_AT)

    assert (await contact_totals(database, SHOP))["total"] == COMPACT_AT
    assert await database.contact_counts.count_documents({"shopId": SHOP}) == COMPACT_AT

    await add_parts(database, {"CUSTOMER": 1})

    assert await contact_totals(database, SHOP) == {
        "total": COMPACT_AT + 1,
        "CUSTOMER": 1,
        "LEAD": COMPACT_AT,
    }
    assert await parts(database) == [
        {"shopId": SHOP, "total": COMPACT_AT + 1, "CUSTOMER": 1, "LEAD": COMPACT_AT}
    ]


async def test_folding_runs_in_batches_until_one_part_holds_the_sum(database, monkeypatch):
    monkeypatch.setattr(contact_counts, "COMPACT_BATCH", 3)
    await add_parts(database, *[{"LEAD": 1}] * 6, {"CUSTOMER": 2})
    await add_parts(database, {"LEAD": 1}, shop=OTHER)

    await compact(database, SHOP)

    assert await parts(database) == [{"shopId": SHOP, "total": 8, "CUSTOMER": 2, "LEAD": 6}]
    assert await parts(database, OTHER) == [{"shopId": OTHER, "total": 1, "LEAD": 1}]


async def test_two_parts_fold_into_one(database):
    await add_parts(database, {"LEAD": 1}, {"CUSTOMER": 1})

    await compact(database, SHOP)

    assert await parts(database) == [{"shopId": SHOP, "total": 2, "CUSTOMER": 1, "LEAD": 1}]


async def test_each_fold_transaction_takes_at_most_a_batch_of_parts(
    database, monkeypatch, commands
):
    monkeypatch.setattr(contact_counts, "COMPACT_BATCH", 3)
    await add_parts(database, *[{"LEAD": 1}] * 7)
    commands.reset()

    await compact(database, SHOP)

    deleted = [
        len(d["deletes"][0]["q"]["_id"]["$in"])
        for d in commands.documents("delete", "contact_counts")
    ]
    assert deleted == [3, 3, 3]
    assert await parts(database) == [{"shopId": SHOP, "total": 7, "CUSTOMER": 0, "LEAD": 7}]


class _ReadThenWait:
    """The counters' collection, whose first read of parts waits until `go` is set."""

    def __init__(self, collection: Any, go: asyncio.Event) -> None:
        self.collection, self.go, self.reads = collection, go, 0
        self.read = asyncio.Event()

    def find(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self.collection.find(*args, **kwargs)
        self.reads += 1
        if self.reads > 1:
            return cursor
        read, go = self.read, self.go

        class Paused:
            async def to_list(self) -> list[Any]:
                parts = await cursor.to_list()
                read.set()
                await go.wait()
                return parts

        return Paused()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


async def test_a_fold_that_read_before_another_committed_never_counts_a_part_twice(
    database, monkeypatch
):
    await add_parts(database, *[{"LEAD": 1}] * 5)
    go = asyncio.Event()
    slow = _ReadThenWait(database.db["contact_counts"], go)
    monkeypatch.setattr(type(database), "contact_counts", property(lambda _: slow))

    first = asyncio.create_task(compact(database, SHOP))
    await slow.read.wait()
    await compact(database, SHOP)  # folds all five while the first waits with what it read
    go.set()
    await first

    assert await parts(database) == [{"shopId": SHOP, "total": 5, "CUSTOMER": 0, "LEAD": 5}]


async def test_a_fold_whose_write_fails_loses_no_part(database, monkeypatch, caplog):
    await add_parts(database, {"LEAD": 1}, {"CUSTOMER": 1}, {"LEAD": 2})
    before = await parts(database)
    counters = database.db["contact_counts"]

    class FullDisk:
        def __getattr__(self, name: str) -> Any:
            return getattr(counters, name)

        async def insert_one(self, *args: Any, **kwargs: Any) -> None:
            raise PyMongoError("no space left on device")

    monkeypatch.setattr(type(database), "contact_counts", property(lambda _: FullDisk()))
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        await compact(database, SHOP)

    monkeypatch.undo()
    assert await parts(database) == before


async def test_a_fold_whose_last_reply_is_lost_changes_nothing(database, monkeypatch):
    await add_parts(database, {"LEAD": 1}, {"CUSTOMER": 1}, {"LEAD": 2})
    before = await parts(database)
    counters = database.db["contact_counts"]

    class ReplyLost:
        def __getattr__(self, name: str) -> Any:
            return getattr(counters, name)

        async def insert_one(self, *args: Any, **kwargs: Any) -> None:
            await counters.insert_one(*args, **kwargs)
            raise PyMongoError("connection reset")

    monkeypatch.setattr(type(database), "contact_counts", property(lambda _: ReplyLost()))
    await compact(database, SHOP)

    monkeypatch.undo()
    assert await parts(database) == before


async def test_one_part_is_left_as_it_is(database):
    await add_parts(database, {"LEAD": 1})
    before = await database.contact_counts.find({}).to_list()

    await compact(database, SHOP)

    assert await database.contact_counts.find({}).to_list() == before


async def test_a_fold_that_fails_changes_nothing_and_is_logged(database, monkeypatch, caplog):
    await add_parts(database, {"LEAD": 1}, {"LEAD": 1})
    before = await database.contact_counts.find({}).to_list()

    async def unreachable(*args: Any) -> int:
        raise PyMongoError("connection closed")

    monkeypatch.setattr(contact_counts, "in_transaction", unreachable)
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        await compact(database, SHOP)

    assert await database.contact_counts.find({}).to_list() == before
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "contact counters of shop acme not compacted this time")
    ]
    exc_info = caplog.records[0].exc_info  # the cause, for the operator
    assert exc_info and str(exc_info[1]) == "connection closed"


# -- rebuilding ------------------------------------------------------------------


async def test_a_rebuild_replaces_the_parts_with_an_exact_count_of_the_contacts(database):
    await database.contacts.insert_many(
        [
            {"shopId": SHOP, "emailKey": "a@x.io", "kind": "LEAD"},
            {"shopId": SHOP, "emailKey": "b@x.io", "kind": "LEAD"},
            {"shopId": SHOP, "emailKey": "c@x.io", "kind": "CUSTOMER"},
            {"shopId": SHOP, "emailKey": "d@x.io"},  # no kind: counted in the total only
            {"shopId": OTHER, "emailKey": "a@x.io", "kind": "LEAD"},
        ]
    )
    await add_parts(database, {"LEAD": 40}, {"CUSTOMER": -3})
    await add_parts(database, {"LEAD": 9}, shop=OTHER)

    totals = await rebuild_counts(database, SHOP)

    assert totals == {"total": 4, "CUSTOMER": 1, "LEAD": 2}
    assert await parts(database) == [{"shopId": SHOP, "total": 4, "CUSTOMER": 1, "LEAD": 2}]
    assert await parts(database, OTHER) == [{"shopId": OTHER, "total": 9, "LEAD": 9}]


async def test_a_rebuild_in_a_transaction_that_fails_keeps_the_old_parts(database):
    await database.contacts.insert_one({"shopId": SHOP, "emailKey": "a@x.io", "kind": "LEAD"})
    await add_parts(database, {"LEAD": 5})

    async def work(session: Any) -> None:
        await rebuild_counts(database, SHOP, session=session)
        raise RuntimeError("the migration stopped")

    with pytest.raises(RuntimeError):
        await in_transaction(database, work)

    assert await parts(database) == [{"shopId": SHOP, "total": 5, "LEAD": 5}]


async def test_a_rebuild_in_a_transaction_counts_what_the_transaction_sees(database):
    await database.contacts.insert_one({"shopId": SHOP, "emailKey": "a@x.io", "kind": "LEAD"})

    async def work(session: Any) -> dict[str, int]:
        await database.contacts.insert_one(
            {"shopId": SHOP, "emailKey": "b@x.io", "kind": "CUSTOMER"}, session=session
        )
        return await rebuild_counts(database, SHOP, session=session)

    assert await in_transaction(database, work) == {"total": 2, "CUSTOMER": 1, "LEAD": 1}
    assert await parts(database) == [{"shopId": SHOP, "total": 2, "CUSTOMER": 1, "LEAD": 1}]
