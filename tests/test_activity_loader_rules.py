"""Reading the activity log to the edge: pages newest first over the embedded entries and the archive.

These call `loaders.activity` directly on stored contacts and buckets: the
order (time, then id), the cursor's bound on both sides, kinds and their
totals, a page that spans the embedded entries and several buckets, a late
old entry still embedded, other shops' data, and finding entries by id.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from bson import ObjectId
from conftest import SHOP

from loaders import activity as loader
from loaders.activity import (
    ActivityEntryByIdLoader,
    ActivityPageByQueryLoader,
    ActivityQuery,
    FoundEntry,
    find_entries,
    load_pages,
    newest_first,
)
from resolvers.activity import bucket_of, entry

T0 = dt.datetime(2126, 1, 5, 9, 0, tzinfo=dt.UTC)
KINDS = ("NOTE", "ORDER_PLACED", "FORM_SUBMITTED")
OTHER_SHOP = "another-shop"


def at(i: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=i)


def log_of(n: int, start: int = 0) -> list[dict[str, Any]]:
    """n entries one second apart, kinds in turn, oldest first."""
    return [entry(KINDS[i % 3], text=f"entry {i}", at=at(i)) for i in range(start, start + n)]


async def stored_contact(
    database: Any,
    embedded: list[dict[str, Any]],
    archived: list[list[dict[str, Any]]] = (),  # type: ignore[assignment]
    shop: str = SHOP,
) -> ObjectId:
    """A contact with `embedded` entries and one bucket per list in `archived`, counters to match."""
    oid = ObjectId()
    every = [e for bucket in archived for e in bucket]
    doc: dict[str, Any] = {"_id": oid, "shopId": shop, "emailKey": f"{oid}@example.com"}
    doc["activity"] = embedded
    if every:
        doc["activityArchived"] = len(every)
        doc["activityArchivedKinds"] = dict(Counter(e["kind"] for e in every))
        doc["activityArchivedAt"] = max(e["at"] for e in every)
    await database.contacts.insert_one(doc)
    for entries in archived:
        await database.activity_archive.insert_one(bucket_of(shop, oid, entries))
    return oid


def texts(entries: list[dict[str, Any]]) -> list[str]:
    return [e["text"] for e in entries]


def newest(entries: list[dict[str, Any]]) -> list[str]:
    return texts(sorted(entries, key=lambda e: (e["at"], e["_id"]), reverse=True))


async def page(database: Any, query: ActivityQuery, shop: str = SHOP) -> Any:
    [result] = await load_pages(database, shop, [query])
    return result


class CountingFinds:
    """The archive collection, counting the finds made on it."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.finds: list[Any] = []

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.finds.append(args[0])
        return self.real.find(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CountingDatabase:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.activity_archive = CountingFinds(real.activity_archive)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# --- the embedded entries alone ---------------------------------------------------------


async def test_a_page_holds_the_newest_entries_newest_first_whatever_order_they_were_written(
    database,
):
    log = log_of(5)
    written = [log[2], log[0], log[4], log[1], log[3]]
    oid = await stored_contact(database, written)
    result = await page(database, ActivityQuery(oid, 3))
    assert texts(result.entries) == ["entry 4", "entry 3", "entry 2"]
    assert result.has_next is True
    assert result.has_previous is False
    assert result.total_count == 5


async def test_entries_at_the_same_time_are_ordered_by_id_newest_first(database):
    same = [entry("NOTE", text=f"tie {i}", at=at(7)) for i in range(4)]
    oid = await stored_contact(database, [same[1], same[3], same[0], same[2]])
    result = await page(database, ActivityQuery(oid, 10))
    assert texts(result.entries) == ["tie 3", "tie 2", "tie 1", "tie 0"]


async def test_a_page_as_long_as_the_log_has_no_next_one_and_one_shorter_has(database):
    oid = await stored_contact(database, log_of(4))
    whole = await page(database, ActivityQuery(oid, 4))
    assert texts(whole.entries) == ["entry 3", "entry 2", "entry 1", "entry 0"]
    assert whole.has_next is False
    shorter = await page(database, ActivityQuery(oid, 3))
    assert texts(shorter.entries) == ["entry 3", "entry 2", "entry 1"]
    assert shorter.has_next is True
    longer = await page(database, ActivityQuery(oid, 5))
    assert len(longer.entries) == 4
    assert longer.has_next is False


async def test_an_empty_or_missing_log_gives_an_empty_page(database):
    empty = await stored_contact(database, [])
    missing = ObjectId()
    await database.contacts.insert_one(
        {"_id": missing, "shopId": SHOP, "emailKey": "m@example.com"}
    )
    for oid in (empty, missing):
        result = await page(database, ActivityQuery(oid, 3))
        assert result.entries == []
        assert result.has_next is False
        assert result.total_count == 0


async def test_the_cursor_starts_strictly_after_the_entry_it_names(database):
    log = log_of(6)
    oid = await stored_contact(database, log)
    cursor = (log[3]["at"], log[3]["_id"])
    result = await page(database, ActivityQuery(oid, 2, cursor))
    assert texts(result.entries) == ["entry 2", "entry 1"]
    assert result.has_next is True
    assert result.has_previous is True
    assert result.total_count == 6
    last = await page(database, ActivityQuery(oid, 3, cursor))
    assert texts(last.entries) == ["entry 2", "entry 1", "entry 0"]
    assert last.has_next is False


async def test_the_cursor_at_a_shared_time_keeps_only_the_smaller_ids(database):
    # Written first, so its id is smaller than the cursor's though its time is later.
    newer = entry("NOTE", text="newer", at=at(8))
    same = [entry("NOTE", text=f"tie {i}", at=at(7)) for i in range(4)]
    older = entry("NOTE", text="older", at=at(6))
    oid = await stored_contact(database, [*same, older, newer])
    cursor = (at(7), same[2]["_id"])
    result = await page(database, ActivityQuery(oid, 10, cursor))
    assert texts(result.entries) == ["tie 1", "tie 0", "older"]


async def test_kinds_keep_only_those_entries_and_count_only_them(database):
    log = log_of(9)
    oid = await stored_contact(database, log)
    notes = await page(database, ActivityQuery(oid, 2, None, ("NOTE",)))
    assert texts(notes.entries) == ["entry 6", "entry 3"]
    assert notes.has_next is True
    assert notes.total_count == 3
    two = await page(database, ActivityQuery(oid, 10, None, ("NOTE", "FORM_SUBMITTED")))
    assert texts(two.entries) == ["entry 8", "entry 6", "entry 5", "entry 3", "entry 2", "entry 0"]
    assert two.total_count == 6
    none = await page(database, ActivityQuery(oid, 10, None, ()))
    assert none.entries == []
    assert none.total_count == 0


async def test_kinds_and_a_cursor_together_keep_entries_that_pass_both(database):
    log = log_of(9)
    oid = await stored_contact(database, log)
    cursor = (log[6]["at"], log[6]["_id"])
    result = await page(database, ActivityQuery(oid, 5, cursor, ("NOTE",)))
    assert texts(result.entries) == ["entry 3", "entry 0"]
    assert result.has_next is False
    assert result.total_count == 3


# --- the archive -------------------------------------------------------------------------


async def test_a_page_continues_from_the_embedded_entries_into_the_buckets(database):
    log = log_of(10)
    oid = await stored_contact(database, log[6:], [log[0:3], log[3:6]])
    first = await page(database, ActivityQuery(oid, 6))
    assert texts(first.entries) == [f"entry {i}" for i in range(9, 3, -1)]
    assert first.has_next is True
    assert first.total_count == 10
    last = first.entries[-1]
    rest = await page(database, ActivityQuery(oid, 6, (last["at"], last["_id"])))
    assert texts(rest.entries) == ["entry 3", "entry 2", "entry 1", "entry 0"]
    assert rest.has_next is False
    assert rest.has_previous is True
    assert rest.total_count == 10


async def test_a_page_of_exactly_the_embedded_entries_looks_into_the_archive_for_more(database):
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    result = await page(database, ActivityQuery(oid, 3))
    assert texts(result.entries) == ["entry 5", "entry 4", "entry 3"]
    assert result.has_next is True
    whole = await page(database, ActivityQuery(oid, 6))
    assert texts(whole.entries) == newest(log)
    assert whole.has_next is False


async def test_a_page_that_ends_exactly_at_a_bucket_boundary(database):
    log = log_of(9)
    oid = await stored_contact(database, log[6:], [log[0:3], log[3:6]])
    for first in (5, 6, 7):
        result = await page(database, ActivityQuery(oid, first))
        assert texts(result.entries) == newest(log)[:first]
        assert result.has_next is True
    whole = await page(database, ActivityQuery(oid, 9))
    assert texts(whole.entries) == newest(log)
    assert whole.has_next is False


async def test_a_late_old_entry_still_embedded_is_merged_with_newer_archived_ones(database):
    log = log_of(8)
    late = entry("NOTE", text="late", at=at(-5))
    oid = await stored_contact(database, [*log[6:], late], [log[0:3], log[3:6]])
    result = await page(database, ActivityQuery(oid, 4))
    assert texts(result.entries) == ["entry 7", "entry 6", "entry 5", "entry 4"]
    assert result.has_next is True
    whole = await page(database, ActivityQuery(oid, 20))
    assert texts(whole.entries) == [*newest(log), "late"]
    assert whole.total_count == 9


async def test_archived_entries_newer_than_every_embedded_one_come_first(database):
    log = log_of(6)
    # The newest entries archived, an older one embedded (written late).
    oid = await stored_contact(database, [log[0]], [log[3:6], log[1:3]])
    result = await page(database, ActivityQuery(oid, 1))
    assert texts(result.entries) == ["entry 5"]
    assert result.has_next is True
    two = await page(database, ActivityQuery(oid, 4))
    assert texts(two.entries) == ["entry 5", "entry 4", "entry 3", "entry 2"]
    assert two.has_next is True


async def test_a_cursor_inside_a_bucket_keeps_only_its_older_entries(database):
    log = log_of(9)
    oid = await stored_contact(database, log[6:], [log[0:3], log[3:6]])
    cursor = (log[4]["at"], log[4]["_id"])
    result = await page(database, ActivityQuery(oid, 3, cursor))
    assert texts(result.entries) == ["entry 3", "entry 2", "entry 1"]
    assert result.has_next is True
    assert result.has_previous is True
    # A cursor at a bucket's oldest entry skips that bucket entirely.
    edge = (log[3]["at"], log[3]["_id"])
    counting = CountingDatabase(database)
    after_edge = await page(counting, ActivityQuery(oid, 10, edge))
    assert texts(after_edge.entries) == ["entry 2", "entry 1", "entry 0"]
    assert after_edge.has_next is False
    assert len(counting.activity_archive.finds) == 2
    assert len(counting.activity_archive.finds[1]["_id"]["$in"]) == 1


async def test_a_cursor_at_a_shared_time_inside_the_archive(database):
    same = [entry("NOTE", text=f"tie {i}", at=at(3)) for i in range(4)]
    oid = await stored_contact(database, log_of(2, start=10), [same])
    cursor = (at(3), same[2]["_id"])
    result = await page(database, ActivityQuery(oid, 10, cursor))
    assert texts(result.entries) == ["tie 1", "tie 0"]
    # The bucket's oldest key itself is not after the cursor at that key.
    bottom = (at(3), same[0]["_id"])
    assert (await page(database, ActivityQuery(oid, 10, bottom))).entries == []


async def test_kinds_reach_into_the_archive_and_are_counted_there(database):
    log = log_of(12)
    oid = await stored_contact(database, log[9:], [log[0:3], log[3:6], log[6:9]])
    notes = await page(database, ActivityQuery(oid, 3, None, ("NOTE",)))
    assert texts(notes.entries) == ["entry 9", "entry 6", "entry 3"]
    assert notes.has_next is True
    assert notes.total_count == 4
    orders = await page(database, ActivityQuery(oid, 10, None, ("ORDER_PLACED",)))
    assert texts(orders.entries) == ["entry 10", "entry 7", "entry 4", "entry 1"]
    assert orders.has_next is False
    assert orders.total_count == 4
    both = await page(database, ActivityQuery(oid, 10, None, ("NOTE", "ORDER_PLACED")))
    assert both.total_count == 8
    assert len(both.entries) == 8


async def test_buckets_without_the_kinds_asked_for_are_passed_over(database):
    notes = [entry("NOTE", text=f"note {i}", at=at(i)) for i in range(3)]
    orders = [entry("ORDER_PLACED", text=f"order {i}", at=at(10 + i)) for i in range(3)]
    forms = [entry("FORM_SUBMITTED", text=f"form {i}", at=at(20 + i)) for i in range(2)]
    oid = await stored_contact(database, forms, [notes, orders])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 2, None, ("NOTE",)))
    assert texts(result.entries) == ["note 2", "note 1"]
    assert result.has_next is True
    assert result.total_count == 3
    # The bounds, then the notes' bucket alone: the newer orders' one is never read.
    assert len(counting.activity_archive.finds) == 2
    assert counting.activity_archive.finds[1]["_id"]["$in"] == [
        (await database.activity_archive.find_one({"minAt": notes[0]["at"]}))["_id"]
    ]
    rest = await page(database, ActivityQuery(oid, 5, None, ("NOTE",)))
    assert texts(rest.entries) == ["note 2", "note 1", "note 0"]
    assert rest.has_next is False


