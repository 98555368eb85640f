"""consentUpdate: marketing consent recorded through the API."""

from __future__ import annotations

from typing import Annotated

import strawberry

from graph.context import Info
from graph.operations.contacts import contact_from
from graph.types.consent import MarketingState, OptInLevel
from graph.types.node import decode_id
from graph.types.payloads import ContactPayload
from graph.types.scalars import DateTime
from resolvers import consent
from resolvers.errors import Refused, not_found


@strawberry.type
class ConsentMutation:
    @strawberry.mutation(
        description=(
            "Record a marketing consent event. The current state is the event with the newest `at`, "
            "not the newest write: a late-arriving older event joins the history without changing the state. "
            "Source ADMIN for ADMIN keys, API for others; the actor is the key's name. Logs CONSENT_CHANGED."
        )
    )
    async def consent_update(
        self,
        info: Info,
        contact_id: strawberry.ID,
        state: MarketingState,
        opt_in_level: Annotated[
            OptInLevel | None, strawberry.argument(description="Only with SUBSCRIBED or PENDING.")
        ] = None,
        evidence: Annotated[
            str | None,
            strawberry.argument(
                description="What the person agreed to (e.g. the checkbox wording), at most 5,000 characters."
            ),
        ] = None,
        at: Annotated[
            DateTime | None,
            strawberry.argument(
                description="When the person gave or withdrew consent (default: now); not in the future."
            ),
        ] = None,
    ) -> ContactPayload:
        ctx = info.context
        try:
            cid = decode_id(contact_id, "Contact")
            if cid is None:
                raise not_found(("contactId",))
            doc = await consent.update_consent(
                ctx.database,
                ctx.shop_id,
                cid,
                state.value,
                opt_in_level=opt_in_level.value if opt_in_level else None,
                evidence=evidence,
                at=at,
                role=ctx.key.role.value,
                actor=ctx.key.name,
            )
        except Refused as refusal:
            return ContactPayload.refused(refusal)
        ctx.loaders.activity_page.clear_all()
        return ContactPayload(contact=contact_from(info, doc))
