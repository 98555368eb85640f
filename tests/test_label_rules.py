"""Label rules to the edge: the exact messages, both sides of every bound, what the log says.

tests/test_labels.py tells the story (counts kept exact under races,
renames, selections); these pin what a client reads when it is refused,
the 100-character and 250-per-call bounds on both sides, and the text each
change leaves in a contact's activity log.
"""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId
from conftest import SHOP

from graph.types.node import encode_id
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.labels import add_remove_plan, check_names, check_selection_labels
from resolvers.validation import email_key

ADD = """
mutation($ids: [ID!]!, $labels: [String!]!) {
  labelsAdd(contactIds: $ids, labels: $labels) {
    contacts { id labels } userErrors { field message code }
  }
}
"""
REMOVE = ADD.replace("labelsAdd", "labelsRemove")
BULK = """
mutation($selection: ContactSelection!, $add: [String!], $remove: [String!]) {
  contactsLabel(selection: $selection, add: $add, remove: $remove) {
    matched modified userErrors { field message code }
  }
}
"""
RENAME = """
mutation($name: String!, $newName: String!) {
  labelRename(name: $name, newName: $newName) {
    label { name contactCount } userErrors { field message code }
  }
}
"""
DELETE = """
mutation($name: String!) {
  labelDelete(name: $name) { deletedName userErrors { field message code } }
}
"""
LABELS = "{ labels { name contactCount } }"
LOG = """
query($id: ID!) {
  contact(id: $id) { labels activity(kinds: [LABELS_CHANGED]) { nodes { text } } }
}
"""