async def test_counters_missing_a_kind_count_it_as_none(database):
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    await database.contacts.update_one(
        {"_id": oid}, {"$unset": {"activityArchivedKinds.FORM_SUBMITTED": ""}}
    )
    result = await page(database, ActivityQuery(oid, 10, None, ("NOTE", "FORM_SUBMITTED")))
    assert result.total_count == 3  # 2 embedded + the archived NOTE
    assert texts(result.entries) == ["entry 5", "entry 3", "entry 2", "entry 0"]


async def test_a_contact_without_archived_entries_reads_no_bucket(database):
    log = log_of(4)
    oid = await stored_contact(database, log)
    # A bucket the counters do not know of stays unread.
    await database.activity_archive.insert_one(bucket_of(SHOP, oid, log_of(2, start=20)))
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 10))
    assert texts(result.entries) == newest(log)
    assert result.total_count == 4
    assert counting.activity_archive.finds == []


async def test_archived_entries_of_other_kinds_only_read_no_bucket(database):
    log = log_of(6)
    notes_archived = [e for e in log[:3] if e["kind"] == "NOTE"]
    oid = await stored_contact(database, log[3:], [notes_archived])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 10, None, ("ORDER_PLACED",)))
    assert texts(result.entries) == ["entry 4"]
    assert result.total_count == 1
    assert counting.activity_archive.finds == []


