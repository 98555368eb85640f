"""Note rules to the edge: the text's bounds and messages, and what each write leaves stored.

tests/test_notes.py tells the story through the API (who may write, the
list, races with the archive); these pin the exact refusals (which field,
which message, which code), the text's 5,000-character bound on both
sides, and what adding, editing and deleting a note does to the stored
contact and to its archive: the counters, the update time, the entries
next to the note, and the contact and shop a note belongs to.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP

from resolvers import activity
from resolvers import notes as notes_rules
from resolvers.activity import BUCKET_SIZE, EMBEDDED_KEEP, SPILL_AT
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.notes import add_note, check_text, delete_note, update_note

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

CONTACT_NOT_FOUND = [(("contactId",), "Contact not found.", "NOT_FOUND")]
NOTE_NOT_FOUND = [(("noteId",), "Note not found.", "NOT_FOUND")]


def problems(refusal: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


# -- the text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Prefers delivery after 5 pm", "Prefers delivery after 5 pm"),
        ("  Prefers delivery\nafter 5 pm \t", "Prefers delivery\nafter 5 pm"),
        ("line one\r\n\tindented", "line one\r\n\tindented"),
        ("Cafe\u0301", "Café"),
        ("x" * 5000, "x" * 5000),
        ("  " + "x" * 5000 + "  ", "x" * 5000),
    ],
)
def test_a_note_keeps_its_lines_without_the_surrounding_blanks(text, kept):
    assert check_text(text) == kept


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, ("Text is required.", "REQUIRED")),
        ("", ("Text is required.", "REQUIRED")),
        (" \n\t ", ("Text is required.", "REQUIRED")),
        ("x" * 5001, ("Text is longer than 5000 characters.", "TOO_LONG")),
        ("bad \x00 byte", ("Text contains control characters.", "INVALID")),
        ("bell \x07", ("Text contains control characters.", "INVALID")),
        ("delete \x7f", ("Text contains control characters.", "INVALID")),
    ],
)
def test_bad_text_is_refused_with_one_problem_on_the_text(text, problem):
    with pytest.raises(Refused) as refusal:
        check_text(text)
    assert problems(refusal) == [(("text",), *problem)]


# -- stored contacts ---------------------------------------------------------


def entry(kind: str, i: int, **extra: Any) -> dict[str, Any]:
    return {**activity.entry(kind, text=f"{kind} {i}", at=T0 + dt.timedelta(seconds=i)), **extra}


async def stored_contact(
    database: Any, entries: list[dict[str, Any]] | None = None, shop: str = SHOP
) -> ObjectId:
    email = f"c{ObjectId()}@example.com"
    doc = new_contact(shop, email, email, "LEAD", {}, T0, entries=entries)
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def archived_contact(
    database: Any, notes: int = 2, other: str = "FORM_SUBMITTED"
) -> tuple[ObjectId, list[dict[str, Any]], list[dict[str, Any]]]:
    """A contact whose oldest `notes` notes and a filler entry are archived; (id, notes, filler)."""
    old_notes = [entry("NOTE", i, author="Ann Admin") for i in range(notes)]
    filler = [entry(other, notes + i) for i in range(SPILL_AT - notes)]
    oid = await stored_contact(database, old_notes + filler)
    await activity.spill_overflow(database, SHOP, {"_id": oid, "activityEmbedded": SPILL_AT})
    doc = await contact_doc(database, oid)
    assert doc["activityArchived"] == BUCKET_SIZE and doc["activityEmbedded"] == EMBEDDED_KEEP
    return oid, old_notes, filler


async def contact_doc(database: Any, oid: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": oid})
    assert doc is not None
    return doc


async def bucket(database: Any, oid: ObjectId) -> dict[str, Any]:
    found = await database.activity_archive.find_one({"contactId": oid})
    assert found is not None
    return found


def by_id(entries: list[dict[str, Any]]) -> dict[ObjectId, dict[str, Any]]:
    return {e["_id"]: e for e in entries}


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """The notes' clock held at one instant (edits and deletes read it)."""
    at = dt.datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=dt.UTC)
    monkeypatch.setattr(notes_rules, "now", lambda: at)
    return at


# -- adding ------------------------------------------------------------------


async def test_a_note_is_added_at_the_end_of_the_log_with_its_author(database):
    oid = await stored_contact(database, [entry("FORM_SUBMITTED", 0)])
    note, contact = await add_note(database, SHOP, oid, "  Call after 5\npm  ", "Ann Admin")
    assert (note["kind"], note["text"], note["author"]) == ("NOTE", "Call after 5\npm", "Ann Admin")
    assert "editedAt" not in note
    doc = await contact_doc(database, oid)
    assert doc["activity"][-1] == note
    assert doc["activityCount"] == doc["activityEmbedded"] == 2
    assert doc["updatedAt"] == note["at"]
    # The contact as written, without its log or search terms.
    assert contact == {k: v for k, v in doc.items() if k not in ("activity", "searchTerms")}


