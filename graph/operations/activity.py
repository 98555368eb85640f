"""Notes (mutations), activity entries by id, and the live activity subscription."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.errors import ClientError, forbidden
from graph.operations.contacts import OWNED_NODE_RESOLVERS, contact_from
from graph.permissions import allowed_roles
from graph.types.activity import ActivityEntry, NoteDeletePayload, NotePayload, visible_entry
from graph.types.node import decode_id, encode_id
from loaders.activity_feed import ActivityFeed
from loaders.container import Loaders
from resolvers import notes
from resolvers.errors import Refused, not_found


def _contact_id(value: strawberry.ID) -> ObjectId:
    contact_id = decode_id(value, "Contact")
    if contact_id is None:
        raise not_found(("contactId",))
    return contact_id


def activity_changed(info: Info) -> None:
    """After a write to a log: later fields of this request must read it again."""
    info.context.loaders.activity_page.clear_all()


@strawberry.type
class ActivityMutation:
    @strawberry.mutation(
        description=(
            "Add an internal note (1 to 5,000 characters) to a contact's activity log; "
            "the author is the calling key's name."
        )
    )
    async def note_add(self, info: Info, contact_id: strawberry.ID, text: str) -> NotePayload:
        ctx = info.context
        try:
            note, doc = await notes.add_note(
                ctx.database, ctx.shop_id, _contact_id(contact_id), text, ctx.key.name
            )
        except Refused as refusal:
            return NotePayload.refused(refusal)
        activity_changed(info)
        return NotePayload(
            note=ActivityEntry.from_doc(note, doc["_id"]), contact=contact_from(info, doc)
        )

    @strawberry.mutation(
        description="Change a note's text; sets `editedAt`. Works for old (archived) notes too."
    )
    async def note_update(
        self, info: Info, contact_id: strawberry.ID, note_id: strawberry.ID, text: str
    ) -> NotePayload:
        ctx = info.context
        try:
            cid = _contact_id(contact_id)
            note, doc = await notes.update_note(
                ctx.database, ctx.shop_id, cid, decode_id(note_id, "ActivityEntry"), text
            )
        except Refused as refusal:
            return NotePayload.refused(refusal)
        activity_changed(info)
        return NotePayload(
            note=ActivityEntry.from_doc(note, doc["_id"]), contact=contact_from(info, doc)
        )

    @strawberry.mutation(description="Delete a note, wherever it is in the log.")
    async def note_delete(
        self, info: Info, contact_id: strawberry.ID, note_id: strawberry.ID
    ) -> NoteDeletePayload:
        ctx = info.context
        try:
            note_oid = decode_id(note_id, "ActivityEntry")
            await notes.delete_note(ctx.database, ctx.shop_id, _contact_id(contact_id), note_oid)
        except Refused as refusal:
            return NoteDeletePayload.refused(refusal)
        activity_changed(info)
        assert note_oid is not None
        return NoteDeletePayload(
            deleted_note_id=strawberry.ID(
                encode_id("ActivityEntry", note_oid, _contact_id(contact_id))
            )
        )


@strawberry.type
class ActivitySubscription:
    @strawberry.subscription(
        description="New entries of a contact's activity log as they are written (notes only for STAFF and ADMIN keys)."
    )
    async def contact_activity(
        self, info: Info, contact_id: strawberry.ID
    ) -> AsyncGenerator[ActivityEntry, None]:
        ctx = info.context
        if ctx.key.role not in allowed_roles(info.operation.operation, "contactActivity"):
            raise forbidden(f"{ctx.key.role.a_key} may not use contactActivity.")
        cid = decode_id(contact_id, "Contact")
        exists = cid is not None and await ctx.database.contacts.count_documents(
            {"shopId": ctx.shop_id, "_id": cid}, limit=1
        )
        if not exists:
            # Not silence: a client must learn that it watches nothing.
            raise ClientError("Contact not found.", "NOT_FOUND")
        assert cid is not None
        feed: ActivityFeed = ctx.request.app.state.activity_feed
        async with feed.listen(ctx.shop_id, cid) as entries:
            async for entry in entries:
                if visible_entry(info, entry):
                    # A connection lives long: each event reads afresh (e.g. its order).
                    ctx.loaders = Loaders(ctx.database, ctx.shop_id)
                    yield ActivityEntry.from_doc(entry, cid)


async def _entry_node(info: Info, oid: ObjectId, owner: ObjectId | None) -> ActivityEntry | None:
    found = await info.context.loaders.activity_entry_by_id.load((oid, owner))
    if found is None or not visible_entry(info, found.entry):
        return None
    return ActivityEntry.from_doc(found.entry, found.contact_id)


OWNED_NODE_RESOLVERS["ActivityEntry"] = _entry_node
