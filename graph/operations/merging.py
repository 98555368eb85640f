"""Merging duplicate contacts: a preview that writes nothing, and the merge itself."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import ClientError
from graph.operations.contacts import contact_from
from graph.types.contact import Contact
from graph.types.node import decode_id
from graph.types.payloads import ContactPayload
from resolvers import merge
from resolvers.errors import Refused


def _request(target_id: strawberry.ID, source_ids: list[strawberry.ID]) -> merge.MergeRequest:
    return merge.MergeRequest(
        decode_id(target_id, "Contact"), [decode_id(s, "Contact") for s in source_ids]
    )


def _shown(doc: dict) -> dict:
    """The contact as lists read it: the log and search terms are read apart."""
    return {k: v for k, v in doc.items() if k not in ("activity", "searchTerms")}


@strawberry.type
class MergeQuery:
    @strawberry.field(
        description=(
            "The contact contactsMerge would produce, computed without writing anything. Its scalar fields show "
            "the merged result; its connections (orders, activity) still read what is stored."
        )
    )
    async def contacts_merge_preview(
        self, info: Info, target_id: strawberry.ID, source_ids: list[strawberry.ID]
    ) -> Contact | None:
        ctx = info.context
        try:
            doc = await merge.preview_merge(
                ctx.database, ctx.shop_id, _request(target_id, source_ids), ctx.key.name
            )
        except Refused as refusal:
            problem = refusal.problems[0]
            field = [str(p) for p in problem.field] if problem.field else None
            raise ClientError(problem.message, problem.code, field=field) from None
        return Contact.from_doc(_shown(doc), ctx.currency)


@strawberry.type
class MergeMutation:
    @strawberry.mutation(
        description=(
            "Merge duplicates into the target, all or nothing: orders, messages, activity, labels, consent history "
            "and statistics move to it; the sources are deleted; a CONTACTS_MERGED entry names their emails."
        )
    )
    async def contacts_merge(
        self, info: Info, target_id: strawberry.ID, source_ids: list[strawberry.ID]
    ) -> ContactPayload:
        ctx = info.context
        request = _request(target_id, source_ids)
        try:
            doc = await merge.merge_contacts(ctx.database, ctx.shop_id, request, ctx.key.name)
        except Refused as refusal:
            return ContactPayload.refused(refusal)
        ctx.loaders.contact_by_id.prime_many(
            {oid: None for oid in request.source_ids if oid}, force=True
        )
        return ContactPayload(contact=contact_from(info, _shown(doc)))