async def test_a_full_page_of_entries_newer_than_the_archive_reads_no_bucket(database):
    log = log_of(8)
    oid = await stored_contact(database, log[3:], [log[:3]])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 3))
    assert texts(result.entries) == ["entry 7", "entry 6", "entry 5"]
    assert result.has_next is True
    assert result.total_count == 8
    assert counting.activity_archive.finds == []


async def test_an_archive_as_new_as_the_entry_after_the_page_is_read(database):
    log = log_of(6)
    archived = entry("NOTE", text="archived", at=at(3))
    oid = await stored_contact(database, log[2:], [[archived]])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 1))
    assert texts(result.entries) == ["entry 5"]
    assert counting.activity_archive.finds == []
    # entry 3 is the (first+1)-th: an archived entry at its time could precede it.
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 2))
    assert texts(result.entries) == ["entry 5", "entry 4"]
    assert counting.activity_archive.finds != []


async def test_archived_counters_without_their_newest_time_still_read_the_buckets(database):
    log = log_of(6)
    oid = await stored_contact(database, log[:3], [log[3:]])
    await database.contacts.update_one({"_id": oid}, {"$unset": {"activityArchivedAt": ""}})
    result = await page(database, ActivityQuery(oid, 2))
    assert texts(result.entries) == ["entry 5", "entry 4"]
    assert result.has_next is True


