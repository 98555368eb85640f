"""Segments: saved contact filters, two of them built in."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.context import Info
from graph.errors import ClientError, refusal_errors
from graph.types.common import UserError
from graph.types.contact_inputs import ContactFilter
from graph.types.node import Node, decode_id, encode_id
from graph.types.scalars import JSON
from loaders.segments import match_key
from resolvers.errors import Refused
from resolvers.segments import BUILT_IN_BY_KEY, SegmentRef, segment_condition, segment_match


@strawberry.type(
    description="A saved filter over the shop's contacts, evaluated afresh on every use."
)
class Segment(Node):
    name: str
    query: str | None = strawberry.field(
        description="Free text the contacts must match, as in `contacts(query:)`."
    )
    filter: JSON = strawberry.field(
        description="The ContactFilter, as stored (camelCase names, decimals as strings)."
    )
    built_in: bool = strawberry.field(
        description="FIRST_TIME_CUSTOMERS, REPEAT_CUSTOMERS, SUBSCRIBERS and MEMBERS exist in "
        "every shop and cannot be changed."
    )
    key: str | None = strawberry.field(
        description="FIRST_TIME_CUSTOMERS, REPEAT_CUSTOMERS, SUBSCRIBERS or MEMBERS for a built-in "
        "segment (usable wherever a segment id is), else null."
    )
    match: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="How many contacts the segment selects right now; exact.")
    async def contact_count(self, info: Info) -> int:
        return await info.context.loaders.contact_count_by_match.load(match_key(self.match))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Segment:
        key = doc.get("builtIn")
        return cls(
            id=strawberry.ID(encode_id("Segment", doc["_id"])),
            name=doc["name"],
            query=doc.get("query"),
            filter=JSON(doc.get("filter") or {}),
            built_in=key is not None,
            key=key,
            match=segment_match(doc["shopId"], doc),
        )


@strawberry.input(description="A segment to save: a name, and the query and filter it stands for.")
class SegmentInput:
    name: str = strawberry.field(
        description="1-100 characters, unique in the shop (case-insensitive)."
    )
    query: str | None = strawberry.field(
        default=None, description="Free text, as in `contacts(query:)`."
    )
    filter: ContactFilter = strawberry.field(
        description="The conditions; `segment` may not be used inside a segment."
    )


@strawberry.type
class SegmentPayload:
    segment: Segment | None = strawberry.field(
        default=None, description="The segment as saved; after a delete, as it was."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> SegmentPayload:
        return cls(user_errors=refusal_errors(refusal))


def segment_ref(value: str) -> SegmentRef | None:
    """A segment reference from a client: a built-in's key, or a Segment id (None when malformed)."""
    if value in BUILT_IN_BY_KEY:
        return value
    return decode_id(value, "Segment")


async def segment_filter_condition(info: Info, value: str) -> dict[str, Any]:
    """The condition `ContactFilter.segment` stands for; a NOT_FOUND error when the shop has no such segment."""
    try:
        return await segment_condition(
            info.context.database, info.context.shop_id, segment_ref(value)
        )
    except Refused as refusal:
        raise ClientError(refusal.problems[0].message, "NOT_FOUND") from None
