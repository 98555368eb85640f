"""Internal notes: add, edit, delete, list; the same for archived notes; who may see them."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from bson import ObjectId
from conftest import SHOP

from graph.types.node import decode_id, encode_id
from resolvers import activity
from resolvers.activity import SPILL_AT

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
ADD = """
mutation($id: ID!, $text: String!) {
  noteAdd(contactId: $id, text: $text) {
    note { id kind at author text editedAt }
    contact { id email updatedAt }
    userErrors { field message code }
  }
}
"""
UPDATE = """
mutation($id: ID!, $note: ID!, $text: String!) {
  noteUpdate(contactId: $id, noteId: $note, text: $text) {
    note { id kind at author text editedAt }
    contact { id email }
    userErrors { field message code }
  }
}
"""
DELETE = """
mutation($id: ID!, $note: ID!) {
  noteDelete(contactId: $id, noteId: $note) { deletedNoteId userErrors { field message code } }
}
"""
NOTES = "query($id: ID!) { contact(id: $id) { notes { id text author at editedAt } activity { totalCount } } }"


async def contact(api: Any, email: str = "ann@example.com") -> tuple[str, ObjectId]:
    gid = (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]
    oid = decode_id(gid, "Contact")
    assert oid is not None
    return gid, oid


async def add(api: Any, gid: str, text: str) -> dict:
    payload = (await api.data(ADD, {"id": gid, "text": text}))["noteAdd"]
    assert payload["userErrors"] == []
    return payload["note"]


async def stored(database: Any, oid: ObjectId) -> dict:
    return await database.contacts.find_one({"_id": oid})


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def archive_everything_but_the_newest(database: Any, oid: ObjectId) -> None:
    """Push enough newer entries that older ones (the notes) move to the archive."""
    entries = [activity.entry("FORM_SUBMITTED", text=f"f{i}") for i in range(SPILL_AT)]
    doc = await database.contacts.find_one_and_update(
        {"_id": oid}, activity.push(entries), projection={"activity": 0}, return_document=True
    )
    await activity.spill_overflow(database, SHOP, doc)


async def test_add_a_note(api, database):
    gid, oid = await contact(api)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    payload = (await api.data(ADD, {"id": gid, "text": "  Prefers delivery\nafter 5 pm  "}))[
        "noteAdd"
    ]
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    note = payload["note"]
    assert payload["userErrors"] == []
    assert note["kind"] == "NOTE"
    assert note["author"] == "Admin Person"
    assert note["text"] == "Prefers delivery\nafter 5 pm"
    assert note["editedAt"] is None
    assert before <= parse(note["at"]) <= after
    assert payload["contact"]["id"] == gid
    assert parse(payload["contact"]["updatedAt"]) == parse(note["at"])
    doc = await stored(database, oid)
    assert doc["activityCount"] == 2
    newest = max(doc["activity"], key=lambda e: (e["at"], e["_id"]))
    assert newest["_id"] == decode_id(note["id"], "ActivityEntry")
    assert newest["author"] == "Admin Person"


async def test_staff_are_authors_too(api, as_role):
    gid, _ = await contact(api)
    note = await add(as_role("STAFF"), gid, "called back")
    assert note["author"] == "Staff Person"


async def test_bad_text_is_refused_and_nothing_written(api, database):
    gid, oid = await contact(api)
    before = await stored(database, oid)
    cases = [
        ("", "REQUIRED"),
        ("   \n\t ", "REQUIRED"),
        ("x" * 5001, "TOO_LONG"),
        ("bad \x00 byte", "INVALID"),
    ]
    for text, code in cases:
        payload = (await api.data(ADD, {"id": gid, "text": text}))["noteAdd"]
        assert payload["note"] is None and payload["contact"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["text"], code)], text
    assert await stored(database, oid) == before
    longest = await add(api, gid, "y" * 5000)
    assert len(longest["text"]) == 5000


async def test_unknown_or_foreign_contacts_are_not_found(api, as_role, database):
    gid, oid = await contact(api)
    for contact_id in (encode_id("Contact", ObjectId()), "garbage", encode_id("Order", oid)):
        payload = (await api.data(ADD, {"id": contact_id, "text": "hello"}))["noteAdd"]
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
            (["contactId"], "NOT_FOUND")
        ]
    other = (await as_role("OTHER").data(ADD, {"id": gid, "text": "hello"}))["noteAdd"]
    assert [(e["field"], e["code"]) for e in other["userErrors"]] == [(["contactId"], "NOT_FOUND")]
    assert (await stored(database, oid))["activityCount"] == 1


async def test_edit_a_note(api, database):
    gid, oid = await contact(api)
    note = await add(api, gid, "first version")
    payload = await as_update(api, gid, note["id"], " second version ")
    assert payload["userErrors"] == []
    edited = payload["note"]
    assert edited["text"] == "second version"
    assert (
        edited["id"] == note["id"]
        and edited["at"] == note["at"]
        and edited["author"] == "Admin Person"
    )
    assert parse(edited["editedAt"]) >= parse(note["at"])
    assert payload["contact"]["id"] == gid
    listed = (await api.data(NOTES, {"id": gid}))["contact"]["notes"]
    assert listed == [{k: edited[k] for k in ("id", "text", "author", "at", "editedAt")}]
    assert (await stored(database, oid))["activityCount"] == 2


async def as_update(api: Any, gid: str, note_id: str, text: str) -> dict:
    return (await api.data(UPDATE, {"id": gid, "note": note_id, "text": text}))["noteUpdate"]


async def test_edits_are_checked_like_new_notes(api, database):
    gid, oid = await contact(api)
    note = await add(api, gid, "keep me")
    before = await stored(database, oid)
    for text, code in (("", "REQUIRED"), ("z" * 5001, "TOO_LONG")):
        payload = await as_update(api, gid, note["id"], text)
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["text"], code)]
        assert payload["note"] is None
    assert await stored(database, oid) == before


async def test_only_notes_of_this_contact_can_be_edited_or_deleted(api, as_role, database):
    gid, oid = await contact(api)
    other_gid, other_oid = await contact(api, "bob@example.com")
    note = await add(api, gid, "ann's note")
    log = (await stored(database, oid))["activity"]
    created = next(e for e in log if e["kind"] == "CONTACT_CREATED")
    creation = encode_id("ActivityEntry", created["_id"])
    unknown = encode_id("ActivityEntry", ObjectId())
    for contact_id, note_id in (
        (other_gid, note["id"]),
        (gid, creation),
        (gid, unknown),
        (gid, "nonsense"),
        (gid, gid),
    ):
        payload = await as_update(api, contact_id, note_id, "hijacked")
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
            (["noteId"], "NOT_FOUND")
        ]
        deleted = (await api.data(DELETE, {"id": contact_id, "note": note_id}))["noteDelete"]
        assert deleted["deletedNoteId"] is None
        assert [(e["field"], e["code"]) for e in deleted["userErrors"]] == [
            (["noteId"], "NOT_FOUND")
        ]
    # The other shop does not even find the contact.
    foreign = await as_update(as_role("OTHER"), gid, note["id"], "hijacked")
    assert [(e["field"], e["code"]) for e in foreign["userErrors"]] == [
        (["contactId"], "NOT_FOUND")
    ]
    gone = await as_update(api, encode_id("Contact", ObjectId()), note["id"], "x")
    assert [(e["field"], e["code"]) for e in gone["userErrors"]] == [(["contactId"], "NOT_FOUND")]
    notes = (await api.data(NOTES, {"id": gid}))["contact"]["notes"]
    assert [(n["text"], n["editedAt"]) for n in notes] == [("ann's note", None)]
    assert (await stored(database, other_oid))["activityCount"] == 1


async def test_delete_a_note(api, database):
    gid, oid = await contact(api)
    keep = await add(api, gid, "keep")
    drop = await add(api, gid, "drop")
    payload = (await api.data(DELETE, {"id": gid, "note": drop["id"]}))["noteDelete"]
    assert payload == {"deletedNoteId": drop["id"], "userErrors": []}
    data = (await api.data(NOTES, {"id": gid}))["contact"]
    assert [n["id"] for n in data["notes"]] == [keep["id"]]
    assert data["activity"]["totalCount"] == 2
    doc = await stored(database, oid)
    assert doc["activityCount"] == doc["activityEmbedded"] == len(doc["activity"]) == 2
    again = (await api.data(DELETE, {"id": gid, "note": drop["id"]}))["noteDelete"]
    assert [e["code"] for e in again["userErrors"]] == ["NOT_FOUND"]


async def test_notes_list_newest_first(api):
    gid, _ = await contact(api)
    written = [await add(api, gid, f"note {i}") for i in range(5)]
    notes = (await api.data(NOTES, {"id": gid}))["contact"]["notes"]
    assert [n["id"] for n in notes] == [n["id"] for n in reversed(written)]
    few = await api.data(
        "query($id: ID!) { contact(id: $id) { notes(first: 2) { text } } }", {"id": gid}
    )
    assert few["contact"]["notes"] == [{"text": "note 4"}, {"text": "note 3"}]
    body = await api.gql(
        "query($id: ID!) { contact(id: $id) { notes(first: 251) { text } } }", {"id": gid}
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_archived_notes_are_edited_listed_and_deleted_in_place(api, database):
    gid, oid = await contact(api)
    old = await add(api, gid, "from long ago")
    older = await add(api, gid, "to be deleted")
    await archive_everything_but_the_newest(database, oid)
    old_id, older_id = (decode_id(n["id"], "ActivityEntry") for n in (old, older))
    doc = await stored(database, oid)
    assert old_id not in {e["_id"] for e in doc["activity"]}
    assert await database.activity_archive.count_documents({"entries._id": old_id}) == 1

    edited = await as_update(api, gid, old["id"], "edited in the archive")
    assert edited["userErrors"] == []
    assert (
        edited["note"]["text"] == "edited in the archive" and edited["note"]["editedAt"] is not None
    )
    assert edited["contact"]["id"] == gid
    bucket = await database.activity_archive.find_one({"entries._id": old_id})
    assert [e["text"] for e in bucket["entries"] if e["_id"] == old_id] == ["edited in the archive"]

    total_before = (await api.data(NOTES, {"id": gid}))["contact"]["activity"]["totalCount"]
    deleted = (await api.data(DELETE, {"id": gid, "note": older["id"]}))["noteDelete"]
    assert deleted == {"deletedNoteId": older["id"], "userErrors": []}
    data = (await api.data(NOTES, {"id": gid}))["contact"]
    assert [(n["id"], n["text"]) for n in data["notes"]] == [(old["id"], "edited in the archive")]
    assert data["activity"]["totalCount"] == total_before - 1
    doc = await stored(database, oid)
    assert doc["activityArchivedKinds"]["NOTE"] == 1
    assert doc["activityCount"] == total_before - 1
    assert await database.activity_archive.count_documents({"entries._id": older_id}) == 0
    # A note of another contact is not found in the archive either.
    other_gid, _ = await contact(api, "bob@example.com")
    wrong = await as_update(api, other_gid, old["id"], "x")
    assert [e["code"] for e in wrong["userErrors"]] == ["NOT_FOUND"]


async def test_an_edit_racing_the_archive_is_never_lost(api, database):
    gid, oid = await contact(api)
    for round_ in range(3):
        note = await add(api, gid, f"round {round_}")
        filler = [activity.entry("FORM_SUBMITTED", text="f") for _ in range(SPILL_AT)]
        doc = await database.contacts.find_one_and_update(
            {"_id": oid}, activity.push(filler), projection={"activity": 0}, return_document=True
        )
        # The note is now among the oldest embedded entries: archive it while editing it.
        await asyncio.gather(
            activity.spill_overflow(database, SHOP, doc),
            as_update(api, gid, note["id"], f"edited {round_}"),
        )
        notes = (await api.data(NOTES, {"id": gid}))["contact"]["notes"]
        assert notes[0]["text"] == f"edited {round_}"


async def test_concurrent_notes_are_all_kept(api, database):
    gid, oid = await contact(api)
    written = await asyncio.gather(*(add(api, gid, f"n{i}") for i in range(40)))
    notes = (await api.data(NOTES, {"id": gid}))["contact"]["notes"]
    assert sorted(n["id"] for n in notes) == sorted(n["id"] for n in written)
    doc = await stored(database, oid)
    assert doc["activityCount"] == 41


async def test_notes_are_for_staff_and_admins_only(api, as_role):
    gid, _ = await contact(api)
    await add(api, gid, "internal")
    body = await as_role("READER").gql(NOTES, {"id": gid})
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["errors"][0]["path"] == ["contact", "notes"]
    # The rest of the contact stands; the log without its notes.
    assert body["data"]["contact"] == {"notes": None, "activity": {"totalCount": 1}}
    for role in ("READER", "PUBLIC", "INGEST"):
        refused = await as_role(role).gql(ADD, {"id": gid, "text": "x"})
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert refused["data"] is None
    public = await as_role("PUBLIC").gql(NOTES, {"id": gid})
    assert public["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    staff = (await as_role("STAFF").data(NOTES, {"id": gid}))["contact"]["notes"]
    assert [n["text"] for n in staff] == ["internal"]
