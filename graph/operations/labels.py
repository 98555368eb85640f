"""Labels: the shop's list, labelling contacts, and renaming or deleting labels across the shop."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.operations.contacts import contact_from, selection_match
from graph.types.label import BulkPayload, Label, LabelDeletePayload, LabelPayload
from graph.types.node import decode_id
from graph.types.payloads import ContactsPayload
from graph.types.selection import ContactSelection
from resolvers import labels
from resolvers.errors import Refused, refuse


def _ids(values: list[strawberry.ID]) -> list:
    return [decode_id(v, "Contact") for v in values]


async def _label_by_ids(
    info: Info, contact_ids: list[strawberry.ID], add: list[str], remove: list[str]
) -> ContactsPayload:
    ctx = info.context
    try:
        docs = await labels.contacts_by_ids(
            ctx.database, ctx.shop_id, _ids(contact_ids), ("contactIds",)
        )
        await labels.label_contacts(
            ctx.database,
            ctx.shop_id,
            docs,
            None,
            add,
            remove,
            ctx.key.name,
            add_field="labels",
            remove_field="labels",
        )
    except Refused as refusal:
        return ContactsPayload.refused(refusal)
    ctx.loaders.activity_page.clear_all()
    after = await labels.contacts_after(ctx.database, ctx.shop_id, [d["_id"] for d in docs])
    return ContactsPayload(contacts=[contact_from(info, doc) for doc in after])


@strawberry.type
class LabelQuery:
    @strawberry.field(
        description="The shop's labels (at most 250), by name, with exact contact counts."
    )
    async def labels(self, info: Info) -> list[Label]:
        return [
            Label.from_doc(doc)
            for doc in await labels.list_labels(info.context.database, info.context.shop_id)
        ]


@strawberry.type
class LabelMutation:
    @strawberry.mutation(
        description="Add labels to up to 250 contacts; new labels count against the shop's 250."
    )
    async def labels_add(
        self, info: Info, contact_ids: list[strawberry.ID], labels: list[str]
    ) -> ContactsPayload:
        try:
            names = _check(labels)
        except Refused as refusal:
            return ContactsPayload.refused(refusal)
        return await _label_by_ids(info, contact_ids, names, [])

    @strawberry.mutation(description="Remove labels from up to 250 contacts.")
    async def labels_remove(
        self, info: Info, contact_ids: list[strawberry.ID], labels: list[str]
    ) -> ContactsPayload:
        try:
            names = _check(labels)
        except Refused as refusal:
            return ContactsPayload.refused(refusal)
        return await _label_by_ids(info, contact_ids, [], names)

    @strawberry.mutation(description="Add and remove labels on everyone a selection matches.")
    async def contacts_label(
        self,
        info: Info,
        selection: ContactSelection,
        add: list[str] | None = None,
        remove: list[str] | None = None,
    ) -> BulkPayload:
        ctx = info.context
        try:
            adding, removing = labels.check_selection_labels(add, remove)
            if selection.ids is not None:
                if selection.query is not None or selection.filter is not None:
                    raise refuse(
                        ("selection",), "Select by ids or by query and filter, not both.", "INVALID"
                    )
                docs = await labels.contacts_by_ids(
                    ctx.database, ctx.shop_id, _ids(selection.ids), ("selection", "ids")
                )
                bulk = await labels.label_contacts(
                    ctx.database, ctx.shop_id, docs, None, adding, removing, ctx.key.name
                )
            else:
                match = await selection_match(info, selection.query, selection.filter)
                bulk = await labels.label_contacts(
                    ctx.database, ctx.shop_id, None, match, adding, removing, ctx.key.name
                )
        except Refused as refusal:
            return BulkPayload.refused(refusal)
        ctx.loaders.contact_by_id.clear_all()
        ctx.loaders.activity_page.clear_all()
        return BulkPayload(matched=bulk.matched, modified=bulk.modified)

    @strawberry.mutation(
        description="Rename a label on every contact; into an existing label it merges. ADMIN only."
    )
    async def label_rename(self, info: Info, name: str, new_name: str) -> LabelPayload:
        ctx = info.context
        try:
            doc = await labels.rename_label(ctx.database, ctx.shop_id, name, new_name, ctx.key.name)
        except Refused as refusal:
            return LabelPayload.refused(refusal)
        ctx.loaders.contact_by_id.clear_all()
        ctx.loaders.activity_page.clear_all()
        return LabelPayload(label=Label.from_doc(doc))

    @strawberry.mutation(
        description="Take a label off every contact and out of the shop. ADMIN only."
    )
    async def label_delete(self, info: Info, name: str) -> LabelDeletePayload:
        ctx = info.context
        try:
            deleted = await labels.delete_label(ctx.database, ctx.shop_id, name, ctx.key.name)
        except Refused as refusal:
            return LabelDeletePayload.refused(refusal)
        ctx.loaders.contact_by_id.clear_all()
        ctx.loaders.activity_page.clear_all()
        return LabelDeletePayload(deleted_name=deleted)


def _check(raws: list[str]) -> list[str]:
    return labels.check_names(("labels",), raws, required=True)
