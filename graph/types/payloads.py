"""What contact mutations return: the changed objects, plus what was refused."""

from __future__ import annotations

import strawberry

from graph.errors import refusal_errors
from graph.types.common import UserError
from graph.types.contact import Contact
from resolvers.errors import Refused


@strawberry.type
class ContactPayload:
    contact: Contact | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> ContactPayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type
class ContactsPayload:
    contacts: list[Contact] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> ContactsPayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type
class ContactsDeletePayload:
    deleted_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> ContactsDeletePayload:
        return cls(user_errors=refusal_errors(refusal))
