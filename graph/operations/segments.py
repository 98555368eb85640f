"""Queries and mutations of segments."""

from __future__ import annotations

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.operations.contacts import NODE_RESOLVERS
from graph.types.node import decode_id
from graph.types.segment import Segment, SegmentInput, SegmentPayload
from resolvers import segments
from resolvers.errors import Refused


def _draft(input: SegmentInput) -> segments.SegmentDraft:
    return segments.SegmentDraft(
        name=input.name,
        query=input.query,
        filter=input.filter.to_spec(),
        filter_segment=input.filter.segment,
    )


@strawberry.type
class SegmentQuery:
    @strawberry.field(
        description="The shop's segments: the two built-in ones first, then the saved ones by name."
    )
    async def segments(self, info: Info) -> list[Segment]:
        docs = await segments.list_segments(info.context.database, info.context.shop_id)
        return [Segment.from_doc(doc) for doc in docs]


@strawberry.type
class SegmentMutation:
    @strawberry.mutation(description="Save a filter (and optional query) under a name.")
    async def segment_create(self, info: Info, input: SegmentInput) -> SegmentPayload:
        ctx = info.context
        try:
            doc = await segments.create_segment(ctx.database, ctx.shop_id, _draft(input))
        except Refused as refusal:
            return SegmentPayload.refused(refusal)
        return SegmentPayload(segment=Segment.from_doc(doc))

    @strawberry.mutation(
        description="Replace a saved segment's name, query and filter. Built-in segments cannot be changed."
    )
    async def segment_update(
        self, info: Info, id: strawberry.ID, input: SegmentInput
    ) -> SegmentPayload:
        ctx = info.context
        try:
            doc = await segments.update_segment(
                ctx.database, ctx.shop_id, decode_id(id, "Segment"), _draft(input)
            )
        except Refused as refusal:
            return SegmentPayload.refused(refusal)
        return SegmentPayload(segment=Segment.from_doc(doc))

    @strawberry.mutation(
        description="Delete a saved segment; its contacts stay as they are. Built-in segments cannot be deleted."
    )
    async def segment_delete(self, info: Info, id: strawberry.ID) -> SegmentPayload:
        ctx = info.context
        try:
            doc = await segments.delete_segment(ctx.database, ctx.shop_id, decode_id(id, "Segment"))
        except Refused as refusal:
            return SegmentPayload.refused(refusal)
        return SegmentPayload(segment=Segment.from_doc(doc))


async def _segment_node(info: Info, oid: ObjectId) -> Segment | None:
    doc = await segments.find_segment(info.context.database, info.context.shop_id, oid)
    return Segment.from_doc(doc) if doc else None


NODE_RESOLVERS["Segment"] = _segment_node
