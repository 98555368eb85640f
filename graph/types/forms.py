"""Contact forms: what a website form sends, and the (deliberately uninformative) answer."""

from __future__ import annotations

import strawberry

from graph.errors import refusal_errors
from graph.types.common import UserError
from resolvers.errors import Refused
from resolvers.forms import FormData


@strawberry.input(description="A message sent through a contact form on the shop's website.")
class ContactFormInput:
    email: str
    name: str | None = strawberry.field(
        default=None, description="One field: the first word is taken as the first name."
    )
    phone: str | None = None
    message: str = strawberry.field(description="1 to 5000 characters.")
    accepts_marketing: bool | None = strawberry.field(
        default=False,
        description="The form's marketing checkbox: records consent PENDING "
        "(confirmation needed), never SUBSCRIBED.",
    )
    consent_text: str | None = strawberry.field(
        default=None, description="The wording shown next to the checkbox, kept as evidence."
    )
    page_url: str | None = strawberry.field(
        default=None, description="The page the form was on, kept as evidence."
    )

    def to_data(self) -> FormData:
        return FormData(
            email=self.email,
            message=self.message,
            name=self.name,
            phone=self.phone,
            accepts_marketing=self.accepts_marketing,
            consent_text=self.consent_text,
            page_url=self.page_url,
        )


@strawberry.type(description="The same answer whether or not the email was already known.")
class ContactFormPayload:
    ok: bool = strawberry.field(description="The submission was recorded.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> ContactFormPayload:
        return cls(ok=False, user_errors=refusal_errors(refusal))
