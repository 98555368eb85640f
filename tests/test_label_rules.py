"""Label rules to the edge: the exact messages, both sides of every bound, what the log says.

tests/test_labels.py tells the story (counts kept exact under races,
renames, selections); these pin what a client reads when it is refused,
the 100-character and 250-per-call bounds on both sides, and the text each
change leaves in a contact's activity log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

from graph.types.node import encode_id
from resolvers import activity, labels
from resolvers.clock import now
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.events import contact_gid
from resolvers.labels import add_remove_plan, check_names, check_selection_labels
from resolvers.validation import Checker, email_key

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


# ---------------------------------------------------------------- direct calls, fixed clock

AT = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
AUTHOR = "Ann Admin"


@pytest.fixture
def clock(monkeypatch):
    # The log entries (resolvers.activity) and the label documents share one instant.
    monkeypatch.setattr(labels, "now", lambda: AT)
    monkeypatch.setattr(activity, "now", lambda: AT)
    return AT


@pytest.fixture
def pages(monkeypatch) -> list[int]:
    """How many contacts each label change was given, in order."""
    sizes: list[int] = []
    real = labels.change_labels

    async def counted(database_: Any, shop_id: str, docs: list, *args: Any) -> Any:
        sizes.append(len(docs))
        return await real(database_, shop_id, docs, *args)

    monkeypatch.setattr(labels, "change_labels", counted)
    return sizes


async def a_shop(database: Any, shop: str = SHOP, **names_counts: int) -> None:
    """The shop with these labels (key = name lower-cased) and one slot for each."""
    await database.shops.insert_one({"_id": shop, "labelCount": len(names_counts)})
    if names_counts:
        await database.labels.insert_many(
            [
                {"shopId": shop, "key": n.lower(), "name": n, "contactCount": c, "createdAt": AT}
                for n, c in names_counts.items()
            ]
        )


async def a_contact(
    database: Any, labels_: list[str] | None = None, shop: str = SHOP, entries: int = 0
) -> dict[str, Any]:
    email = f"c{ObjectId()}@example.com"
    log = [
        activity.entry("NOTE", text=f"n{i}", at=AT - dt.timedelta(minutes=i))
        for i in range(entries)
    ]
    doc = new_contact(shop, email, email, "LEAD", {}, AT, labels=labels_, entries=log)
    await database.contacts.insert_one(doc)
    return doc


async def shop_labels(database: Any, shop: str = SHOP) -> dict[str, tuple[str, int]]:
    found = await database.labels.find({"shopId": shop}).to_list()
    return {d["key"]: (d["name"], d["contactCount"]) for d in found}


async def slots_of(database: Any, shop: str = SHOP) -> int | None:
    doc = await database.shops.find_one({"_id": shop})
    return None if doc is None else doc.get("labelCount")


async def labels_of(database: Any, contact: dict[str, Any]) -> tuple[list[str], list[str]]:
    doc = await database.contacts.find_one({"_id": contact["_id"]})
    return doc["labels"], doc["labelKeys"]


async def label_log(database: Any, contact: dict[str, Any]) -> list[tuple[str, str | None]]:
    doc = await database.contacts.find_one({"_id": contact["_id"]})
    return [
        (e["text"], e.get("author"))
        for e in sorted(doc["activity"], key=activity.sort_key, reverse=True)
        if e["kind"] == "LABELS_CHANGED"
    ]


async def label_events(database: Any) -> list[tuple[Any, dict[str, Any]]]:
    stored = await database.events.find({"type": "LABELS_CHANGED"}, sort=[("_id", 1)]).to_list()
    return [(e["contactId"], e["data"]) for e in stored]


def read(doc: dict[str, Any]) -> dict[str, Any]:
    """A contact as a label change reads it."""
    return {k: doc[k] for k in ("_id", "labels", "labelKeys", "activityEmbedded")}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x1fb", None),
        ("a b", "a b"),
        ("a~b", "a~b"),
        ("a\x80b", None),
        ("a\x9fb", None),
        ("a\xa0b", "a b"),
    ],
)
def test_control_characters_end_at_0x1f_and_run_from_0x7f_to_0x9f(raw, expected):
    check = Checker()
    assert labels.normalize_label(check, ("labels", 3), raw) == expected
    if expected is None:
        assert [(p.field, p.code) for p in check.problems] == [(("labels", 3), "INVALID")]
    else:
        assert check.ok


# -- reserving labels


async def test_new_labels_take_a_slot_each_and_known_ones_keep_their_spelling(database, clock):
    await a_shop(database, VIP=3)
    await a_shop(database, OTHER_SHOP, New=0)

    created = await labels.reserve_labels(database, SHOP, ["vip", "New", "Other"])

    assert (created.keys, created.names) == (
        ["new", "other"],
        {"vip": "VIP", "new": "New", "other": "Other"},
    )
    stored = await database.labels.find({"shopId": SHOP, "key": "new"}, {"_id": 0}).to_list()
    assert stored == [
        {"shopId": SHOP, "key": "new", "name": "New", "contactCount": 0, "createdAt": AT}
    ]
    assert await shop_labels(database) == {
        "vip": ("VIP", 3),
        "new": ("New", 0),
        "other": ("Other", 0),
    }
    assert (await slots_of(database), await slots_of(database, OTHER_SHOP)) == (3, 1)


async def test_known_labels_or_none_at_all_take_no_slot(database, clock):
    await a_shop(database, VIP=1)

    known = await labels.reserve_labels(database, SHOP, ["Vip"])
    nothing = await labels.reserve_labels(database, SHOP, [])

    assert (known.keys, known.names) == ([], {"vip": "VIP"})
    assert (nothing.keys, nothing.names) == ([], {})
    assert await slots_of(database) == 1


async def test_the_last_free_slots_are_taken_and_one_more_is_refused_at_once(
    database, clock, monkeypatch
):
    # A full shop with nothing in flight refuses without waiting for anyone.
    monkeypatch.setattr(labels, "RESERVE_WAIT_SECONDS", 60.0)
    await a_shop(database, **{f"L{i}": 0 for i in range(248)})

    with pytest.raises(Refused) as refusal:
        await asyncio.wait_for(labels.reserve_labels(database, SHOP, ["x", "y", "z"]), 5)
    assert problems(refusal) == [
        (("labels",), "A shop can have at most 250 distinct labels.", "LIMIT_EXCEEDED")
    ]
    assert (await slots_of(database), len(await shop_labels(database))) == (248, 248)

    created = await labels.reserve_labels(database, SHOP, ["x", "y"])
    assert created.keys == ["x", "y"]
    assert (await slots_of(database), len(await shop_labels(database))) == (250, 250)


async def test_a_call_waits_for_a_label_another_call_is_creating(database, clock):
    # 250 slots, 249 labels: another call reserved the last slot and is creating its label.
    await a_shop(database, **{f"L{i}": 0 for i in range(249)})
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 250}})

    async def the_other_call() -> None:
        await asyncio.sleep(0.1)
        await database.labels.insert_one(
            {"shopId": SHOP, "key": "shared", "name": "SHARED", "contactCount": 0}
        )

    started = asyncio.get_running_loop().time()
    created, _ = await asyncio.gather(
        labels.reserve_labels(database, SHOP, ["Shared"]), the_other_call()
    )

    assert (created.keys, created.names) == ([], {"shared": "SHARED"})
    assert await slots_of(database) == 250
    # It looks again every few milliseconds: it goes on soon after the label is there.
    assert asyncio.get_running_loop().time() - started < 0.9


async def test_waiting_for_slots_in_flight_ends_with_a_refusal(database, clock, monkeypatch):
    monkeypatch.setattr(labels, "RESERVE_WAIT_SECONDS", 0.3)
    await a_shop(database, **{f"L{i}": 0 for i in range(249)})
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 250}})
    started = asyncio.get_running_loop().time()

    with pytest.raises(Refused) as refusal:
        await asyncio.wait_for(labels.reserve_labels(database, SHOP, ["late"]), 10)

    waited = asyncio.get_running_loop().time() - started
    assert 0.3 <= waited < 5
    assert problems(refusal)[0][2] == "LIMIT_EXCEEDED"
    assert await slots_of(database) == 250
    assert "late" not in await shop_labels(database)


async def test_a_label_made_by_another_call_meanwhile_gives_its_slot_back(
    database, clock, monkeypatch
):
    await a_shop(database, Taken=2)
    real = labels._existing
    calls = 0

    async def first_look_misses_it(database_: Any, shop_id: str, keys: Any) -> dict:
        # As if "Taken" were created between this call's look and its insert.
        nonlocal calls
        calls += 1
        return {} if calls == 1 else await real(database_, shop_id, keys)

    monkeypatch.setattr(labels, "_existing", first_look_misses_it)

    created = await labels.reserve_labels(database, SHOP, ["taken", "Fresh"])

    assert (created.keys, created.names) == (["fresh"], {"taken": "Taken", "fresh": "Fresh"})
    assert await shop_labels(database) == {"taken": ("Taken", 2), "fresh": ("Fresh", 0)}
    assert await slots_of(database) == 2


async def test_releasing_gives_back_only_the_labels_nobody_has(database, clock):
    await a_shop(database, A=0, B=1, C=0)
    await a_shop(database, OTHER_SHOP, A=0)

    await labels.CreatedLabels(database, SHOP, ["a", "b"]).release()

    assert await shop_labels(database) == {"b": ("B", 1), "c": ("C", 0)}
    assert await slots_of(database) == 2
    assert (await shop_labels(database, OTHER_SHOP), await slots_of(database, OTHER_SHOP)) == (
        {"a": ("A", 0)},
        1,
    )


async def test_waiting_is_worth_it_while_slots_are_in_flight_or_the_label_exists(database):
    await a_shop(database, OTHER_SHOP, X=0, Y=0, Z=0)  # another shop, its slots all in use
    assert await labels._worth_waiting(database, SHOP, ["x"]) is False  # no shop at all
    await database.shops.insert_one({"_id": SHOP})
    assert await labels._worth_waiting(database, SHOP, ["x"]) is False  # no labelCount yet
    await database.shops.update_one({"_id": SHOP}, {"$set": {"labelCount": 1}})
    assert await labels._worth_waiting(database, SHOP, ["x"]) is True  # one slot, no label
    await database.labels.insert_one({"shopId": SHOP, "key": "w", "name": "W"})
    assert await labels._worth_waiting(database, SHOP, ["x"]) is False  # the slot holds W
    assert await labels._worth_waiting(database, SHOP, ["v", "w"]) is True  # W exists by now


async def test_counts_move_for_the_given_labels_of_the_shop(database):
    await a_shop(database, A=1, B=1)
    await a_shop(database, OTHER_SHOP, A=1)

    await labels.add_label_counts(database, SHOP, (k for k in ["a"]), 2)
    await labels.add_label_counts(database, SHOP, ["b"], 0)
    await labels.add_label_counts(database, SHOP, [], 5)

    assert await shop_labels(database) == {"a": ("A", 3), "b": ("B", 1)}
    assert await shop_labels(database, OTHER_SHOP) == {"a": ("A", 1)}


async def test_counts_of_no_label_or_by_nothing_send_no_write(database, commands):
    await a_shop(database, A=1)
    commands.reset()

    await labels.add_label_counts(database, SHOP, ["a"], 0)
    await labels.add_label_counts(database, SHOP, [], 5)

    assert commands.on("labels") == []
    assert await shop_labels(database) == {"a": ("A", 1)}


# -- changing contacts


async def test_a_change_writes_the_labels_the_log_the_event_and_the_counts(database, clock):
    await a_shop(database, Old=1, Keep=1, New=0)
    ann = await a_contact(database, ["Old", "Keep"])
    plan = labels.add_remove_plan({"new": "New"}, {"old"})

    outcome = await labels.change_labels(database, SHOP, [read(ann)], plan, AUTHOR)

    assert outcome.modified == [ann["_id"]]
    assert outcome.deltas == Counter({"new": 1, "old": -1})
    assert outcome.added == {"new": [ann["_id"]]}
    stored = await database.contacts.find_one({"_id": ann["_id"]})
    entry = stored["activity"][0]
    assert (stored["labels"], stored["labelKeys"], stored["updatedAt"]) == (
        ["Keep", "New"],
        ["keep", "new"],
        AT,
    )
    assert (stored["activityCount"], stored["activityEmbedded"], len(stored["activity"])) == (
        1,
        1,
        1,
    )
    assert entry == {
        "_id": entry["_id"],
        "kind": "LABELS_CHANGED",
        "at": AT,
        "text": "Labels added: New; removed: Old",
        "author": AUTHOR,
    }
    assert await label_events(database) == [
        (
            ann["_id"],
            {
                "id": contact_gid(ann["_id"]),
                "labels": ["Keep", "New"],
                "added": ["New"],
                "removed": ["Old"],
            },
        )
    ]
    assert await shop_labels(database) == {
        "old": ("Old", 0),
        "keep": ("Keep", 1),
        "new": ("New", 1),
    }


async def test_a_change_stamps_the_contact_and_files_its_event_under_the_shop(database, clock):
    await a_shop(database, New=0)
    earlier = AT - dt.timedelta(days=3)
    ann = new_contact(SHOP, "ann@example.com", "ann@example.com", "LEAD", {}, earlier)
    await database.contacts.insert_one(ann)

    await labels.change_labels(
        database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), AUTHOR
    )

    stored = await database.contacts.find_one({"_id": ann["_id"]})
    assert (stored["createdAt"], stored["updatedAt"]) == (earlier, AT)
    assert set(stored) == set(ann) | {"activity", "activityCount", "activityEmbedded"}
    event = await database.events.find_one({"type": "LABELS_CHANGED"})
    assert (event["shopId"], event["contactId"]) == (SHOP, ann["_id"])


async def test_a_change_that_leaves_the_log_under_its_bound_starts_no_spill(
    database, clock, commands
):
    await a_shop(database, New=0)
    # Two short of the bound: the change's own entry leaves it one short.
    ann = await a_contact(database, entries=activity.SPILL_AT - 2)
    commands.reset()

    await labels.change_labels(
        database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), AUTHOR
    )

    assert "aggregate" not in commands.on("contacts")
    assert await database.activity_archive.count_documents({}) == 0
    stored = await database.contacts.find_one({"_id": ann["_id"]})
    assert stored["activityEmbedded"] == activity.SPILL_AT - 1


async def test_a_change_without_an_author_logs_none(database, clock):
    await a_shop(database, New=0)
    ann = await a_contact(database)

    await labels.change_labels(
        database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), None
    )

    assert "author" not in (await database.contacts.find_one({"_id": ann["_id"]}))["activity"][0]


async def test_a_contact_changed_meanwhile_is_read_again_and_changed_once(database, clock):
    await a_shop(database, Had=1, B=0)
    ann = await a_contact(database, ["Had"])
    bob = await a_contact(database)
    bystander = await a_contact(database)  # not in the call
    stale = {**read(ann), "labels": [], "labelKeys": []}

    outcome = await labels.change_labels(
        database, SHOP, [stale, read(bob)], labels.add_remove_plan({"b": "B"}, set()), AUTHOR
    )

    assert sorted(outcome.modified) == sorted([ann["_id"], bob["_id"]])
    assert outcome.deltas == Counter({"b": 2})
    assert await labels_of(database, ann) == (["Had", "B"], ["had", "b"])
    assert await label_log(database, ann) == [("Labels added: B", AUTHOR)]
    events = await label_events(database)
    assert [cid for cid, _ in events] == [bob["_id"], ann["_id"]]  # bob in the first round
    assert events[1][1] == {
        "id": contact_gid(ann["_id"]),
        "labels": ["Had", "B"],
        "added": ["B"],
        "removed": [],
    }
    assert await shop_labels(database) == {"had": ("Had", 1), "b": ("B", 2)}
    assert await labels_of(database, bystander) == ([], [])


async def test_a_contact_of_another_shop_or_with_nothing_to_change_is_left_alone(database, clock):
    await a_shop(database, B=1)
    theirs = await a_contact(database, shop=OTHER_SHOP)
    has_it = await a_contact(database, ["B"])
    plan = labels.add_remove_plan({"b": "B"}, set())

    outcome = await labels.change_labels(database, SHOP, [read(theirs), read(has_it)], plan, None)

    assert (outcome.modified, outcome.deltas, outcome.added) == ([], Counter(), {})
    assert await labels_of(database, theirs) == ([], [])
    assert (await database.contacts.find_one({"_id": has_it["_id"]}))["activityCount"] == 0
    assert await label_events(database) == []
    assert await shop_labels(database) == {"b": ("B", 1)}


async def test_a_commit_whose_reply_was_lost_still_moves_the_counts(database, clock, monkeypatch):
    await a_shop(database, New=0)
    ann, bob = await a_contact(database), await a_contact(database)
    real = activity.in_transaction

    async def reply_lost(database_: Any, work: Any) -> Any:
        await real(database_, work)
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(activity, "in_transaction", reply_lost)
    plan = labels.add_remove_plan({"new": "New"}, set())

    with pytest.raises(AutoReconnect):
        await labels.change_labels(database, SHOP, [read(ann), read(bob)], plan, AUTHOR)

    assert await labels_of(database, ann) == (["New"], ["new"])
    assert await shop_labels(database) == {"new": ("New", 2)}


async def test_a_transaction_that_failed_moves_no_counts(database, clock, monkeypatch):
    await a_shop(database, New=0)
    ann = await a_contact(database)

    async def refused(database_: Any, work: Any) -> Any:
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(activity, "in_transaction", refused)

    with pytest.raises(AutoReconnect):
        await labels.change_labels(
            database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), None
        )

    assert await labels_of(database, ann) == ([], [])
    assert await shop_labels(database) == {"new": ("New", 0)}


async def test_a_transaction_rolled_back_after_its_writes_leaves_nothing_behind(
    database, clock, monkeypatch
):
    # The labels and the LABELS_CHANGED events go together, or neither does.
    await a_shop(database, New=0)
    ann = await a_contact(database)

    async def rolled_back(database_: Any, work: Any) -> Any:
        async with database_.client.start_session() as session:
            await session.start_transaction()
            await work(session)
            await session.abort_transaction()
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(activity, "in_transaction", rolled_back)

    with pytest.raises(AutoReconnect):
        await labels.change_labels(
            database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), AUTHOR
        )

    assert await labels_of(database, ann) == ([], [])
    assert await label_events(database) == []
    assert await shop_labels(database) == {"new": ("New", 0)}


async def test_a_failure_is_reported_as_it_happened_when_the_check_after_it_fails_too(
    database, clock, monkeypatch
):
    await a_shop(database, New=0)
    ann = await a_contact(database)

    async def lost(database_: Any, work: Any) -> Any:
        raise AutoReconnect("connection closed")

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationFailure("not reachable either")

    monkeypatch.setattr(activity, "in_transaction", lost)
    monkeypatch.setattr(labels, "_written", unreachable)

    with pytest.raises(AutoReconnect):
        await labels.change_labels(
            database, SHOP, [read(ann)], labels.add_remove_plan({"new": "New"}, set()), AUTHOR
        )
    assert await shop_labels(database) == {"new": ("New", 0)}


@pytest.mark.parametrize(("entries", "archived"), [(198, 0), (199, 100)])
async def test_the_entry_a_change_logs_may_move_the_oldest_ones_to_the_archive(
    database, clock, entries, archived
):
    # 200 embedded entries is the bound; the change's own entry is the 199th or the 200th.
    await a_shop(database, X=1, New=0)
    ann = await a_contact(database, ["X"], entries=entries)
    # Read before its labels and its log grew: the change reads it again.
    stale = {"_id": ann["_id"], "labels": [], "labelKeys": [], "activityEmbedded": 0}

    await labels.change_labels(
        database, SHOP, [stale], labels.add_remove_plan({"new": "New"}, set()), None
    )

    moved = await database.activity_archive.find({"contactId": ann["_id"]}).to_list()
    assert sum(len(b["entries"]) for b in moved) == archived
    stored = await database.contacts.find_one({"_id": ann["_id"]})
    assert stored["activityEmbedded"] == entries + 1 - archived


async def test_a_write_went_through_where_its_entry_is_embedded_or_archived(database):
    ann, bob, cat = [await a_contact(database) for _ in range(3)]
    theirs = await a_contact(database, shop=OTHER_SHOP)
    e_ann, e_bob, e_cat, e_theirs = (ObjectId() for _ in range(4))
    await database.contacts.update_one(
        {"_id": ann["_id"]}, {"$push": {"activity": {"_id": e_ann, "kind": "NOTE"}}}
    )
    await database.contacts.update_one(
        {"_id": theirs["_id"]}, {"$push": {"activity": {"_id": e_theirs, "kind": "NOTE"}}}
    )
    await database.activity_archive.insert_many(
        [
            {"shopId": SHOP, "contactId": bob["_id"], "entries": [{"_id": e_bob}]},
            {"shopId": OTHER_SHOP, "contactId": cat["_id"], "entries": [{"_id": e_cat}]},
        ]
    )

    done = await labels._written(
        database,
        SHOP,
        {e_ann: ann["_id"], e_bob: bob["_id"], e_cat: cat["_id"], e_theirs: theirs["_id"]},
    )

    assert done == {ann["_id"], bob["_id"]}


async def test_entries_all_found_on_their_contacts_leave_the_archive_unread(database, commands):
    ann = await a_contact(database, ["Old"])
    entry = ObjectId()
    await database.contacts.update_one(
        {"_id": ann["_id"]}, {"$push": {"activity": {"_id": entry, "kind": "NOTE"}}}
    )
    commands.reset()

    assert await labels._written(database, SHOP, {entry: ann["_id"]}) == {ann["_id"]}
    assert commands.on("activity_archive") == []


def test_the_event_names_what_came_and_went_in_the_contact_s_spelling():
    doc = {"labels": ["A", "Bee", "C"], "labelKeys": ["a", "b", "c"]}
    change = labels.Change(["A", "C", "New"], ["a", "c", "new"], "")
    oid = ObjectId()

    assert labels._labels_event(oid, doc, change) == {
        "id": contact_gid(oid),
        "labels": ["A", "C", "New"],
        "added": ["New"],
        "removed": ["Bee"],
    }
    assert labels._labels_event(oid, {}, change)["added"] == ["A", "C", "New"]


async def test_counts_move_by_each_label_s_own_delta(database):
    await a_shop(database, A=1, B=1, C=1)
    await a_shop(database, OTHER_SHOP, A=1)

    await labels._move_counts(database, SHOP, Counter({"a": 2, "b": 0, "c": -1}))

    assert await shop_labels(database) == {"a": ("A", 3), "b": ("B", 1), "c": ("C", 0)}
    assert await shop_labels(database, OTHER_SHOP) == {"a": ("A", 1)}


async def test_a_label_deleted_while_it_was_added_is_taken_off_again(database, clock):
    await a_shop(database, Stay=2)
    ann = await a_contact(database, ["Gone", "Stay"])
    bob = await a_contact(database, ["Gone", "Stay"])  # not one this call gave it to
    outcome = labels.Outcome(added={"gone": [ann["_id"]], "stay": [bob["_id"]]})

    await labels._take_back_vanished(database, SHOP, outcome, AUTHOR)

    assert await labels_of(database, ann) == (["Stay"], ["stay"])
    assert await label_log(database, ann) == [("Labels removed: Gone", AUTHOR)]
    assert await labels_of(database, bob) == (["Gone", "Stay"], ["gone", "stay"])


async def test_a_vanished_label_is_taken_back_page_by_page(database, clock, monkeypatch, pages):
    monkeypatch.setattr(labels, "BATCH", 2)
    await a_shop(database)
    docs = [await a_contact(database, ["Gone"]) for _ in range(5)]

    await labels._take_back_vanished(
        database, SHOP, labels.Outcome(added={"gone": [d["_id"] for d in docs]}), AUTHOR
    )

    assert pages == [2, 2, 1]
    for doc in docs:
        assert await labels_of(database, doc) == ([], [])


async def test_nothing_is_taken_back_while_the_labels_exist(database, clock):
    await a_shop(database, Stay=1)
    ann = await a_contact(database, ["Stay"])

    await labels._take_back_vanished(database, SHOP, labels.Outcome(), AUTHOR)
    await labels._take_back_vanished(
        database, SHOP, labels.Outcome(added={"stay": [ann["_id"]]}), AUTHOR
    )

    assert await label_log(database, ann) == []


# -- the operations' parts


async def test_contacts_by_ids_are_distinct_in_order_and_of_the_shop(database):
    ann, bob = await a_contact(database, ["A"]), await a_contact(database)
    theirs = await a_contact(database, shop=OTHER_SHOP)
    path = ("selection", "ids")

    found = await labels.contacts_by_ids(database, SHOP, [bob["_id"], ann["_id"], bob["_id"]], path)

    assert found == [read(bob), read(ann)]
    with pytest.raises(Refused) as refusal:
        await labels.contacts_by_ids(
            database, SHOP, [ann["_id"], None, theirs["_id"], ObjectId()], path
        )
    assert problems(refusal) == [
        (("selection", "ids", i), "Contact not found.", "NOT_FOUND") for i in (1, 2, 3)
    ]
    assert len(await labels.contacts_by_ids(database, SHOP, [ann["_id"]] * 250, path)) == 1
    for ids, expected in (
        ([ann["_id"]] * 251, ("At most 250 contacts per call.", "LIMIT_EXCEEDED")),
        ([], ("Give at least one contact.", "REQUIRED")),
    ):
        with pytest.raises(Refused) as refusal:
            await labels.contacts_by_ids(database, SHOP, ids, path)
        assert problems(refusal) == [(path, *expected)]


async def test_only_labels_the_shop_has_can_be_removed(database):
    await a_shop(database, VIP=1)
    await a_shop(database, OTHER_SHOP, Theirs=1)

    assert await labels._spellings_to_remove(database, SHOP, ["Vip"], "remove") == {"vip"}
    with pytest.raises(Refused) as refusal:
        await labels._spellings_to_remove(database, SHOP, ["VIP", "Nope", "Theirs"], "labels")
    assert problems(refusal) == [
        (("labels", 1), "No label 'Nope' in this shop.", "NOT_FOUND"),
        (("labels", 2), "No label 'Theirs' in this shop.", "NOT_FOUND"),
    ]


async def test_labelling_given_contacts_names_its_own_fields(database, clock):
    await a_shop(database, VIP=1, **{f"L{i}": 0 for i in range(248)})
    ann = await a_contact(database, ["VIP"])

    for add, remove, expected in (
        (["Fresh", "vip"], ["VIP"], [(("labels", 1), "INVALID")]),
        ([], ["Nope"], [(("gone", 0), "NOT_FOUND")]),
        (["n1", "n2"], [], [(("labels",), "LIMIT_EXCEEDED")]),
    ):
        with pytest.raises(Refused) as refusal:
            await labels.label_contacts(
                database,
                SHOP,
                [read(ann)],
                None,
                add,
                remove,
                AUTHOR,
                add_field="labels",
                remove_field="gone",
            )
        assert [(f, c) for f, _, c in problems(refusal)] == expected
    assert problems(refusal)[0][1] == "A shop can have at most 250 distinct labels."
    for add, remove, expected in (
        (["Fresh", "vip"], ["VIP"], [(("add", 1), "INVALID")]),
        ([], ["Nope"], [(("remove", 0), "NOT_FOUND")]),
        (["n1", "n2"], [], [(("add",), "LIMIT_EXCEEDED")]),
    ):
        with pytest.raises(Refused) as refusal:
            await labels.label_contacts(database, SHOP, [read(ann)], None, add, remove, AUTHOR)
        assert [(f, c) for f, _, c in problems(refusal)] == expected
    assert await slots_of(database) == 249

    bulk = await labels.label_contacts(
        database, SHOP, [read(ann)], None, ["Fresh"], ["vip"], AUTHOR
    )

    assert (bulk.matched, bulk.modified) == (1, 1)
    assert await labels_of(database, ann) == (["Fresh"], ["fresh"])
    assert (await shop_labels(database))["vip"] == ("VIP", 0)
    # A label the shop has is given in the shop's spelling.
    fresh = await database.contacts.find_one({"_id": ann["_id"]})
    await labels.label_contacts(database, SHOP, [read(fresh)], None, ["vip"], [], AUTHOR)
    assert await labels_of(database, ann) == (["Fresh", "VIP"], ["fresh", "vip"])


async def test_labelling_a_selection_pages_through_every_contact_it_matches(
    database, clock, monkeypatch, pages
):
    monkeypatch.setattr(labels, "BATCH", 2)
    await a_shop(database)
    mine = [await a_contact(database, ["Had"] if i == 2 else None) for i in range(5)]
    # Stored out of id order: the pages follow the ids, not the order of storage.
    for doc in reversed(mine):
        await database.contacts.delete_one({"_id": doc["_id"]})
        await database.contacts.insert_one(doc)
    theirs = await a_contact(database, shop=OTHER_SHOP)
    await database.labels.insert_one(
        {"shopId": SHOP, "key": "had", "name": "Had", "contactCount": 1}
    )

    bulk = await labels.label_contacts(
        database, SHOP, None, {"shopId": SHOP}, ["New"], ["had"], AUTHOR
    )

    assert (bulk.matched, bulk.modified) == (5, 5)
    assert pages == [2, 2, 1]
    for doc in mine:
        assert await labels_of(database, doc) == (["New"], ["new"])
    assert await label_log(database, mine[2]) == [("Labels added: New; removed: Had", AUTHOR)]
    assert await labels_of(database, theirs) == ([], [])
    assert await shop_labels(database) == {"had": ("Had", 0), "new": ("New", 5)}
    assert await slots_of(database) == 1


async def test_a_label_made_for_contacts_that_matched_is_kept_even_if_they_went_meanwhile(
    database, clock
):
    await a_shop(database)
    gone = await a_contact(database)
    await database.contacts.delete_one({"_id": gone["_id"]})

    bulk = await labels.label_contacts(database, SHOP, [read(gone)], None, ["New"], [], AUTHOR)

    assert (bulk.matched, bulk.modified) == (1, 0)
    assert (await shop_labels(database), await slots_of(database)) == ({"new": ("New", 0)}, 1)


async def test_labels_made_for_a_call_that_failed_or_matched_nobody_are_given_back(
    database, clock, monkeypatch
):
    await a_shop(database, Kept=0)
    ann = await a_contact(database)

    nobody = await labels.label_contacts(
        database, SHOP, None, {"shopId": "nobody"}, ["Ghost", "Kept"], [], AUTHOR
    )
    assert (nobody.matched, nobody.modified) == (0, 0)
    assert (await shop_labels(database), await slots_of(database)) == ({"kept": ("Kept", 0)}, 1)

    async def broken(*args: Any) -> Any:
        raise RuntimeError("lost")

    monkeypatch.setattr(labels, "change_labels", broken)
    with pytest.raises(RuntimeError):
        await labels.label_contacts(database, SHOP, [read(ann)], None, ["Ghost"], [], AUTHOR)
    assert (await shop_labels(database), await slots_of(database)) == ({"kept": ("Kept", 0)}, 1)


async def test_a_label_deleted_while_a_call_gave_it_is_taken_off_again(
    database, clock, monkeypatch
):
    await a_shop(database)
    ann = await a_contact(database)
    real = labels.change_labels

    async def deleted_meanwhile(*args: Any) -> Any:
        outcome = await real(*args)
        await database.labels.delete_one({"shopId": SHOP, "key": "brief"})
        return outcome

    monkeypatch.setattr(labels, "change_labels", deleted_meanwhile)

    bulk = await labels.label_contacts(
        database, SHOP, [read(ann)], None, ["Brief", "Stays"], [], AUTHOR
    )

    assert (bulk.matched, bulk.modified) == (1, 1)
    assert await labels_of(database, ann) == (["Stays"], ["stays"])
    assert await label_log(database, ann) == [
        ("Labels removed: Brief", AUTHOR),
        ("Labels added: Brief, Stays", AUTHOR),
    ]


async def test_contacts_after_a_change_come_in_the_order_asked_without_their_log(database):
    ann, bob = await a_contact(database, ["A"], entries=2), await a_contact(database)
    theirs = await a_contact(database, shop=OTHER_SHOP)

    found = await labels.contacts_after(
        database, SHOP, [bob["_id"], ObjectId(), ann["_id"], theirs["_id"]]
    )

    assert [d["_id"] for d in found] == [bob["_id"], ann["_id"]]
    assert found[1]["labels"] == ["A"]
    assert "activity" not in found[1] and "searchTerms" not in found[1]


async def test_the_shop_s_labels_are_listed_by_name_whatever_the_case(database):
    await a_shop(database, b=0, A=1, C=2)
    await a_shop(database, OTHER_SHOP, Aa=1)

    assert [d["name"] for d in await labels.list_labels(database, SHOP)] == ["A", "b", "C"]


# -- renaming and deleting


def test_a_move_puts_the_new_label_in_the_old_one_s_place_once():
    plan = labels._move_plan("old", "Old", "new", "New")

    moved = plan({"labels": ["A", "Old", "B"], "labelKeys": ["a", "old", "b"]})
    merged = plan({"labels": ["New", "Old"], "labelKeys": ["new", "old"]})

    assert (moved.labels, moved.keys, moved.text) == (
        ["A", "New", "B"],
        ["a", "new", "b"],
        "Label renamed: Old to New",
    )
    assert (merged.labels, merged.keys) == (["New"], ["new"])
    assert plan({"labels": ["New"], "labelKeys": ["new"]}) is None
    assert plan({}) is None


def test_a_new_spelling_replaces_the_old_in_place():
    plan = labels._respell_plan("vip", "vip", "VIP")

    change = plan({"labels": ["A", "vip", "B"], "labelKeys": ["a", "vip", "b"]})

    assert (change.labels, change.keys, change.text) == (
        ["A", "VIP", "B"],
        ["a", "vip", "b"],
        "Label renamed: vip to VIP",
    )
    assert plan({"labels": ["VIP"], "labelKeys": ["vip"]}) is None
    assert plan({"labels": ["A"], "labelKeys": ["a"]}) is None
    assert plan({}) is None


async def test_a_rename_makes_the_new_label_in_the_old_one_s_slot(database, clock):
    await a_shop(database, Old=2, Other=1)
    ann, bob = await a_contact(database, ["Old"]), await a_contact(database, ["Other", "Old"])
    segment = {"_id": ObjectId(), "shopId": SHOP, "filter": {"labelsAny": ["old", "Other"]}}
    await database.segments.insert_one(segment)

    doc = await labels.rename_label(database, SHOP, " old ", "Fresh  One", AUTHOR)

    assert {k: v for k, v in doc.items() if k != "_id"} == {
        "shopId": SHOP,
        "key": "fresh one",
        "name": "Fresh One",
        "contactCount": 2,
        "createdAt": AT,
    }
    assert await shop_labels(database) == {"fresh one": ("Fresh One", 2), "other": ("Other", 1)}
    assert await slots_of(database) == 2
    assert await labels_of(database, bob) == (["Other", "Fresh One"], ["other", "fresh one"])
    assert await label_log(database, ann) == [("Label renamed: Old to Fresh One", AUTHOR)]
    stored = await database.segments.find_one({"_id": segment["_id"]})
    assert stored["filter"] == {"labelsAny": ["Fresh One", "Other"]}


async def test_a_rename_into_a_label_the_shop_has_merges_and_frees_a_slot(database, clock):
    await a_shop(database, Old=1, New=1)
    ann = await a_contact(database, ["Old"])
    await a_contact(database, ["New"])

    doc = await labels.rename_label(database, SHOP, "Old", "new", AUTHOR)

    assert (doc["name"], doc["contactCount"]) == ("New", 2)
    assert await shop_labels(database) == {"new": ("New", 2)}
    assert await slots_of(database) == 1
    assert await label_log(database, ann) == [("Label renamed: Old to New", AUTHOR)]


async def test_a_new_spelling_changes_the_label_its_contacts_and_segments(
    database, clock, monkeypatch
):
    monkeypatch.setattr(labels, "BATCH", 1)  # the contacts already respelled come first
    await a_shop(database, OTHER_SHOP, Vip=1)
    await a_shop(database, vip=3, **{"Vip Two": 1})
    already = await a_contact(database, ["VIP"])
    ann = await a_contact(database, ["vip"])
    bob = await a_contact(database, ["Vip Two", "vip"])
    segment = {"_id": ObjectId(), "shopId": SHOP, "filter": {"labelsAll": ["vip"]}}
    await database.segments.insert_one(segment)

    doc = await labels.rename_label(database, SHOP, "VIP", "VIP", AUTHOR)

    assert {k: v for k, v in doc.items() if k != "_id"} == {
        "shopId": SHOP,
        "key": "vip",
        "name": "VIP",
        "contactCount": 3,
        "createdAt": AT,
    }
    assert await labels_of(database, ann) == (["VIP"], ["vip"])
    assert await labels_of(database, bob) == (["Vip Two", "VIP"], ["vip two", "vip"])
    assert await label_log(database, ann) == [("Label renamed: vip to VIP", AUTHOR)]
    assert await label_log(database, already) == []
    assert (await database.segments.find_one({"_id": segment["_id"]}))["filter"] == {
        "labelsAll": ["VIP"]
    }
    assert await slots_of(database) == 2
    assert await shop_labels(database, OTHER_SHOP) == {"vip": ("Vip", 1)}

    again = await labels.rename_label(database, SHOP, "vip", "VIP", AUTHOR)
    assert again == doc
    assert await label_log(database, ann) == [("Label renamed: vip to VIP", AUTHOR)]


async def test_renaming_a_label_the_shop_lacks_is_not_found(database, clock):
    await a_shop(database, OTHER_SHOP, Theirs=1)
    await a_shop(database)
    for name in ("Nope", "Theirs"):
        with pytest.raises(Refused) as refusal:
            await labels.rename_label(database, SHOP, name, "Other", AUTHOR)
        assert problems(refusal) == [(("name",), "Label not found.", "NOT_FOUND")]
    with pytest.raises(Refused) as refusal:
        await labels.rename_label(database, SHOP, "Nope", " ", AUTHOR)
    assert problems(refusal) == [(("newName",), "A label must not be empty.", "REQUIRED")]
    with pytest.raises(Refused) as refusal:
        await labels.rename_label(database, SHOP, "bad\x07", "Other", AUTHOR)
    assert problems(refusal) == [
        (("name",), "A label must not contain control characters.", "INVALID")
    ]


@pytest.mark.parametrize(("merge", "slots_after"), [(False, 1), (True, 0)])
async def test_a_rename_while_the_old_label_is_deleted_keeps_the_slots_exact(
    database, clock, monkeypatch, merge, slots_after
):
    # The old label is deleted (its slot given back) between the move and the rename's delete.
    await a_shop(database, Old=1, **({"New": 0} if merge else {}))
    ann = await a_contact(database, ["Old"])
    real = labels._sweep
    sweeps = 0

    async def deleted_meanwhile(*args: Any) -> None:
        nonlocal sweeps
        await real(*args)
        sweeps += 1
        if sweeps == 1:
            await database.labels.delete_one({"shopId": SHOP, "key": "old"})
            await database.shops.update_one({"_id": SHOP}, {"$inc": {"labelCount": -1}})

    monkeypatch.setattr(labels, "_sweep", deleted_meanwhile)

    await labels.rename_label(database, SHOP, "Old", "New", AUTHOR)

    assert await slots_of(database) == slots_after + (1 if merge else 0)
    assert await labels_of(database, ann) == (["New"], ["new"])
    assert list(await shop_labels(database)) == ["new"]


async def test_contacts_given_the_old_label_while_it_moved_are_moved_too(
    database, clock, monkeypatch
):
    await a_shop(database, Old=1)
    await a_contact(database, ["Old"])
    late = {}
    real = labels._sweep

    async def labelled_meanwhile(*args: Any) -> None:
        await real(*args)
        if not late:
            late.update(await a_contact(database, ["Old"]))

    monkeypatch.setattr(labels, "_sweep", labelled_meanwhile)

    await labels.rename_label(database, SHOP, "Old", "New", AUTHOR)

    assert await labels_of(database, late) == (["New"], ["new"])
    assert await label_log(database, late) == [("Label renamed: Old to New", AUTHOR)]


async def test_a_rename_into_a_label_made_meanwhile_merges_into_it(database, clock, monkeypatch):
    await a_shop(database, Old=1)
    ann = await a_contact(database, ["Old"])
    real = AsyncCollection.find_one
    looked = False

    async def made_meanwhile(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        nonlocal looked
        if self.name == "labels" and filter == {"shopId": SHOP, "key": "new"} and not looked:
            # Another call creates NEW right after this look: its own slot, its spelling.
            looked = True
            found = await real(self, filter, *args, **kwargs)
            await database.labels.insert_one(
                {"shopId": SHOP, "key": "new", "name": "NEW", "contactCount": 0}
            )
            await database.shops.update_one({"_id": SHOP}, {"$inc": {"labelCount": 1}})
            return found
        return await real(self, filter, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "find_one", made_meanwhile)

    doc = await labels.rename_label(database, SHOP, "Old", "New", AUTHOR)

    assert (doc["name"], doc["contactCount"]) == ("NEW", 1)
    assert await labels_of(database, ann) == (["NEW"], ["new"])
    assert await slots_of(database) == 1


async def test_a_sweep_reaches_every_contact_batch_by_batch_and_stops_when_nothing_moves(
    database, clock, monkeypatch, pages
):
    monkeypatch.setattr(labels, "BATCH", 2)
    await a_shop(database, Old=5)
    docs = [await a_contact(database, ["Old"]) for _ in range(5)]
    theirs = await a_contact(database, ["Old"], shop=OTHER_SHOP)

    await asyncio.wait_for(labels._sweep(database, SHOP, "old", lambda doc: None, AUTHOR), 10)
    assert await label_log(database, docs[0]) == []
    pages.clear()

    await labels._sweep(database, SHOP, "old", labels.add_remove_plan({}, {"old"}), AUTHOR)

    assert pages == [2, 2, 1]
    for doc in docs:
        assert await labels_of(database, doc) == ([], [])
    assert await labels_of(database, theirs) == (["Old"], ["old"])


async def test_a_new_spelling_reaches_every_contact_batch_by_batch(
    database, clock, monkeypatch, pages
):
    monkeypatch.setattr(labels, "BATCH", 2)
    await a_shop(database, vip=6)
    docs = [await a_contact(database, ["vip"]) for _ in range(5)]
    done = await a_contact(database, ["VIP"])
    theirs = await a_contact(database, ["vip"], shop=OTHER_SHOP)
    plan = labels._respell_plan("vip", "vip", "VIP")

    await labels._sweep_spelling(database, SHOP, "vip", "VIP", plan, AUTHOR)

    assert pages == [2, 2, 1]
    for doc in docs:
        assert await labels_of(database, doc) == (["VIP"], ["vip"])
    assert await label_log(database, done) == []
    assert await labels_of(database, theirs) == (["vip"], ["vip"])
    await asyncio.wait_for(
        labels._sweep_spelling(database, SHOP, "vip", "Vip", lambda doc: None, AUTHOR), 10
    )


async def test_deleting_a_label_takes_it_off_everyone_and_gives_its_slot_back(database, clock):
    await a_shop(database, VIP=1, Other=1)
    await a_shop(database, OTHER_SHOP, VIP=1)
    ann = await a_contact(database, ["VIP", "Other"])

    assert await labels.delete_label(database, SHOP, "  vip ", AUTHOR) == "VIP"

    assert await labels_of(database, ann) == (["Other"], ["other"])
    assert await label_log(database, ann) == [("Labels removed: VIP", AUTHOR)]
    assert (await shop_labels(database), await slots_of(database)) == ({"other": ("Other", 1)}, 1)
    assert await shop_labels(database, OTHER_SHOP) == {"vip": ("VIP", 1)}
    for name, expected in (
        ("VIP", (("name",), "Label not found.", "NOT_FOUND")),
        ("\x07", (("name",), "A label must not contain control characters.", "INVALID")),
    ):
        with pytest.raises(Refused) as refusal:
            await labels.delete_label(database, SHOP, name, AUTHOR)
        assert problems(refusal) == [expected]


async def test_a_delete_racing_another_delete_gives_the_slot_back_once(
    database, clock, monkeypatch
):
    await a_shop(database, VIP=1, Other=0)
    ann = await a_contact(database, ["VIP"])
    late = {}
    real = labels._sweep

    async def meanwhile(*args: Any) -> None:
        await real(*args)
        if not late:
            # Another delete finishes first; a call gives the label to one more contact.
            await database.labels.delete_one({"shopId": SHOP, "key": "vip"})
            await database.shops.update_one({"_id": SHOP}, {"$inc": {"labelCount": -1}})
            late.update(await a_contact(database, ["VIP"]))

    monkeypatch.setattr(labels, "_sweep", meanwhile)

    assert await labels.delete_label(database, SHOP, "VIP", AUTHOR) == "VIP"

    assert await slots_of(database) == 1
    assert await labels_of(database, ann) == ([], [])
    assert await labels_of(database, late) == ([], [])
    assert await label_log(database, late) == [("Labels removed: VIP", AUTHOR)]


async def test_a_call_that_only_adds_looks_up_no_labels_to_remove(database, clock, commands):
    await a_shop(database, VIP=0)
    ann = await a_contact(database)
    commands.reset()

    await labels.label_contacts(database, SHOP, [read(ann)], None, ["vip", "New"], [], AUTHOR)

    # The look before the new label is made, its insert, the counts, the look whether it lasted.
    assert commands.on("labels") == ["find", "insert", "update", "find"]
    assert await labels_of(database, ann) == (["VIP", "New"], ["vip", "new"])


async def test_a_failed_insert_of_new_labels_is_not_taken_for_a_race(database, clock, monkeypatch):
    await a_shop(database)

    async def one_taken_one_invalid(self: Any, *args: Any, **kwargs: Any) -> Any:
        errors = [{"index": 0, "code": 11000}, {"index": 1, "code": 121}]
        raise BulkWriteError({"writeErrors": errors})

    monkeypatch.setattr(AsyncCollection, "insert_many", one_taken_one_invalid)

    with pytest.raises(BulkWriteError):
        await labels.reserve_labels(database, SHOP, ["A", "B"])
    # Neither was written: both slots are given back.
    assert await slots_of(database) == 0


async def test_labels_written_before_the_insert_failed_are_taken_back_with_their_slots(
    database, clock, monkeypatch
):
    await a_shop(database, Kept=3)
    real = AsyncCollection.insert_many

    async def reply_lost(self: Any, docs: Any, *args: Any, **kwargs: Any) -> Any:
        await real(self, docs[:1], *args, **kwargs)
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(AsyncCollection, "insert_many", reply_lost)

    with pytest.raises(AutoReconnect):
        await labels.reserve_labels(database, SHOP, ["Kept", "A", "B"])

    assert await shop_labels(database) == {"kept": ("Kept", 3)}
    assert await slots_of(database) == 1


async def test_a_failed_insert_is_reported_even_when_the_tidying_after_it_fails(
    database, clock, monkeypatch
):
    await a_shop(database)

    def unreachable(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AutoReconnect("connection closed")

    async def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        # From here on the database cannot be reached at all.
        monkeypatch.setattr(AsyncCollection, "find", unreachable)
        raise OperationFailure("not primary")

    monkeypatch.setattr(AsyncCollection, "insert_many", refused)

    with pytest.raises(OperationFailure, match="not primary"):
        await labels.reserve_labels(database, SHOP, ["A"])


async def test_a_label_deleted_while_it_is_respelled_is_not_found(database, clock, monkeypatch):
    await a_shop(database, vip=0)

    async def deleted_meanwhile(*args: Any) -> int:
        await database.labels.delete_one({"shopId": SHOP, "key": "vip"})
        return 0

    monkeypatch.setattr(labels, "follow_label_rename", deleted_meanwhile)

    with pytest.raises(Refused) as refusal:
        await labels.rename_label(database, SHOP, "vip", "VIP", AUTHOR)
    assert problems(refusal) == [(("name",), "Label not found.", "NOT_FOUND")]


@pytest.fixture
def holders_when_deleted(database, monkeypatch):
    """label key -> how many contacts still held it when its document was deleted."""
    seen: dict[str, int] = {}
    real = AsyncCollection.delete_one

    async def watching(self: Any, filter: Any, *args: Any, **kwargs: Any) -> Any:
        doc = await self.find_one(filter) if self.name == "labels" else None
        if doc is not None:
            seen[doc["key"]] = await database.contacts.count_documents(
                {"shopId": doc["shopId"], "labelKeys": doc["key"]}
            )
        return await real(self, filter, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "delete_one", watching)
    return seen


async def test_a_deleted_label_is_off_every_contact_before_it_leaves_the_shop(
    database, clock, holders_when_deleted
):
    # Otherwise a reader in between sees contacts holding a label the shop does not list.
    await a_shop(database, VIP=2)
    await a_contact(database, ["VIP"])
    await a_contact(database, ["VIP"])

    await labels.delete_label(database, SHOP, "vip", AUTHOR)

    assert holders_when_deleted == {"vip": 0}


async def test_a_renamed_label_is_off_every_contact_before_it_leaves_the_shop(
    database, clock, holders_when_deleted
):
    await a_shop(database, Old=2)
    await a_contact(database, ["Old"])
    await a_contact(database, ["Old"])

    await labels.rename_label(database, SHOP, "Old", "New", AUTHOR)

    assert holders_when_deleted == {"old": 0}
