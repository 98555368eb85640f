"""Which contacts a bulk operation applies to."""

from __future__ import annotations

import strawberry

from graph.types.contact_inputs import ContactFilter


@strawberry.input(
    description="Either explicit ids, or everything a query and filter match (all contacts when neither is given)."
)
class ContactSelection:
    ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="At most 250 contact ids."
    )
    query: str | None = strawberry.field(
        default=None, description="Free text, as in `contacts(query:)`."
    )
    filter: ContactFilter | None = None