async def test_only_the_buckets_the_page_needs_are_read(database):
    log = log_of(12)
    oid = await stored_contact(database, log[9:], [log[0:3], log[3:6], log[6:9]])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 4))
    assert texts(result.entries) == ["entry 11", "entry 10", "entry 9", "entry 8"]
    assert result.has_next is True
    # One read of the bounds, one of the newest bucket's entries.
    assert len(counting.activity_archive.finds) == 2
    entries_read = counting.activity_archive.finds[1]
    assert len(entries_read["_id"]["$in"]) == 1


async def test_a_page_that_needs_two_buckets_reads_them_in_one_round(database):
    log = log_of(12)
    oid = await stored_contact(database, log[9:], [log[0:3], log[3:6], log[6:9]])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 6))
    assert texts(result.entries) == newest(log)[:6]
    assert result.has_next is True
    assert len(counting.activity_archive.finds) == 2
    assert len(counting.activity_archive.finds[1]["_id"]["$in"]) == 2


async def test_buckets_are_chosen_by_their_entries_of_the_kinds_asked_for(database):
    mixed = [entry(KINDS[i % 2], text=f"m {i}", at=at(i)) for i in range(10, 14)]
    older = [entry("NOTE", text=f"o {i}", at=at(i)) for i in range(0, 3)]
    oid = await stored_contact(database, [], [older, mixed])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 3, None, ("NOTE",)))
    assert texts(result.entries) == ["m 12", "m 10", "o 2"]
    assert result.has_next is True
    assert result.total_count == 5
    # The newer bucket holds two notes, too few for the page: both are read at once.
    assert len(counting.activity_archive.finds) == 2
    assert len(counting.activity_archive.finds[1]["_id"]["$in"]) == 2


