"""Groups of contacts that are probably one person."""

from __future__ import annotations

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.types.contact import Contact
from resolvers.duplicates import MAX_GROUP_CONTACTS, DuplicateGroupResult


@strawberry.type(description="Contacts that are probably one person, and why.")
class DuplicateGroup:
    reason: str = strawberry.field(
        description='"same phone", "same email except dots/plus-tag" or "same name and address".'
    )
    contact_count: int = strawberry.field(
        description=f"How many contacts share this; `contacts` lists the oldest {MAX_GROUP_CONTACTS}."
    )
    contact_ids: strawberry.Private[list[ObjectId]]

    @strawberry.field(description="The contacts, oldest first.")
    async def contacts(self, info: Info) -> list[Contact]:
        docs = await info.context.loaders.contact_by_id.load_many(self.contact_ids)
        return [Contact.from_doc(doc, info.context.currency) for doc in docs if doc is not None]

    @classmethod
    def from_result(cls, result: DuplicateGroupResult) -> DuplicateGroup:
        return cls(reason=result.reason, contact_count=result.size, contact_ids=result.contact_ids)