async def test_a_refused_note_writes_nothing(database):
    oid = await stored_contact(database)
    before = await contact_doc(database, oid)
    with pytest.raises(Refused) as refusal:
        await add_note(database, SHOP, oid, "x" * 5001, "Ann Admin")
    assert problems(refusal) == [(("text",), "Text is longer than 5000 characters.", "TOO_LONG")]
    assert await contact_doc(database, oid) == before


async def test_a_note_on_an_unknown_or_foreign_contact_is_not_found(database):
    oid = await stored_contact(database, shop=OTHER_SHOP)
    before = await contact_doc(database, oid)
    for shop, contact_id in ((SHOP, oid), (OTHER_SHOP, ObjectId())):
        with pytest.raises(Refused) as refusal:
            await add_note(database, shop, contact_id, "hello", "Ann Admin")
        assert problems(refusal) == CONTACT_NOT_FOUND
    assert await contact_doc(database, oid) == before


async def test_a_note_that_fills_the_log_moves_the_oldest_entries_to_the_archive(database):
    oid = await stored_contact(database, [entry("FORM_SUBMITTED", i) for i in range(SPILL_AT - 1)])
    note, contact = await add_note(database, SHOP, oid, "the last straw", "Ann Admin")
    doc = await contact_doc(database, oid)
    assert doc["activityEmbedded"] == len(doc["activity"]) == EMBEDDED_KEEP
    assert doc["activityArchived"] == BUCKET_SIZE and doc["activityCount"] == SPILL_AT
    assert doc["activity"][-1]["_id"] == note["_id"]


# -- editing -----------------------------------------------------------------


async def test_an_edit_changes_the_text_and_marks_when(database, moment):
    oid = await stored_contact(
        database, [entry("NOTE", 0, author="Ann Admin"), entry("NOTE", 1, author="Bob Staff")]
    )
    first, second = (await contact_doc(database, oid))["activity"]
    note, contact = await update_note(database, SHOP, oid, first["_id"], "  second version\n ")
    assert note == {**first, "text": "second version", "editedAt": moment}
    doc = await contact_doc(database, oid)
    assert doc["activity"] == [note, second]
    assert doc["updatedAt"] == note["editedAt"]
    assert doc["activityCount"] == doc["activityEmbedded"] == 2
    assert contact == {k: v for k, v in doc.items() if k not in ("activity", "searchTerms")}


async def test_a_refused_edit_writes_nothing(database):
    oid = await stored_contact(database, [entry("NOTE", 0)])
    before = await contact_doc(database, oid)
    note_id = before["activity"][0]["_id"]
    for text, problem in (
        ("", ("Text is required.", "REQUIRED")),
        ("z" * 5001, ("Text is longer than 5000 characters.", "TOO_LONG")),
    ):
        with pytest.raises(Refused) as refusal:
            await update_note(database, SHOP, oid, note_id, text)
        assert problems(refusal) == [(("text",), *problem)]
    # The text is checked before the note is looked for.
    with pytest.raises(Refused) as refusal:
        await update_note(database, SHOP, oid, None, "")
    assert problems(refusal) == [(("text",), "Text is required.", "REQUIRED")]
    assert await contact_doc(database, oid) == before


async def test_only_a_note_of_this_contact_in_this_shop_can_be_edited(database):
    oid = await stored_contact(database, [entry("NOTE", 0), entry("FORM_SUBMITTED", 1)])
    other = await stored_contact(database, [entry("NOTE", 2)])
    note, form = (await contact_doc(database, oid))["activity"]
    others_note = (await contact_doc(database, other))["activity"][0]
    before = [await contact_doc(database, c) for c in (oid, other)]
    for contact_id, note_id in (
        (oid, None),
        (oid, form["_id"]),  # an entry, but not a note
        (oid, ObjectId()),
        (oid, others_note["_id"]),
        (other, note["_id"]),
    ):
        with pytest.raises(Refused) as refusal:
            await update_note(database, SHOP, contact_id, note_id, "hijacked")
        assert problems(refusal) == NOTE_NOT_FOUND, note_id
    for shop, contact_id in ((OTHER_SHOP, oid), (SHOP, ObjectId())):
        with pytest.raises(Refused) as refusal:
            await update_note(database, shop, contact_id, note["_id"], "hijacked")
        assert problems(refusal) == CONTACT_NOT_FOUND
    assert [await contact_doc(database, c) for c in (oid, other)] == before


