"""Reporting queries: figures over the contacts, and contacts that look like duplicates."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.context import Info
from graph.errors import bad_input
from graph.operations.contacts import selection_match
from graph.types.contact_inputs import ContactFilter
from graph.types.duplicate import DuplicateGroup
from graph.types.stats import ContactStats
from loaders.stats import MAX_TOP_LABELS, TOP_LABELS, contact_stats
from resolvers.duplicates import MAX_GROUPS, duplicate_groups


@strawberry.type
class ReportingQuery:
    @strawberry.field(
        description="Counts, revenue and trends over the contacts the filter selects (all by default)."
    )
    async def contact_stats(
        self,
        info: Info,
        filter: ContactFilter | None = None,
        top_labels: Annotated[
            int,
            strawberry.argument(
                description=f"How many labels `topLabels` lists (1-{MAX_TOP_LABELS})."
            ),
        ] = TOP_LABELS,
    ) -> ContactStats:
        if not 1 <= top_labels <= MAX_TOP_LABELS:
            raise bad_input(f"`topLabels` must be between 1 and {MAX_TOP_LABELS}.")
        match = await selection_match(info, None, filter)
        result = await contact_stats(info.context.database, info.context.shop_id, match, top_labels)
        return ContactStats.from_result(result, info.context.currency)

    @strawberry.field(
        description="Contacts that are probably one person: same phone, same email except "
        "dots/plus-tag, same name and address."
    )
    async def duplicate_candidates(
        self,
        info: Info,
        first: Annotated[
            int, strawberry.argument(description=f"How many groups (1-{MAX_GROUPS}).")
        ] = 20,
    ) -> list[DuplicateGroup]:
        if not 1 <= first <= MAX_GROUPS:
            raise bad_input(f"`first` must be between 1 and {MAX_GROUPS}.")
        groups = await duplicate_groups(info.context.database, info.context.shop_id, first)
        return [DuplicateGroup.from_result(group) for group in groups]
