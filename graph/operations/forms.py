"""The contact form mutation: the one thing a PUBLIC key may do."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.errors import ClientError
from graph.types.forms import ContactFormInput, ContactFormPayload
from resolvers.errors import RateLimited, Refused
from resolvers.forms import submit_form


def client_address(info: Info) -> str:
    client = getattr(info.context.request, "client", None)
    return client.host if client is not None and client.host else "unknown"


@strawberry.type
class FormMutation:
    @strawberry.mutation(
        description="A message from the website's contact form: finds or makes the contact "
        "(a LEAD) and logs it. "
        "Rate-limited per client address (RATE_LIMITED)."
    )
    async def contact_form_submit(self, info: Info, input: ContactFormInput) -> ContactFormPayload:
        ctx = info.context
        try:
            await submit_form(
                ctx.database,
                ctx.shop_id,
                input.to_data(),
                client=client_address(info),
                rate_per_minute=ctx.settings.form_rate_per_minute,
            )
        except RateLimited as err:
            raise ClientError(str(err), "RATE_LIMITED") from None
        except Refused as refusal:
            return ContactFormPayload.refused(refusal)
        return ContactFormPayload(ok=True)