async def test_an_archived_note_is_edited_in_its_bucket(database, moment):
    oid, (old, older), _ = await archived_contact(database)
    before = await bucket(database, oid)
    note, contact = await update_note(database, SHOP, oid, older["_id"], " edited in the archive ")
    at = moment
    assert note == {**older, "text": "edited in the archive", "editedAt": at}
    after = await bucket(database, oid)
    assert by_id(after["entries"]) == {
        **by_id(before["entries"]),
        older["_id"]: note,
    }
    assert {k: v for k, v in after.items() if k != "entries"} == {
        k: v for k, v in before.items() if k != "entries"
    }
    doc = await contact_doc(database, oid)
    assert doc["updatedAt"] == at
    assert (doc["activityCount"], doc["activityArchived"]) == (SPILL_AT, BUCKET_SIZE)
    assert contact == {k: v for k, v in doc.items() if k not in ("activity", "searchTerms")}


async def test_an_archived_entry_that_is_no_note_or_not_this_contacts_is_not_edited(database):
    oid, (old, _), filler = await archived_contact(database)
    other = await stored_contact(database)
    before = await bucket(database, oid)
    for contact_id, entry_id in ((oid, filler[0]["_id"]), (other, old["_id"])):
        with pytest.raises(Refused) as refusal:
            await update_note(database, SHOP, contact_id, entry_id, "hijacked")
        assert problems(refusal) == NOTE_NOT_FOUND
    with pytest.raises(Refused) as refusal:
        await update_note(database, OTHER_SHOP, oid, old["_id"], "hijacked")
    assert problems(refusal) == CONTACT_NOT_FOUND
    assert await bucket(database, oid) == before


async def test_an_archived_note_of_a_contact_deleted_meanwhile_is_not_found(database):
    oid, (old, _), _ = await archived_contact(database)
    await database.contacts.delete_one({"_id": oid})
    with pytest.raises(Refused) as refusal:
        await update_note(database, SHOP, oid, old["_id"], "too late")
    assert problems(refusal) == CONTACT_NOT_FOUND


