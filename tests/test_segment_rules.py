"""Segment rules to the edge: the exact messages, the name's and the shop's bounds on both sides.

tests/test_segments.py tells the story (segments that stay current, the
built-ins, races for the last slot); these pin what a client reads when it
is refused, the 100-character name and the shop's 100 segments on both
sides, what is stored, and how a renamed label is followed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from graph.types.node import encode_id
from loaders.contacts import ContactFilterSpec
from resolvers import segments
from resolvers.contact_filters import spec_from_json
from resolvers.errors import Refused
from resolvers.segments import (
    BUILT_IN,
    CheckedSegment,
    SegmentDraft,
    built_in,
    check_draft,
    create_segment,
    delete_segment,
    find_segment,
    follow_label_rename,
    list_segments,
    name_key,
    segment_condition,
    segment_match,
    update_segment,
)
from resolvers.shops import ensure_shop

REPEAT_ID = encode_id("Segment", "000000000000000000000002")
CREATE = """
mutation($input: SegmentInput!) {
  segmentCreate(input: $input) {
    segment { id name query filter } userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $input: SegmentInput!) {
  segmentUpdate(id: $id, input: $input) {
    segment { id name query filter } userErrors { field message code }
  }
}
"""
DELETE = """
mutation($id: ID!) {
  segmentDelete(id: $id) { segment { id name } userErrors { field message code } }
}
"""


def user_errors(payload: dict) -> list[tuple[list[str] | None, str, str]]:
    return [(e["field"], e["message"], e["code"]) for e in payload["userErrors"]]


async def create(api: Any, **input: Any) -> dict:
    return (await api.data(CREATE, {"input": {"filter": {}, **input}}))["segmentCreate"]


async def segment_count(database: Any) -> int:
    return (await database.shops.find_one({"_id": SHOP}) or {}).get("segmentCount", 0)


def test_a_segment_name_is_known_by_its_words_in_any_case():
    assert name_key("  Big   SPENDERS\t") == "big spenders"
    assert name_key("Straße") == name_key("STRASSE")


async def test_every_refusal_of_a_new_segment_says_what_is_wrong(api, database):
    await create(api, name="Taken")
    built_in = BUILT_IN[0].name
    cases = [
        ({"name": " "}, [(["input", "name"], "Name is required.", "REQUIRED")]),
        (
            {"name": "x" * 101},
            [(["input", "name"], "Name is longer than 100 characters.", "TOO_LONG")],
        ),
        (
            {"name": "a\u0007b"},
            [(["input", "name"], "Name contains control characters.", "INVALID")],
        ),
        ({"name": " taken "}, [(["input", "name"], "Another segment has this name.", "TAKEN")]),
        (
            {"name": built_in.upper()},
            [(["input", "name"], "A built-in segment has this name.", "TAKEN")],
        ),
        (
            {"name": "Q", "query": "q" * 201},
            [(["input", "query"], "Query is longer than 200 characters.", "TOO_LONG")],
        ),
        (
            {"name": "S", "filter": {"segment": REPEAT_ID}},
            [
                (
                    ["input", "filter", "segment"],
                    "A segment cannot refer to another segment; copy its conditions instead.",
                    "INVALID",
                )
            ],
        ),
    ]
    for input, expected in cases:
        payload = await create(api, **input)
        assert (payload["segment"], user_errors(payload)) == (None, expected), input
    assert await database.segments.count_documents({"shopId": SHOP}) == 1
    assert await segment_count(database) == 1


async def test_a_bad_filter_is_refused_at_its_own_field_with_its_message(api, database):
    payload = await create(api, name="N", filter={"orderCountMin": -1})

    assert user_errors(payload) == [
        (
            ["input", "filter", "orderCountMin"],
            "orderCount bounds must be between 0 and 2147483647.",
            "INVALID",
        )
    ]
    assert await database.segments.count_documents({}) == 0


async def test_every_problem_of_a_segment_is_reported_at_once(api, database):
    payload = await create(
        api,
        name=BUILT_IN[1].name,
        query="q" * 201,
        filter={"segment": REPEAT_ID},
    )

    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "query"], "TOO_LONG"),
        (["input", "filter", "segment"], "INVALID"),
        (["input", "name"], "TAKEN"),
    ]


async def test_a_name_of_100_characters_is_saved_as_given(api, database):
    name = "Ab " + "c" * 97

    payload = await create(api, name=f"  {name} ", query=" vip ", filter={"kind": "LEAD"})

    assert payload["userErrors"] == []
    assert (payload["segment"]["name"], payload["segment"]["query"]) == (name, "vip")
    assert payload["segment"]["filter"] == {"kind": "LEAD"}
    stored = await database.segments.find_one({"shopId": SHOP})
    assert (stored["name"], stored["nameKey"], stored["query"]) == (name, name.casefold(), "vip")
    assert stored["filter"] == {"kind": "LEAD"}
    assert stored["createdAt"] == stored["updatedAt"]


async def test_a_shop_saves_its_100th_segment_and_not_a_101st(api, database):
    await database.shops.update_one({"_id": SHOP}, {"$set": {"segmentCount": 99}})

    last = await create(api, name="Hundredth")
    over = await create(api, name="One more")

    assert last["userErrors"] == []
    assert (over["segment"], user_errors(over)) == (
        None,
        [(None, "A shop can save at most 100 segments.", "LIMIT_EXCEEDED")],
    )
    assert await segment_count(database) == 100
    assert await database.segments.count_documents({"shopId": SHOP}) == 1
    # Deleting one frees its slot.
    deleted = (await api.data(DELETE, {"id": last["segment"]["id"]}))["segmentDelete"]
    assert deleted["segment"]["name"] == "Hundredth"
    assert await segment_count(database) == 99
    assert (await create(api, name="One more"))["userErrors"] == []


async def test_a_name_already_taken_gives_its_reserved_slot_back(api, database):
    await create(api, name="Same")

    again = await create(api, name="SAME")

    assert user_errors(again) == [(["input", "name"], "Another segment has this name.", "TAKEN")]
    assert await segment_count(database) == 1


async def test_an_update_is_stored_whole_and_keeps_its_creation_time(api, database):
    created = (await create(api, name="One", query="old", filter={"kind": "LEAD"}))["segment"]
    before = await database.segments.find_one({"shopId": SHOP})

    payload = (
        await api.data(
            UPDATE,
            {"id": created["id"], "input": {"name": " Two ", "filter": {"orderCountMin": 2}}},
        )
    )["segmentUpdate"]

    assert payload["userErrors"] == []
    assert payload["segment"] == {
        "id": created["id"],
        "name": "Two",
        "query": None,
        "filter": {"orderCountMin": 2},
    }
    after = await database.segments.find_one({"shopId": SHOP})
    assert (after["nameKey"], after["createdAt"]) == ("two", before["createdAt"])
    assert after["updatedAt"] >= before["updatedAt"]
    assert await segment_count(database) == 1


async def test_an_update_is_checked_before_it_looks_for_the_segment(api, database):
    missing = encode_id("Segment", ObjectId())
    for ref in (missing, "garbage"):
        bad = (await api.data(UPDATE, {"id": ref, "input": {"name": " ", "filter": {}}}))[
            "segmentUpdate"
        ]
        good = (await api.data(UPDATE, {"id": ref, "input": {"name": "Fine", "filter": {}}}))[
            "segmentUpdate"
        ]
        assert user_errors(bad) == [(["input", "name"], "Name is required.", "REQUIRED")]
        assert user_errors(good) == [(["id"], "Segment not found.", "NOT_FOUND")]


async def test_a_built_in_segment_is_refused_before_its_input_is_read(api, database):
    refused = [(["id"], "Built-in segments cannot be changed or deleted.", "NOT_ALLOWED")]

    update = (await api.data(UPDATE, {"id": REPEAT_ID, "input": {"name": " ", "filter": {}}}))[
        "segmentUpdate"
    ]
    delete = (await api.data(DELETE, {"id": REPEAT_ID}))["segmentDelete"]

    assert (update["segment"], user_errors(update)) == (None, refused)
    assert (delete["segment"], user_errors(delete)) == (None, refused)


async def test_a_deleted_segment_is_gone_and_a_second_delete_is_not_found(api, database):
    created = (await create(api, name="Gone"))["segment"]

    first = (await api.data(DELETE, {"id": created["id"]}))["segmentDelete"]
    second = (await api.data(DELETE, {"id": created["id"]}))["segmentDelete"]

    assert first == {"segment": {"id": created["id"], "name": "Gone"}, "userErrors": []}
    assert user_errors(second) == [(["id"], "Segment not found.", "NOT_FOUND")]
    assert await segment_count(database) == 0
    assert await database.segments.count_documents({}) == 0


async def test_a_renamed_label_is_followed_in_every_label_condition_once(api, database):
    both = (
        await create(
            api,
            name="Both",
            filter={"labelsAny": ["vip", "Top"], "labelsAll": ["VIP"], "labelsNone": ["Other"]},
        )
    )["segment"]
    unrelated = (await create(api, name="Other", filter={"labelsAny": ["Other"]}))["segment"]

    changed = await follow_label_rename(database, SHOP, "VIP", "Top")

    assert changed == 1
    stored = await database.segments.find_one({"name": "Both"})
    assert stored["filter"] == {"labelsAny": ["Top"], "labelsAll": ["Top"], "labelsNone": ["Other"]}
    assert (await database.segments.find_one({"name": "Other"}))["filter"] == unrelated["filter"]
    assert both["id"] != unrelated["id"]
    assert await follow_label_rename(database, SHOP, "Missing", "Anything") == 0


# The rules called directly, without the API: what each function returns and
# stores, with a fixed clock.

T_CREATE = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T_LATER = dt.datetime(2126, 3, 2, 11, 30, 5, 125_000, tzinfo=dt.UTC)
FIRST_TIME = ObjectId("000000000000000000000001")
REPEAT = ObjectId("000000000000000000000002")


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = T_CREATE
        monkeypatch.setattr(segments, "now", lambda: self.at)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
async def shops(database: Any) -> None:
    await ensure_shop(database, SHOP)
    await ensure_shop(database, OTHER_SHOP)


def draft(name: str | None, query: str | None = None, **filter: Any) -> SegmentDraft:
    """A draft with its filter in the JSON form a client sends."""
    return SegmentDraft(name, query, spec_from_json(filter)[0])


def problems(refused: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refused.value.problems]


async def counts(database: Any) -> dict[str, int]:
    return {
        doc["_id"]: doc.get("segmentCount", 0)
        async for doc in database.shops.find({}, {"segmentCount": 1})
    }


def test_the_built_ins_are_found_by_their_id_or_their_key_only():
    repeat = BUILT_IN[1]

    assert built_in(REPEAT) is repeat
    assert built_in("REPEAT_CUSTOMERS") is repeat
    assert built_in("000000000000000000000002") is None
    assert built_in(ObjectId("000000000000000000000005")) is None
    assert built_in("Repeat customers") is None


async def test_every_shop_lists_the_four_built_ins_first_then_its_own_segments_by_name(
    database, shops, clock
):
    await create_segment(database, SHOP, draft("beta"))
    await create_segment(database, SHOP, draft("Alpha", orderCountMin=3))
    await create_segment(database, OTHER_SHOP, draft("Another shop's"))

    listed = await list_segments(database, SHOP)

    assert listed[:4] == [
        {
            "_id": FIRST_TIME,
            "shopId": SHOP,
            "name": "First-time customers",
            "nameKey": "first-time customers",
            "query": None,
            "filter": {"orderCountMin": 1, "orderCountMax": 1},
            "builtIn": "FIRST_TIME_CUSTOMERS",
        },
        {
            "_id": REPEAT,
            "shopId": SHOP,
            "name": "Repeat customers",
            "nameKey": "repeat customers",
            "query": None,
            "filter": {"orderCountMin": 2},
            "builtIn": "REPEAT_CUSTOMERS",
        },
        {
            "_id": ObjectId("000000000000000000000003"),
            "shopId": SHOP,
            "name": "Subscribers",
            "nameKey": "subscribers",
            "query": None,
            "filter": {"hasActiveSubscription": True},
            "builtIn": "SUBSCRIBERS",
        },
        {
            "_id": ObjectId("000000000000000000000004"),
            "shopId": SHOP,
            "name": "Members",
            "nameKey": "members",
            "query": None,
            "filter": {"isMember": True},
            "builtIn": "MEMBERS",
        },
    ]
    assert [(s["name"], s["shopId"], "builtIn" in s) for s in listed[4:]] == [
        ("Alpha", SHOP, False),
        ("beta", SHOP, False),
    ]
    assert [s["shopId"] for s in await list_segments(database, OTHER_SHOP)] == [OTHER_SHOP] * 5


async def test_a_listed_built_in_can_be_changed_by_its_reader_without_changing_the_built_in(
    database,
):
    first = (await list_segments(database, SHOP))[0]
    first["filter"]["orderCountMax"] = 5

    assert (await list_segments(database, SHOP))[0]["filter"] == {
        "orderCountMin": 1,
        "orderCountMax": 1,
    }


async def test_a_segment_is_found_by_its_id_or_built_in_key_in_its_own_shop_only(
    database, shops, clock
):
    mine = await create_segment(database, SHOP, draft("Mine"))
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs"))

    assert await find_segment(database, SHOP, mine["_id"]) == mine
    assert await find_segment(database, SHOP, theirs["_id"]) is None
    assert await find_segment(database, SHOP, ObjectId()) is None
    assert await find_segment(database, SHOP, None) is None
    assert await find_segment(database, SHOP, str(mine["_id"])) is None
    assert await find_segment(database, SHOP, "VIP") is None
    by_key = await find_segment(database, OTHER_SHOP, "MEMBERS")
    by_id = await find_segment(database, OTHER_SHOP, ObjectId("000000000000000000000004"))
    assert by_key == by_id
    assert by_key is not None
    assert (by_key["name"], by_key["shopId"]) == ("Members", OTHER_SHOP)


async def test_a_segment_condition_selects_the_shop_s_contacts_its_filter_and_query_name(
    database, shops, clock
):
    saved = await create_segment(
        database, SHOP, draft("Big spenders", " vip ", orderCountMin=2, labelsAny=["Gold"])
    )

    assert await segment_condition(database, SHOP, "REPEAT_CUSTOMERS") == {
        "shopId": SHOP,
        "orderCount": {"$gte": 2},
    }
    assert await segment_condition(database, SHOP, ObjectId("000000000000000000000003")) == {
        "shopId": SHOP,
        "activeSubscriptionCount": {"$gt": 0},
    }
    assert await segment_condition(database, SHOP, saved["_id"]) == {
        "shopId": SHOP,
        "searchTerms": {"$regex": "^vip"},
        "labelKeys": {"$in": ["gold"]},
        "orderCount": {"$gte": 2},
    }


async def test_a_segment_condition_of_a_missing_segment_is_not_found_at_the_filter(
    database, shops, clock
):
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs"))
    for ref in (theirs["_id"], ObjectId(), "NOT_A_KEY", None):
        with pytest.raises(Refused) as refused:
            await segment_condition(database, SHOP, ref)
        assert problems(refused) == [(("filter", "segment"), "Segment not found.", "NOT_FOUND")]


def test_a_stored_segment_without_conditions_matches_every_contact_of_its_shop():
    assert segment_match(SHOP, {"query": None, "filter": {}}) == {"shopId": SHOP}
    assert segment_match(SHOP, {"query": None, "filter": None}) == {"shopId": SHOP}
    assert segment_match(SHOP, {}) == {"shopId": SHOP}
    assert segment_match(SHOP, {"query": "ann", "filter": {"kind": "LEAD"}}) == {
        "shopId": SHOP,
        "searchTerms": {"$regex": "^ann"},
        "kind": {"$eq": "LEAD"},
    }


def test_a_checked_draft_is_trimmed_and_its_filter_kept_in_json_form():
    checked = check_draft(draft("  Big   Spenders ", " vip ", totalSpentMin="100.50"))

    assert checked == CheckedSegment(
        "Big   Spenders", "big spenders", "vip", {"totalSpentMin": "100.50"}
    )
    assert check_draft(draft("x" * 100, " ")) == CheckedSegment("x" * 100, "x" * 100, None, {})


def test_a_draft_without_a_name_is_refused_with_every_other_problem():
    with pytest.raises(Refused) as refused:
        check_draft(
            SegmentDraft(
                None, None, ContactFilterSpec(labels_any=["x" * 101]), filter_segment="MEMBERS"
            )
        )

    assert problems(refused) == [
        (("input", "name"), "Name is required.", "REQUIRED"),
        (("input", "filter", "labelsAny"), "A label is at most 100 characters.", "INVALID"),
        (
            ("input", "filter", "segment"),
            "A segment cannot refer to another segment; copy its conditions instead.",
            "INVALID",
        ),
    ]


async def test_a_created_segment_is_stored_and_returned_whole_and_takes_one_slot(
    database, shops, clock
):
    created = await create_segment(database, SHOP, draft(" VIP  buyers ", "ann", kind="CUSTOMER"))

    stored = await database.segments.find_one({})
    assert stored == created
    assert {k: v for k, v in created.items() if k != "_id"} == {
        "shopId": SHOP,
        "name": "VIP  buyers",
        "nameKey": "vip buyers",
        "query": "ann",
        "filter": {"kind": "CUSTOMER"},
        "createdAt": T_CREATE,
        "updatedAt": T_CREATE,
    }
    assert isinstance(created["_id"], ObjectId)
    assert await counts(database) == {SHOP: 1, OTHER_SHOP: 0}


async def test_the_100th_segment_is_saved_and_the_101st_refused_without_a_trace(
    database, shops, clock
):
    await database.shops.update_one({"_id": SHOP}, {"$set": {"segmentCount": 99}})
    await database.shops.update_one({"_id": OTHER_SHOP}, {"$set": {"segmentCount": 101}})

    await create_segment(database, SHOP, draft("Hundredth"))
    for shop in (SHOP, OTHER_SHOP):
        with pytest.raises(Refused) as refused:
            await create_segment(database, shop, draft("One more"))
        assert problems(refused) == [
            (None, "A shop can save at most 100 segments.", "LIMIT_EXCEEDED")
        ]

    assert await counts(database) == {SHOP: 100, OTHER_SHOP: 101}
    assert [s["name"] async for s in database.segments.find({})] == ["Hundredth"]


async def test_a_taken_name_gives_back_only_its_own_shop_s_slot(database, shops, clock):
    await create_segment(database, SHOP, draft("Same"))
    await create_segment(database, SHOP, draft("Other"))
    await create_segment(database, OTHER_SHOP, draft("Same"))

    with pytest.raises(Refused) as refused:
        await create_segment(database, SHOP, draft(" SAME "))

    assert problems(refused) == [(("input", "name"), "Another segment has this name.", "TAKEN")]
    assert await counts(database) == {SHOP: 2, OTHER_SHOP: 1}
    assert await database.segments.count_documents({}) == 3


async def test_an_update_stores_the_new_draft_whole_and_returns_it(database, shops, clock):
    created = await create_segment(database, SHOP, draft("One", "old", kind="LEAD"))
    clock.at = T_LATER

    updated = await update_segment(database, SHOP, created["_id"], draft(" Two ", orderCountMin=2))

    assert updated == await database.segments.find_one({"_id": created["_id"]})
    assert updated == {
        "_id": created["_id"],
        "shopId": SHOP,
        "name": "Two",
        "nameKey": "two",
        "query": None,
        "filter": {"orderCountMin": 2},
        "createdAt": T_CREATE,
        "updatedAt": T_LATER,
    }
    assert await counts(database) == {SHOP: 1, OTHER_SHOP: 0}


async def test_an_update_of_another_shop_s_segment_is_not_found_and_changes_nothing(
    database, shops, clock
):
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs"))

    for segment_id in (theirs["_id"], None, ObjectId()):
        with pytest.raises(Refused) as refused:
            await update_segment(database, SHOP, segment_id, draft("Mine"))
        assert problems(refused) == [(("id",), "Segment not found.", "NOT_FOUND")]

    assert await database.segments.find_one({}) == theirs


async def test_an_update_is_refused_for_a_built_in_before_and_a_bad_draft_after_the_id(
    database, shops, clock
):
    with pytest.raises(Refused) as built_in_refused:
        await update_segment(database, SHOP, REPEAT, draft(" "))
    with pytest.raises(Refused) as bad_draft:
        await update_segment(database, SHOP, None, draft(" "))

    assert problems(built_in_refused) == [
        (("id",), "Built-in segments cannot be changed or deleted.", "NOT_ALLOWED")
    ]
    assert problems(bad_draft) == [(("input", "name"), "Name is required.", "REQUIRED")]


async def test_an_update_to_a_taken_name_is_refused_and_changes_nothing(database, shops, clock):
    await create_segment(database, SHOP, draft("Taken"))
    mine = await create_segment(database, SHOP, draft("Mine"))

    with pytest.raises(Refused) as refused:
        await update_segment(database, SHOP, mine["_id"], draft("TAKEN", kind="LEAD"))

    assert problems(refused) == [(("input", "name"), "Another segment has this name.", "TAKEN")]
    assert await database.segments.find_one({"_id": mine["_id"]}) == mine


async def test_a_delete_returns_the_segment_as_it_was_and_frees_one_slot(database, shops, clock):
    kept = await create_segment(database, SHOP, draft("Kept"))
    gone = await create_segment(database, SHOP, draft("Gone", "q", isMember=True))

    deleted = await delete_segment(database, SHOP, gone["_id"])

    assert deleted == gone
    assert [s async for s in database.segments.find({})] == [kept]
    assert await counts(database) == {SHOP: 1, OTHER_SHOP: 0}


async def test_a_delete_of_what_the_shop_does_not_have_is_refused_and_frees_nothing(
    database, shops, clock
):
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs"))
    await create_segment(database, SHOP, draft("Mine"))

    for segment_id in (theirs["_id"], None, ObjectId()):
        with pytest.raises(Refused) as refused:
            await delete_segment(database, SHOP, segment_id)
        assert problems(refused) == [(("id",), "Segment not found.", "NOT_FOUND")]
    with pytest.raises(Refused) as refused:
        await delete_segment(database, SHOP, FIRST_TIME)

    assert problems(refused) == [
        (("id",), "Built-in segments cannot be changed or deleted.", "NOT_ALLOWED")
    ]
    assert await counts(database) == {SHOP: 1, OTHER_SHOP: 1}
    assert await database.segments.count_documents({}) == 2


async def test_a_rename_rewrites_each_segment_naming_the_label_once_and_dates_it(
    database, shops, clock
):
    # First both by creation and by name, so a rename that stopped at a segment
    # it need not change would leave the others as they were.
    other = await create_segment(database, SHOP, draft("Any gold", labelsAny=["Gold"]))
    both = await create_segment(
        database, SHOP, draft("Both", labelsAny=["vip", "Gold", " VIP "], labelsNone=["Vip"])
    )
    dupes = await create_segment(database, SHOP, draft("Dupes", labelsAll=["a", "A", "VIP"]))
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs", labelsAny=["VIP"]))
    clock.at = T_LATER

    changed = await follow_label_rename(database, SHOP, " Vip", "Gold")

    assert changed == 2
    after = {s["name"]: s async for s in database.segments.find({})}
    assert after["Both"] == {
        **both,
        "filter": {"labelsAny": ["Gold"], "labelsNone": ["Gold"]},
        "updatedAt": T_LATER,
    }
    assert after["Dupes"] == {**dupes, "filter": {"labelsAll": ["a", "Gold"]}, "updatedAt": T_LATER}
    assert (after["Any gold"], after["Theirs"]) == (other, theirs)


class RacingSegments:
    """The segments collection, with another writer changing a segment just before a rename's write."""

    def __init__(self, segments: Any, races: int) -> None:
        self.real = segments
        self.races = races
        self.reads = 0
        self.writes = 0

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self.real.find(*args, **kwargs)

    async def update_one(self, query: dict, update: dict) -> Any:
        self.writes += 1
        if self.races:
            self.races -= 1
            await self.real.update_one(
                {"_id": query["_id"]}, {"$push": {"filter.labelsNone": f"late{self.writes}"}}
            )
        return await self.real.update_one(query, update)


class Racing:
    def __init__(self, database: Any, races: int) -> None:
        self.segments = RacingSegments(database.segments, races)


async def test_a_rename_keeps_a_concurrent_change_and_rewrites_the_segment_after_it(
    database, shops, clock
):
    await create_segment(database, SHOP, draft("One", labelsAny=["VIP"]))
    await create_segment(database, SHOP, draft("Two", labelsAll=["VIP"]))
    racing = Racing(database, races=1)

    changed = await follow_label_rename(racing, SHOP, "vip", "Gold")

    filters = {s["name"]: s["filter"] async for s in database.segments.find({})}
    # The segment written first lost the race, whichever it was; both end renamed.
    raced = "One" if "labelsNone" in filters["One"] else "Two"
    assert filters == {
        "One": {"labelsAny": ["Gold"], **({"labelsNone": ["late1"]} if raced == "One" else {})},
        "Two": {"labelsAll": ["Gold"], **({"labelsNone": ["late1"]} if raced == "Two" else {})},
    }
    assert (changed, racing.segments.reads, racing.segments.writes) == (2, 2, 3)


async def test_a_rename_that_always_loses_the_race_gives_up_after_three_reads(
    database, shops, clock
):
    await create_segment(database, SHOP, draft("One", labelsAny=["VIP"]))
    racing = Racing(database, races=10)

    changed = await follow_label_rename(racing, SHOP, "VIP", "Gold")

    stored = await database.segments.find_one({})
    assert stored["filter"] == {"labelsAny": ["VIP"], "labelsNone": ["late1", "late2", "late3"]}
    assert (changed, racing.segments.reads, racing.segments.writes) == (0, 3, 3)


async def test_a_rename_nobody_races_reads_the_shop_s_segments_once(database, shops, clock):
    await create_segment(database, SHOP, draft("One", labelsAny=["VIP"]))
    await create_segment(database, SHOP, draft("Two", labelsNone=["VIP"]))
    theirs = await create_segment(database, OTHER_SHOP, draft("Theirs", labelsAny=["VIP"]))
    racing = Racing(database, races=0)

    changed = await follow_label_rename(racing, SHOP, "VIP", "Gold")

    assert (changed, racing.segments.reads, racing.segments.writes) == (2, 1, 2)
    assert await database.segments.find_one({"shopId": OTHER_SHOP}) == theirs
