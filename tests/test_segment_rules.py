"""Segment rules to the edge: the exact messages, the name's and the shop's bounds on both sides.

tests/test_segments.py tells the story (segments that stay current, the
built-ins, races for the last slot); these pin what a client reads when it
is refused, the 100-character name and the shop's 100 segments on both
sides, what is stored, and how a renamed label is followed.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from conftest import SHOP

from graph.types.node import encode_id
from resolvers.segments import BUILT_IN, follow_label_rename, name_key

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