class Moving:
    """The database, but the note moves under the first look into the contact.

    The contact's first update finds nothing (the note, about to be
    archived, is neither embedded nor archived at that instant).
    """

    def __init__(self, database: Any) -> None:
        self.real = database
        self.contacts = self
        self.missed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        if not self.missed:
            self.missed += 1
            return None
        return await self.real.contacts.find_one_and_update(*args, **kwargs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        if not self.missed:
            self.missed += 1
            return await self.real.contacts.update_one({"_id": None}, *args[1:], **kwargs)
        return await self.real.contacts.update_one(*args, **kwargs)

    async def count_documents(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.contacts.count_documents(*args, **kwargs)


async def test_a_note_missed_by_the_first_look_is_found_by_the_second(database):
    oid = await stored_contact(database, [entry("NOTE", 0)])
    note_id = (await contact_doc(database, oid))["activity"][0]["_id"]
    note, _ = await update_note(Moving(database), SHOP, oid, note_id, "found")
    assert note["text"] == "found"
    await delete_note(Moving(database), SHOP, oid, note_id)
    assert (await contact_doc(database, oid))["activity"] == []


# -- deleting ----------------------------------------------------------------


async def test_a_deleted_note_leaves_the_log_and_its_counts(database, moment):
    oid = await stored_contact(
        database, [entry("NOTE", 0), entry("NOTE", 1), entry("FORM_SUBMITTED", 2)]
    )
    keep, drop, form = (await contact_doc(database, oid))["activity"]
    assert await delete_note(database, SHOP, oid, drop["_id"]) is None
    doc = await contact_doc(database, oid)
    assert doc["activity"] == [keep, form]
    assert doc["activityCount"] == doc["activityEmbedded"] == 2
    assert doc["updatedAt"] == moment
    with pytest.raises(Refused) as refusal:
        await delete_note(database, SHOP, oid, drop["_id"])
    assert problems(refusal) == NOTE_NOT_FOUND
    assert (await contact_doc(database, oid))["activityCount"] == 2


async def test_only_a_note_of_this_contact_in_this_shop_can_be_deleted(database):
    oid = await stored_contact(database, [entry("NOTE", 0), entry("FORM_SUBMITTED", 1)])
    other = await stored_contact(database, [entry("NOTE", 2)])
    note, form = (await contact_doc(database, oid))["activity"]
    others_note = (await contact_doc(database, other))["activity"][0]
    before = [await contact_doc(database, c) for c in (oid, other)]
    for contact_id, note_id in (
        (oid, None),
        (oid, form["_id"]),
        (oid, ObjectId()),
        (oid, others_note["_id"]),
        (other, note["_id"]),
    ):
        with pytest.raises(Refused) as refusal:
            await delete_note(database, SHOP, contact_id, note_id)
        assert problems(refusal) == NOTE_NOT_FOUND, note_id
    for shop, contact_id in ((OTHER_SHOP, oid), (SHOP, ObjectId())):
        with pytest.raises(Refused) as refusal:
            await delete_note(database, shop, contact_id, note["_id"])
        assert problems(refusal) == CONTACT_NOT_FOUND
    assert [await contact_doc(database, c) for c in (oid, other)] == before


async def test_an_archived_note_is_deleted_from_its_bucket_and_the_counts(database, moment):
    oid, (old, older), _ = await archived_contact(database)
    before, contact_before = await bucket(database, oid), await contact_doc(database, oid)
    assert await delete_note(database, SHOP, oid, older["_id"]) is None
    after = await bucket(database, oid)
    assert by_id(after["entries"]) == {
        k: v for k, v in by_id(before["entries"]).items() if k != older["_id"]
    }
    assert after["count"] == BUCKET_SIZE - 1
    assert after["kindCounts"] == {"NOTE": 1, "FORM_SUBMITTED": BUCKET_SIZE - 2}
    doc = await contact_doc(database, oid)
    assert doc["activityArchived"] == BUCKET_SIZE - 1
    assert doc["activityArchivedKinds"] == {"NOTE": 1, "FORM_SUBMITTED": BUCKET_SIZE - 2}
    assert doc["activityCount"] == SPILL_AT - 1
    assert doc["activityEmbedded"] == EMBEDDED_KEEP
    assert doc["activity"] == contact_before["activity"]
    assert doc["updatedAt"] == moment
    with pytest.raises(Refused) as refusal:
        await delete_note(database, SHOP, oid, older["_id"])
    assert problems(refusal) == NOTE_NOT_FOUND
    assert await bucket(database, oid) == after


async def test_an_archived_entry_that_is_no_note_or_not_this_contacts_is_not_deleted(database):
    oid, (old, _), filler = await archived_contact(database)
    other = await stored_contact(database)
    before = (await bucket(database, oid), await contact_doc(database, oid))
    for contact_id, entry_id in ((oid, filler[0]["_id"]), (other, old["_id"])):
        with pytest.raises(Refused) as refusal:
            await delete_note(database, SHOP, contact_id, entry_id)
        assert problems(refusal) == NOTE_NOT_FOUND
    with pytest.raises(Refused) as refusal:
        await delete_note(database, OTHER_SHOP, oid, old["_id"])
    assert problems(refusal) == CONTACT_NOT_FOUND
    assert (await bucket(database, oid), await contact_doc(database, oid)) == before


class Aborted(Exception):
    pass


async def never_committed(database: Any, work: Any) -> Any:
    """activity.in_transaction, but the transaction fails after its work, before the commit."""
    async with database.client.start_session() as session:
        async with await session.start_transaction():
            await work(session)
            raise Aborted


async def test_an_archived_note_whose_delete_fails_is_kept_with_its_counts(database, monkeypatch):
    oid, (old, _), _ = await archived_contact(database)
    before = (await bucket(database, oid), await contact_doc(database, oid))
    monkeypatch.setattr(activity, "in_transaction", never_committed)
    with pytest.raises(Aborted):
        await delete_note(database, SHOP, oid, old["_id"])
    assert (await bucket(database, oid), await contact_doc(database, oid)) == before


async def test_a_note_in_a_contacts_newer_bucket_is_edited_and_deleted_there(database, moment):
    other, _, _ = await archived_contact(database)  # another contact's bucket comes first
    filler = [entry("FORM_SUBMITTED", i) for i in range(BUCKET_SIZE)]
    notes = [entry("NOTE", BUCKET_SIZE + i) for i in range(2)]
    rest = [entry("FORM_SUBMITTED", BUCKET_SIZE + 2 + i) for i in range(SPILL_AT - 2)]
    oid = await stored_contact(database, filler + notes + rest)
    await activity.spill_overflow(database, SHOP, {"_id": oid, "activityEmbedded": SPILL_AT})
    buckets = await database.activity_archive.find({"contactId": oid}).to_list()
    assert len(buckets) == 2
    edited, _ = await update_note(database, SHOP, oid, notes[0]["_id"], "edited")
    assert edited["text"] == "edited"
    await delete_note(database, SHOP, oid, notes[1]["_id"])
    newer = await database.activity_archive.find_one({"entries._id": notes[0]["_id"]})
    assert [e["text"] for e in newer["entries"] if e["kind"] == "NOTE"] == ["edited"]
    assert newer["count"] == BUCKET_SIZE - 1


async def test_finding_an_archived_notes_bucket_reads_back_no_entries(database, commands):
    """A bucket holds BUCKET_SIZE entries: finding which one holds a note reads only its ids."""
    oid, (old, _), _ = await archived_contact(database)
    commands.reset()
    await update_note(database, SHOP, oid, old["_id"], "edited")
    (look,) = commands.documents("find", "activity_archive")
    assert look["filter"] == {"shopId": SHOP, "entries._id": old["_id"]}
    assert look["projection"] == {"_id": 1, "contactId": 1}