async def test_a_bucket_spanning_older_times_does_not_hide_a_newer_one(database):
    wide = [entry("NOTE", text=f"w {i}", at=at(i)) for i in (10, 2, 1)]
    newer = [entry("NOTE", text=f"n {i}", at=at(i)) for i in (9, 8, 7)]
    oid = await stored_contact(database, [], [wide, newer])
    result = await page(database, ActivityQuery(oid, 2))
    assert texts(result.entries) == ["w 10", "n 9"]
    assert result.has_next is True
    whole = await page(database, ActivityQuery(oid, 10))
    assert texts(whole.entries) == ["w 10", "n 9", "n 8", "n 7", "w 2", "w 1"]


async def test_a_bucket_emptied_by_deleted_entries_is_not_read(database):
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    emptied = bucket_of(SHOP, oid, log_of(2, start=20))
    emptied.update(entries=[], count=0, kindCounts={})
    await database.activity_archive.insert_one(emptied)
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 10))
    assert texts(result.entries) == newest(log)
    assert len(counting.activity_archive.finds) == 2
    assert len(counting.activity_archive.finds[1]["_id"]["$in"]) == 1


async def test_another_contacts_buckets_are_not_read_for_a_page(database):
    theirs_log = log_of(6, start=100)
    await stored_contact(database, theirs_log[3:], [theirs_log[:3]])
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    counting = CountingDatabase(database)
    result = await page(counting, ActivityQuery(oid, 10))
    assert texts(result.entries) == newest(log)
    assert len(counting.activity_archive.finds) == 2
    assert len(counting.activity_archive.finds[1]["_id"]["$in"]) == 1


async def test_buckets_wider_than_their_entries_are_pruned_by_what_was_found(database):
    # A bucket's bounds only ever widen: its maxAt may be newer than its entries.
    log = log_of(10)
    oid = await stored_contact(database, [], [log[0:3], log[3:6], log[6:10]])
    result = await page(database, ActivityQuery(oid, 4))
    assert texts(result.entries) == newest(log)[:4]
    assert result.has_next is True
    later = result.entries[-1]
    rest = await page(database, ActivityQuery(oid, 4, (later["at"], later["_id"])))
    assert texts(rest.entries) == newest(log)[4:8]
    assert rest.has_next is True


async def test_a_bucket_with_a_stale_max_bound_still_gives_its_entries(database):
    log = log_of(6)
    oid = await stored_contact(database, [], [log[0:3], log[3:6]])
    # The older bucket's bounds widened up to the newer one's newest entry.
    await database.activity_archive.update_one(
        {"contactId": oid, "minAt": log[0]["at"]},
        {"$set": {"maxAt": log[5]["at"], "maxId": log[5]["_id"]}},
    )
    result = await page(database, ActivityQuery(oid, 4))
    assert texts(result.entries) == ["entry 5", "entry 4", "entry 3", "entry 2"]
    assert result.has_next is True


# --- many pages at once, other shops ----------------------------------------------------


async def test_many_contacts_and_shapes_are_answered_each_in_its_place(database):
    a_log, b_log = log_of(6), log_of(4, start=100)
    a = await stored_contact(database, a_log[3:], [a_log[:3]])
    b = await stored_contact(database, b_log)
    nobody = ObjectId()
    queries = [
        ActivityQuery(a, 2),
        ActivityQuery(nobody, 2),
        ActivityQuery(b, 2),
        ActivityQuery(a, 5, None, ("NOTE",)),
        ActivityQuery(b, 2),
        ActivityQuery(a, 10),
    ]
    pages = await load_pages(database, SHOP, queries)
    assert texts(pages[0].entries) == ["entry 5", "entry 4"]
    assert pages[1] is None
    assert texts(pages[2].entries) == ["entry 103", "entry 102"]
    assert texts(pages[3].entries) == ["entry 3", "entry 0"]
    assert pages[3].total_count == 2
    assert texts(pages[4].entries) == ["entry 103", "entry 102"]
    assert texts(pages[5].entries) == newest(a_log)
    assert pages[5].has_next is False


