"""Inputs that select and change contacts."""

from __future__ import annotations

from typing import cast

import strawberry

from graph.types.common import AddressInput
from graph.types.consent import MarketingState
from graph.types.contact import ContactKind
from graph.types.scalars import DateTime, Decimal
from loaders.contacts import ContactFilterSpec
from resolvers.contacts import UNSET, ContactDetails


@strawberry.input(description="Conditions on contacts, combined with AND.")
class ContactFilter:
    kind: ContactKind | None = None
    labels_any: list[str] | None = strawberry.field(
        default=None, description="Has at least one of these labels."
    )
    labels_all: list[str] | None = strawberry.field(
        default=None, description="Has all of these labels."
    )
    labels_none: list[str] | None = strawberry.field(
        default=None, description="Has none of these labels."
    )
    total_spent_min: Decimal | None = None
    total_spent_max: Decimal | None = None
    order_count_min: int | None = None
    order_count_max: int | None = None
    last_order_after: DateTime | None = None
    last_order_before: DateTime | None = None
    created_after: DateTime | None = None
    created_before: DateTime | None = None
    marketing_state: MarketingState | None = None
    has_account: bool | None = None
    has_active_subscription: bool | None = strawberry.field(
        default=None,
        description="Has a subscription or membership not ended (activeSubscriptionCount > 0).",
    )
    is_member: bool | None = strawberry.field(
        default=None, description="Has an ACTIVE or PAUSED MEMBERSHIP."
    )
    segment: strawberry.ID | None = strawberry.field(
        default=None,
        description=(
            "A saved segment (its id, or FIRST_TIME_CUSTOMERS / REPEAT_CUSTOMERS / "
            "SUBSCRIBERS / MEMBERS); "
            "combined with the other fields by AND."
        ),
    )

    def to_spec(self) -> ContactFilterSpec:
        return ContactFilterSpec(
            # Strawberry turns the enum_value() members into their plain values.
            kind=cast(str, self.kind.value) if self.kind else None,
            labels_any=self.labels_any,
            labels_all=self.labels_all,
            labels_none=self.labels_none,
            total_spent_min=self.total_spent_min,
            total_spent_max=self.total_spent_max,
            order_count_min=self.order_count_min,
            order_count_max=self.order_count_max,
            last_order_after=self.last_order_after,
            last_order_before=self.last_order_before,
            created_after=self.created_after,
            created_before=self.created_before,
            marketing_state=self.marketing_state.value if self.marketing_state else None,
            has_account=self.has_account,
            has_active_subscription=self.has_active_subscription,
            is_member=self.is_member,
        )


def _given(value: object) -> object:
    return UNSET if value is strawberry.UNSET else value


@strawberry.input(
    description=(
        "A contact's details. On create only `email` is required; on update, "
        "fields left out stay as they are and null clears a field."
    )
)
class ContactInput:
    email: str | None = strawberry.field(
        default=strawberry.UNSET, description="Required on create."
    )
    first_name: str | None = strawberry.UNSET
    last_name: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    company: str | None = strawberry.UNSET
    shipping_address: AddressInput | None = strawberry.UNSET
    billing_address: AddressInput | None = strawberry.UNSET
    labels: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="On create only; use labelsAdd/labelsRemove afterwards.",
    )

    def to_details(self) -> ContactDetails:
        def address(value: AddressInput | None) -> object:
            if value is strawberry.UNSET:
                return UNSET
            return None if value is None else value.to_dict()

        return ContactDetails(
            email=_given(self.email),
            first_name=_given(self.first_name),
            last_name=_given(self.last_name),
            phone=_given(self.phone),
            company=_given(self.company),
            shipping_address=address(self.shipping_address),
            billing_address=address(self.billing_address),
            labels=_given(self.labels),
        )
