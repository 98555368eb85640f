"""Internal notes: activity entries of kind NOTE that staff write, edit and delete.

A note is edited or deleted where it is, embedded in the contact or
already archived: first in the contact (the usual place), then in the
archive. Archiving moves entries in a transaction, so a note is always in
exactly one of the two places.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.errors import Refused, not_found
from resolvers.validation import TEXT_MAX, Checker

NOTE = "NOTE"
# Filters with conditions beyond an index's fields name `_id` first: the
# embedded server then finds the document by id instead of scanning.
# What a caller gets back for the contact: everything but the search terms
# (the note is taken out of the activity array, which is then dropped).
_RETURNED = {"searchTerms": 0}


def check_text(text: str | None) -> str:
    check = Checker()
    cleaned = check.text(("text",), text, TEXT_MAX, required=True, multiline=True)
    if not check.ok or cleaned is None:
        raise Refused(check.problems)
    return cleaned


def _note_not_found() -> Refused:
    return not_found(("noteId",), "Note")


def _split(doc: Doc, note_id: ObjectId) -> tuple[Doc, Doc | None]:
    """(contact without its activity array, the note from that array)."""
    entries = doc.pop("activity", None) or []
    return doc, next((e for e in entries if e["_id"] == note_id), None)


async def add_note(
    database: Database, shop_id: str, contact_id: ObjectId, text: str, author: str
) -> tuple[Doc, Doc]:
    """(note, contact after); REQUIRED, TOO_LONG, INVALID or NOT_FOUND refused."""
    cleaned = check_text(text)
    note = activity.entry(NOTE, text=cleaned, author=author)
    doc = await database.contacts.find_one_and_update(
        {"shopId": shop_id, "_id": contact_id},
        activity.merge_updates(activity.push([note]), {"$set": {"updatedAt": note["at"]}}),
        projection={"activity": 0, "searchTerms": 0},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise not_found(("contactId",))
    await activity.spill_overflow(database, shop_id, doc)
    return note, doc


async def _contact_exists(database: Database, shop_id: str, contact_id: ObjectId) -> bool:
    return (
        await database.contacts.count_documents({"shopId": shop_id, "_id": contact_id}, limit=1) > 0
    )


async def update_note(
    database: Database, shop_id: str, contact_id: ObjectId, note_id: ObjectId | None, text: str
) -> tuple[Doc, Doc]:
    """(note after, contact after)."""
    cleaned = check_text(text)
    if note_id is None:
        raise _note_not_found()
    at = now()
    changes = {"text": cleaned, "editedAt": at}
    # Twice: a note archived between the two looks is found by the second round.
    for _ in range(2):
        doc = await database.contacts.find_one_and_update(
            {
                "_id": contact_id,
                "shopId": shop_id,
                "activity": {"$elemMatch": {"_id": note_id, "kind": NOTE}},
            },
            {"$set": {**{f"activity.$[n].{k}": v for k, v in changes.items()}, "updatedAt": at}},
            array_filters=[{"n._id": note_id}],
            projection=_RETURNED,
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            contact, note = _split(doc, note_id)
            assert note is not None
            return note, contact
        bucket = await _edit_archived(database, shop_id, contact_id, note_id, changes)
        if bucket is not None:
            after = await database.contacts.find_one_and_update(
                {"shopId": shop_id, "_id": contact_id},
                {"$set": {"updatedAt": at}},
                projection={"activity": 0, "searchTerms": 0},
                return_document=ReturnDocument.AFTER,
            )
            if after is None:  # deleted meanwhile, archive and all
                raise not_found(("contactId",))
            return bucket["entries"][0], after
    if not await _contact_exists(database, shop_id, contact_id):
        raise not_found(("contactId",))
    raise _note_not_found()


async def _edit_archived(
    database: Database, shop_id: str, contact_id: ObjectId, note_id: ObjectId, changes: Doc
) -> Doc | None:
    bucket_id = await _bucket_of(database, shop_id, contact_id, note_id)
    if bucket_id is None:
        return None
    return await database.activity_archive.find_one_and_update(
        {
            "_id": bucket_id,
            "shopId": shop_id,
            "contactId": contact_id,
            "entries": {"$elemMatch": {"_id": note_id, "kind": NOTE}},
        },
        {"$set": {f"entries.$[n].{k}": v for k, v in changes.items()}},
        array_filters=[{"n._id": note_id}],
        projection={"entries": {"$elemMatch": {"_id": note_id}}},
        return_document=ReturnDocument.AFTER,
    )


async def delete_note(
    database: Database, shop_id: str, contact_id: ObjectId, note_id: ObjectId | None
) -> None:
    if note_id is None:
        raise _note_not_found()
    for _ in range(2):
        at = now()
        removed = await database.contacts.update_one(
            {
                "_id": contact_id,
                "shopId": shop_id,
                "activity": {"$elemMatch": {"_id": note_id, "kind": NOTE}},
            },
            {
                "$pull": {"activity": {"_id": note_id}},
                "$inc": {"activityEmbedded": -1, "activityCount": -1},
                "$set": {"updatedAt": at},
            },
        )
        if removed.modified_count:
            return
        if await _delete_archived(database, shop_id, contact_id, note_id):
            return
    if not await _contact_exists(database, shop_id, contact_id):
        raise not_found(("contactId",))
    raise _note_not_found()


async def _bucket_of(
    database: Database, shop_id: str, contact_id: ObjectId, entry_id: ObjectId
) -> ObjectId | None:
    """The contact's archive bucket holding an entry."""
    # Exactly the (shopId, entries._id) index's fields: with contactId in the
    # filter too, the embedded server would look up the shop's whole archive.
    found = await database.activity_archive.find_one(
        {"shopId": shop_id, "entries._id": entry_id}, {"_id": 1, "contactId": 1}
    )
    return found["_id"] if found and found["contactId"] == contact_id else None


async def _delete_archived(
    database: Database, shop_id: str, contact_id: ObjectId, note_id: ObjectId
) -> bool:
    """Pull the note from its bucket and the contact's archive counters together."""

    bucket_id = await _bucket_of(database, shop_id, contact_id, note_id)
    if bucket_id is None:
        return False

    async def work(session: Any) -> bool:
        pulled = await database.activity_archive.update_one(
            {
                "_id": bucket_id,
                "shopId": shop_id,
                "contactId": contact_id,
                "entries": {"$elemMatch": {"_id": note_id, "kind": NOTE}},
            },
            {
                "$pull": {"entries": {"_id": note_id}},
                "$inc": {"count": -1, f"kindCounts.{NOTE}": -1},
            },
            session=session,
        )
        if not pulled.modified_count:
            return False
        await database.contacts.update_one(
            {"shopId": shop_id, "_id": contact_id},
            {
                "$inc": {
                    "activityArchived": -1,
                    f"activityArchivedKinds.{NOTE}": -1,
                    "activityCount": -1,
                },
                "$set": {"updatedAt": now()},
            },
            session=session,
        )
        return True

    return await activity.in_transaction(database, work)