async def test_two_contacts_in_one_shape_each_get_their_own_archive(database):
    a_log, b_log = log_of(6), log_of(6, start=100)
    a = await stored_contact(database, a_log[4:], [a_log[:2], a_log[2:4]])
    b = await stored_contact(database, b_log[5:], [b_log[:5]])
    pages = await load_pages(database, SHOP, [ActivityQuery(a, 4), ActivityQuery(b, 4)])
    assert texts(pages[0].entries) == newest(a_log)[:4]
    assert texts(pages[1].entries) == newest(b_log)[:4]
    assert pages[0].has_next and pages[1].has_next


async def test_another_shops_contact_is_not_found_and_its_buckets_are_not_read(database):
    log = log_of(6)
    theirs = await stored_contact(database, log, shop=OTHER_SHOP)
    assert await page(database, ActivityQuery(theirs, 3)) is None
    ours_log = log_of(4, start=50)
    ours = await stored_contact(database, ours_log[2:], [ours_log[:2]])
    # A bucket of another shop filed under our contact's id is not ours.
    await database.activity_archive.insert_one(bucket_of(OTHER_SHOP, ours, log_of(3, start=60)))
    result = await page(database, ActivityQuery(ours, 10))
    assert texts(result.entries) == newest(ours_log)
    assert result.total_count == 4


async def test_the_loader_batches_queries_into_pages(database):
    log = log_of(3)
    oid = await stored_contact(database, log)
    pages = ActivityPageByQueryLoader(database, SHOP)
    result = await pages.load(ActivityQuery(oid, 2))
    assert texts(result.entries) == ["entry 2", "entry 1"]
    assert await pages.load(ActivityQuery(ObjectId(), 2)) is None


def test_the_order_expression_sorts_newest_first_and_reads_a_missing_array_as_empty():
    assert newest_first("$x") == {
        "$sortArray": {"input": {"$ifNull": ["$x", []]}, "sortBy": {"at": -1, "_id": -1}}
    }
    assert loader.CURSOR_FIELD == "activity"


# --- entries by id ------------------------------------------------------------------------


async def test_entries_are_found_embedded_or_archived_in_the_order_asked(database):
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    keys = [(log[4]["_id"], oid), (log[1]["_id"], oid), (ObjectId(), oid), (log[5]["_id"], oid)]
    found = await find_entries(database, SHOP, keys)
    assert found[0] == FoundEntry(oid, log[4])
    assert found[1] == FoundEntry(oid, log[1])
    assert found[2] is None
    assert found[3] == FoundEntry(oid, log[5])


async def test_an_archived_entry_is_found_without_its_contact_and_names_its_buckets_contact(
    database,
):
    log = log_of(4)
    oid = await stored_contact(database, log[2:], [log[:2]])
    found = await find_entries(database, SHOP, [(log[0]["_id"], None), (log[0]["_id"], ObjectId())])
    assert found == [FoundEntry(oid, log[0]), FoundEntry(oid, log[0])]


async def test_an_embedded_entry_is_found_only_through_its_contact(database):
    log = log_of(2)
    oid = await stored_contact(database, log)
    other = await stored_contact(database, log_of(1, start=9))
    assert await find_entries(database, SHOP, [(log[0]["_id"], None)]) == [None]
    assert await find_entries(database, SHOP, [(log[1]["_id"], other)]) == [None]
    found = await find_entries(database, SHOP, [(log[0]["_id"], None), (log[1]["_id"], oid)])
    # One key's contact is read for every entry asked for.
    assert found == [FoundEntry(oid, log[0]), FoundEntry(oid, log[1])]


async def test_only_the_entries_asked_for_come_back_from_a_contact_or_bucket(database):
    log = log_of(6)
    oid = await stored_contact(database, log[3:], [log[:3]])
    found = await find_entries(database, SHOP, [(log[3]["_id"], oid), (log[0]["_id"], oid)])
    assert found == [FoundEntry(oid, log[3]), FoundEntry(oid, log[0])]


async def test_another_shops_entries_are_not_found(database):
    log = log_of(4)
    theirs = await stored_contact(database, log[2:], [log[:2]], shop=OTHER_SHOP)
    found = await find_entries(database, SHOP, [(log[3]["_id"], theirs), (log[0]["_id"], theirs)])
    assert found == [None, None]


async def test_the_entry_loader_batches_keys(database):
    log = log_of(2)
    oid = await stored_contact(database, log)
    entries = ActivityEntryByIdLoader(database, SHOP)
    assert await entries.load((log[1]["_id"], oid)) == FoundEntry(oid, log[1])
    assert await entries.load((ObjectId(), oid)) is None
