"""The Contact type and its connection."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from graph.types.common import Address, Money, PageInfo
from graph.types.consent import Consent
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime
from loaders.contact_search import display_name
from loaders.contacts import count_contacts
from loaders.keyset import Page
from loaders.mongo import Database

if TYPE_CHECKING:
    from graph.types.activity import ActivityConnection, ActivityEntry, ActivityKind
    from graph.types.order import OrderConnection
    from graph.types.subscription_contract import (
        SubscriptionContractConnection,
        SubscriptionStatus,
    )

# Averages are shown to the cent, rounded half up as shops and spreadsheets do.
_CENTS = Decimal("0.01")


@strawberry.enum(description="Customer or lead.")
class ContactKind(Enum):
    CUSTOMER = strawberry.enum_value(
        "CUSTOMER", description="Has at least one order (placed or draft) in the shop."
    )
    LEAD = strawberry.enum_value(
        "LEAD", description="Created by hand, by a contact form, or by the API; no order yet."
    )


@strawberry.enum(description="How to order a list of contacts; ties are broken by id.")
class ContactSortKey(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    NAME = strawberry.enum_value("NAME", description="The display name, case-insensitive.")
    EMAIL = "EMAIL"
    LAST_ORDER_AT = strawberry.enum_value(
        "LAST_ORDER_AT", description="Contacts without orders first (last when reversed)."
    )
    ORDER_COUNT = "ORDER_COUNT"
    TOTAL_SPENT = "TOTAL_SPENT"


@strawberry.type(
    description=(
        "A person the shop deals with: a customer or a lead. Keys of the shop's backend (INGEST) "
        "and of web pages (PUBLIC) read only its id: its other fields are null for them, each "
        "with a FORBIDDEN error."
    )
)
class Contact(Node):
    # Nullable wherever a role may be refused the field (see graph/permissions.py):
    # a refused field is null with its own error, and the contact stands.
    email: str | None = strawberry.field(
        description="The contact's fixed point: unique per shop, case-insensitive."
    )
    first_name: str | None
    last_name: str | None
    display_name: str | None = strawberry.field(description='"First Last", else the email.')
    phone: str | None = strawberry.field(description="E.164 when it can be parsed.")
    company: str | None
    kind: ContactKind | None
    labels: list[str] | None
    shipping_address: Address | None = strawberry.field(
        description="Set by hand, or taken from the newest order that had something to ship."
    )
    billing_address: Address | None
    has_account: bool | None = strawberry.field(
        description="The person has a customer account in the shop."
    )
    details_locked: bool | None = strawberry.field(
        description="Edited by hand: new orders no longer overwrite name, address and phone."
    )
    consent: Consent | None
    order_count: int | None = strawberry.field(
        description="Placed orders; canceled and draft orders excluded."
    )
    total_spent: Money | None = strawberry.field(
        description="Sum of original order totals (shipping, tax, discounts included; refunds not subtracted)."
    )
    average_order_value: Money | None
    first_order_at: DateTime | None = strawberry.field(description='"Customer since".')
    last_order_at: DateTime | None
    created_at: DateTime | None
    updated_at: DateTime | None
    active_subscription_count: int | None = strawberry.field(
        description="Subscriptions and memberships not ended (ACTIVE, PAUSED or PAST_DUE), "
        "as the shop reported them; `hasActiveSubscription` filters by the same count."
    )
    is_member: bool | None = strawberry.field(description="Has an ACTIVE or PAUSED MEMBERSHIP.")
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field(
        description="The contact's orders, newest first; canceled ones only when asked for."
    )
    async def orders(
        self,
        info: strawberry.Info,
        first: int | None = 20,
        after: str | None = None,
        include_canceled: bool | None = False,
        include_drafts: bool | None = True,
    ) -> Annotated[OrderConnection, strawberry.lazy("graph.types.order")] | None:
        from graph.types.order import contact_orders  # order.py imports this module

        return await contact_orders(
            info, self.doc["_id"], first, after, include_canceled, include_drafts
        )

    @strawberry.field(
        description="Subscriptions and memberships (the Recurring tab), newest start first; "
        "`status` null or empty: every status."
    )
    async def subscription_contracts(
        self,
        info: strawberry.Info,
        first: int | None = 20,
        after: str | None = None,
        status: list[
            Annotated[SubscriptionStatus, strawberry.lazy("graph.types.subscription_contract")]
        ]
        | None = None,
    ) -> (
        Annotated[
            SubscriptionContractConnection, strawberry.lazy("graph.types.subscription_contract")
        ]
        | None
    ):
        # subscription_contract.py imports this module
        from graph.types.subscription_contract import contact_subscription_contracts

        return await contact_subscription_contracts(info, self.doc["_id"], first, after, status)

    @strawberry.field(
        description="The activity log, newest first; keys that may not read notes do not see NOTE entries."
    )
    async def activity(
        self,
        info: strawberry.Info,
        first: int | None = 50,
        after: str | None = None,
        kinds: list[Annotated[ActivityKind, strawberry.lazy("graph.types.activity")]] | None = None,
    ) -> Annotated[ActivityConnection, strawberry.lazy("graph.types.activity")] | None:
        from graph.types.activity import contact_activity  # activity.py imports this module

        return await contact_activity(info, self.doc["_id"], first, after, kinds)

    @strawberry.field(
        description=(
            "Internal notes (activity of kind NOTE), newest first, at most `first` (250). "
            "STAFF and ADMIN keys only: null with a FORBIDDEN error for other keys."
        )
    )
    async def notes(
        self, info: strawberry.Info, first: int | None = 250
    ) -> list[Annotated[ActivityEntry, strawberry.lazy("graph.types.activity")]] | None:
        from graph.types.activity import contact_notes

        return await contact_notes(info, self.doc["_id"], first)

    @classmethod
    def from_doc(cls, doc: dict[str, Any], currency: str | None) -> Contact:
        count = doc.get("orderCount") or 0
        spent = Money.of(doc.get("totalSpent"), currency)
        average = None
        if count:
            average = Money(
                amount=(spent.amount / count).quantize(_CENTS, ROUND_HALF_UP),
                currency_code=spent.currency_code,
            )
        return cls(
            id=strawberry.ID(encode_id("Contact", doc["_id"])),
            email=doc["email"],
            first_name=doc.get("firstName"),
            last_name=doc.get("lastName"),
            display_name=display_name(doc),
            phone=doc.get("phone"),
            company=doc.get("company"),
            kind=ContactKind(doc["kind"]),
            labels=doc.get("labels") or [],
            shipping_address=Address.from_doc(doc.get("shippingAddress")),
            billing_address=Address.from_doc(doc.get("billingAddress")),
            has_account=bool(doc.get("hasAccount")),
            details_locked=bool(doc.get("detailsLocked")),
            consent=Consent.from_doc(doc.get("consent")),
            order_count=count,
            total_spent=spent,
            average_order_value=average,
            first_order_at=doc.get("firstOrderAt"),
            last_order_at=doc.get("lastOrderAt"),
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
            active_subscription_count=doc.get("activeSubscriptionCount") or 0,
            is_member=doc.get("isMember") is True,
            doc=doc,
        )


@strawberry.type
class ContactEdge:
    cursor: str
    node: Contact


def _contact_edges(root: ContactConnection) -> list[ContactEdge]:
    # Each cursor is a JSON + base64 encoding: made only when a client selects edges.
    page = root.page
    return [
        ContactEdge(cursor=page.cursor(row), node=node)
        for row, node in zip(page.rows, root.nodes, strict=True)
    ]


@strawberry.type(description="A page of contacts.")
class ContactConnection:
    edges: list[ContactEdge] = strawberry.field(resolver=_contact_edges)
    nodes: list[Contact]
    page_info: PageInfo
    page: strawberry.Private[Page]
    database: strawberry.Private[Database]
    match: strawberry.Private[dict[str, Any]]

    @strawberry.field(
        description="How many contacts match, over all pages; counted only when asked for."
    )
    async def total_count(self) -> int:
        return await count_contacts(self.database, self.match)

    @classmethod
    def from_page(
        cls, page: Page, currency: str | None, database: Database, match: dict[str, Any]
    ) -> ContactConnection:
        rows = page.rows
        return cls(
            nodes=[Contact.from_doc(row, currency) for row in rows],
            page_info=PageInfo.of(page),
            page=page,
            database=database,
            match=match,
        )