def problems(refusal: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def user_errors(payload: dict) -> list[tuple[list[str] | None, str, str]]:
    return [(e["field"], e["message"], e["code"]) for e in payload["userErrors"]]


async def stored_contacts(database: Any, count: int, **fields: Any) -> list[str]:
    docs = [
        new_contact(
            SHOP, f"l{i}@example.com", email_key(f"l{i}@example.com"), "LEAD", {}, now(), **fields
        )
        for i in range(count)
    ]
    await database.contacts.insert_many(docs)
    return [encode_id("Contact", d["_id"]) for d in docs]


async def slots(database: Any) -> int:
    return (await database.shops.find_one({"_id": SHOP}) or {}).get("labelCount", 0)


# ---------------------------------------------------------------- names


def test_a_label_is_trimmed_with_its_inner_spaces_collapsed():
    assert check_names(("labels",), ["  Top    100 ", "a"], required=True) == ["Top 100", "a"]


def test_the_first_spelling_of_a_label_wins_within_a_call():
    assert check_names(("labels",), ["VIP", "b2b", "vip", "Vip", "B2B"], required=True) == [
        "VIP",
        "b2b",
    ]


def test_a_label_is_1_to_100_characters():
    assert check_names(("labels",), ["x" * 100], required=True) == ["x" * 100]
    with pytest.raises(Refused) as refusal:
        check_names(("labels",), ["ok", "x" * 101, "   "], required=True)
    assert problems(refusal) == [
        (("labels", 1), "A label is at most 100 characters.", "TOO_LONG"),
        (("labels", 2), "A label must not be empty.", "REQUIRED"),
    ]


@pytest.mark.parametrize("raw", ["bell\x07", "nul\x00", "del\x7f", "c1\x85", "tab\tin"])
def test_a_label_with_a_control_character_is_refused(raw):
    # A tab is whitespace everywhere else; inside a label it is refused, not collapsed.
    with pytest.raises(Refused) as refusal:
        check_names(("labels",), [raw], required=True)
    assert problems(refusal) == [
        (("labels", 0), "A label must not contain control characters.", "INVALID")
    ]


def test_a_call_gives_1_to_250_labels():
    assert len(check_names(("labels",), [f"l{i}" for i in range(250)], required=True)) == 250
    for raws, expected in (
        ([f"l{i}" for i in range(251)], ("At most 250 labels per call.", "LIMIT_EXCEEDED")),
        ([], ("Give at least one label.", "REQUIRED")),
        (None, ("Give at least one label.", "REQUIRED")),
    ):
        with pytest.raises(Refused) as refusal:
            check_names(("labels",), raws, required=True)
        assert problems(refusal) == [(("labels",), *expected)]
    assert check_names(("add",), None, required=False) == []
    assert check_names(("add",), [], required=False) == []


def test_a_selection_needs_labels_to_add_or_to_remove():
    assert check_selection_labels(["A", "a"], None) == (["A"], [])
    assert check_selection_labels(None, ["B"]) == ([], ["B"])
    assert check_selection_labels([], [" C "]) == ([], ["C"])
    with pytest.raises(Refused) as refusal:
        check_selection_labels([], None)
    assert problems(refusal) == [(("add",), "Give labels to add or to remove.", "REQUIRED")]


def test_a_selection_reports_the_problems_of_both_lists():
    with pytest.raises(Refused) as refusal:
        check_selection_labels([f"l{i}" for i in range(251)], ["fine", ""])
    assert problems(refusal) == [
        (("add",), "At most 250 labels per call.", "LIMIT_EXCEEDED"),
        (("remove", 1), "A label must not be empty.", "REQUIRED"),
    ]


# ---------------------------------------------------------------- what a change does


def test_a_change_adds_what_is_missing_and_removes_what_is_there_in_order():
    plan = add_remove_plan({"new": "New", "vip": "VIP"}, {"old", "gone"})

    change = plan({"labels": ["Old", "VIP", "Keep"], "labelKeys": ["old", "vip", "keep"]})

    assert change is not None
    assert (change.labels, change.keys) == (["VIP", "Keep", "New"], ["vip", "keep", "new"])
    assert change.text == "Labels added: New; removed: Old"


def test_a_change_that_changes_nothing_is_no_change():
    plan = add_remove_plan({"vip": "VIP"}, {"old"})

    assert plan({"labels": ["Vip"], "labelKeys": ["vip"]}) is None
    assert plan({"labels": ["Old"], "labelKeys": ["old"]}).labels == ["VIP"]


def test_the_log_names_what_was_added_and_removed():
    contact = {"labels": ["A", "B"], "labelKeys": ["a", "b"]}

    assert add_remove_plan({"c": "C", "d": "D"}, set())(contact).text == "Labels added: C, D"
    assert add_remove_plan({}, {"a", "b"})(contact).text == "Labels removed: A, B"
    assert add_remove_plan({"c": "C"}, {"b"})(contact).text == "Labels added: C; removed: B"
    assert add_remove_plan({"c": "C"}, set())({}).labels == ["C"]


# ---------------------------------------------------------------- through the API


async def test_every_refusal_of_labels_add_says_what_is_wrong(api, database):
    (a,) = await stored_contacts(database, 1)
    missing = encode_id("Contact", ObjectId())
    cases = [
        ({"ids": [a], "labels": []}, [(["labels"], "Give at least one label.", "REQUIRED")]),
        (
            {"ids": [], "labels": ["X"]},
            [(["contactIds"], "Give at least one contact.", "REQUIRED")],
        ),
        (
            {"ids": [a] * 251, "labels": ["X"]},
            [(["contactIds"], "At most 250 contacts per call.", "LIMIT_EXCEEDED")],
        ),
        (
            {"ids": [missing, a, "junk"], "labels": ["X"]},
            [
                (["contactIds", "0"], "Contact not found.", "NOT_FOUND"),
                (["contactIds", "2"], "Contact not found.", "NOT_FOUND"),
            ],
        ),
    ]
    for variables, expected in cases:
        payload = (await api.data(ADD, variables))["labelsAdd"]
        assert (user_errors(payload), payload["contacts"]) == (expected, []), variables
    assert (await api.data(LABELS))["labels"] == []
    assert await slots(database) == 0


async def test_250_contacts_are_labelled_in_one_call(api, database):
    ids = await stored_contacts(database, 250)

    payload = (await api.data(ADD, {"ids": ids, "labels": ["All"]}))["labelsAdd"]

    assert payload["userErrors"] == []
    assert len(payload["contacts"]) == 250
    assert (await api.data(LABELS))["labels"] == [{"name": "All", "contactCount": 250}]


async def test_the_250th_label_of_a_shop_is_made_and_the_251st_refused(api, database):
    (a,) = await stored_contacts(database, 1)
    assert (await api.data(ADD, {"ids": [a], "labels": [f"l{i}" for i in range(249)]}))[
        "labelsAdd"
    ]["userErrors"] == []

    last = (await api.data(ADD, {"ids": [a], "labels": ["last"]}))["labelsAdd"]
    over = (await api.data(ADD, {"ids": [a], "labels": ["over"]}))["labelsAdd"]
    bulk = (await api.data(BULK, {"selection": {}, "add": ["over"]}))["contactsLabel"]

    assert last["userErrors"] == []
    assert user_errors(over) == [
        (["labels"], "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED")
    ]
    assert user_errors(bulk) == [
        (["add"], "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED")
    ]
    assert await slots(database) == 250
    assert await database.labels.count_documents({"shopId": SHOP}) == 250


async def test_removing_a_label_the_shop_does_not_have_names_it(api, database):
    (a,) = await stored_contacts(database, 1)
    await api.data(ADD, {"ids": [a], "labels": ["VIP"]})

    payload = (await api.data(REMOVE, {"ids": [a], "labels": ["vip", "Nope"]}))["labelsRemove"]

    assert user_errors(payload) == [(["labels", "1"], "No label 'Nope' in this shop.", "NOT_FOUND")]
    assert (await api.data(LOG, {"id": a}))["contact"]["labels"] == ["VIP"]


async def test_a_selection_may_not_add_and_remove_one_label(api, database):
    (a,) = await stored_contacts(database, 1)
    await api.data(ADD, {"ids": [a], "labels": ["VIP", "B2B"]})

    payload = (
        await api.data(
            BULK, {"selection": {}, "add": ["New", "vip", "b2B"], "remove": ["VIP", "B2B"]}
        )
    )["contactsLabel"]

    message = "A label cannot be added and removed at once."
    assert user_errors(payload) == [
        (["add", "1"], message, "INVALID"),
        (["add", "2"], message, "INVALID"),
    ]
    assert (payload["matched"], payload["modified"]) == (0, 0)
    assert [label["name"] for label in (await api.data(LABELS))["labels"]] == ["B2B", "VIP"]


async def test_a_label_made_for_a_selection_of_nobody_is_not_kept(api, database):
    await stored_contacts(database, 2)

    payload = (await api.data(BULK, {"selection": {"query": "nobody-at-all"}, "add": ["Ghost"]}))[
        "contactsLabel"
    ]

    assert payload == {"matched": 0, "modified": 0, "userErrors": []}
    assert (await api.data(LABELS))["labels"] == []
    assert await slots(database) == 0


async def test_a_selection_by_ids_counts_what_it_matched_and_changed(api, database):
    a, b, c = await stored_contacts(database, 3)
    await api.data(ADD, {"ids": [a], "labels": ["VIP"]})

    payload = (await api.data(BULK, {"selection": {"ids": [a, b, b]}, "add": ["vip"]}))[
        "contactsLabel"
    ]

    assert payload == {"matched": 2, "modified": 1, "userErrors": []}
    assert (await api.data(LABELS))["labels"] == [{"name": "VIP", "contactCount": 2}]
    assert (await api.data(LOG, {"id": c}))["contact"]["labels"] == []


async def test_renaming_or_deleting_a_label_the_shop_lacks_is_not_found(api, database):
    for query, variables, name in (
        (RENAME, {"name": "Nope", "newName": "Other"}, "labelRename"),
        (DELETE, {"name": "Nope"}, "labelDelete"),
    ):
        payload = (await api.data(query, variables))[name]
        assert user_errors(payload) == [(["name"], "Label not found.", "NOT_FOUND")]
    payload = (await api.data(RENAME, {"name": "Nope", "newName": "bad\x07"}))["labelRename"]
    assert user_errors(payload) == [
        (["newName"], "A label must not contain control characters.", "INVALID")
    ]


async def test_a_new_spelling_of_a_label_reaches_every_contact_and_its_log(api, database):
    a, b = await stored_contacts(database, 2)
    await api.data(ADD, {"ids": [a, b], "labels": ["Keep", "vip"]})
    before = await slots(database)

    payload = (await api.data(RENAME, {"name": "VIP", "newName": " VIP "}))["labelRename"]

    assert payload == {"label": {"name": "VIP", "contactCount": 2}, "userErrors": []}
    for gid in (a, b):
        contact = (await api.data(LOG, {"id": gid}))["contact"]
        assert contact["labels"] == ["Keep", "VIP"]
        assert contact["activity"]["nodes"][0] == {"text": "Label renamed: vip to VIP"}
    assert await slots(database) == before
    stored = await database.contacts.find_one({"email": "l0@example.com"})
    assert stored["labelKeys"] == ["keep", "vip"]


async def test_the_same_spelling_again_changes_nothing(api, database):
    (a,) = await stored_contacts(database, 1)
    await api.data(ADD, {"ids": [a], "labels": ["VIP"]})

    payload = (await api.data(RENAME, {"name": "vip", "newName": "VIP"}))["labelRename"]

    assert payload == {"label": {"name": "VIP", "contactCount": 1}, "userErrors": []}
    assert [
        n["text"] for n in (await api.data(LOG, {"id": a}))["contact"]["activity"]["nodes"]
    ] == ["Labels added: VIP"]


async def test_a_rename_keeps_each_contacts_place_for_the_label(api, database):
    a, b = await stored_contacts(database, 2)
    await api.data(ADD, {"ids": [a], "labels": ["First", "Old", "Last"]})
    await api.data(ADD, {"ids": [b], "labels": ["New", "Old"]})

    await api.data(RENAME, {"name": "old", "newName": "Fresh"})
    await api.data(RENAME, {"name": "fresh", "newName": "new"})  # a merge

    assert (await api.data(LOG, {"id": a}))["contact"]["labels"] == ["First", "New", "Last"]
    b_contact = (await api.data(LOG, {"id": b}))["contact"]
    assert b_contact["labels"] == ["New"]
    assert b_contact["activity"]["nodes"][0] == {"text": "Label renamed: Fresh to New"}
    assert (await api.data(LABELS))["labels"] == [
        {"name": "First", "contactCount": 1},
        {"name": "Last", "contactCount": 1},
        {"name": "New", "contactCount": 2},
    ]
    assert await slots(database) == 3


async def test_deleting_a_label_frees_its_slot_and_names_it(api, database):
    (a,) = await stored_contacts(database, 1)
    await api.data(ADD, {"ids": [a], "labels": ["VIP", "Other"]})

    payload = (await api.data(DELETE, {"name": " vip "}))["labelDelete"]

    assert payload == {"deletedName": "VIP", "userErrors": []}
    assert await slots(database) == 1
    contact = (await api.data(LOG, {"id": a}))["contact"]
    assert contact["labels"] == ["Other"]
    assert contact["activity"]["nodes"][0] == {"text": "Labels removed: VIP"}
