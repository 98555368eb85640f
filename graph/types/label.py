"""Labels of a shop and what label mutations return."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.errors import refusal_errors
from graph.types.common import UserError
from resolvers.errors import Refused


@strawberry.type(
    description="A label of the shop; identity is case-insensitive, the first spelling is kept."
)
class Label:
    name: str
    contact_count: int = strawberry.field(description="Contacts that carry the label, exactly.")

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Label:
        return cls(name=doc["name"], contact_count=int(doc.get("contactCount") or 0))


@strawberry.type
class LabelPayload:
    label: Label | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> LabelPayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type
class LabelDeletePayload:
    deleted_name: str | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> LabelDeletePayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type(description="What a change to many contacts did.")
class BulkPayload:
    matched: int = strawberry.field(default=0, description="Contacts the selection matched.")
    modified: int = strawberry.field(default=0, description="Contacts this call changed.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> BulkPayload:
        return cls(user_errors=refusal_errors(refusal))
