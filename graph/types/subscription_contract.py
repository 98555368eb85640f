"""Subscriptions and memberships (the Recurring tab): the contract type, its connection and input."""

from __future__ import annotations

from enum import Enum
from typing import Any, cast

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.errors import refusal_errors
from graph.types.common import Money, PageInfo, UserError
from graph.types.contact import Contact
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime, Decimal
from loaders.keyset import Page, PageRequest, decode_cursor
from loaders.subscription_contracts import (
    ALL_STATUSES,
    DEFAULT_PAGE,
    SORT_FIELD,
    ContractCountKey,
    ContractsKey,
)
from resolvers.errors import Refused
from resolvers.subscription_input import SubscriptionData


@strawberry.enum(description="What a subscription contract sells.")
class SubscriptionKind(Enum):
    PRODUCT = strawberry.enum_value("PRODUCT", description="A product delivered on a schedule.")
    MEMBERSHIP = strawberry.enum_value(
        "MEMBERSHIP", description="Access to a members' area; its holder is a member."
    )


@strawberry.enum(description="Where a subscription contract stands, as the shop reports it.")
class SubscriptionStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Billed and delivered.")
    PAUSED = strawberry.enum_value("PAUSED", description="Not billed for now; not ended.")
    PAST_DUE = strawberry.enum_value(
        "PAST_DUE", description="A payment failed; the shop is still trying. Not ended."
    )
    CANCELED = strawberry.enum_value(
        "CANCELED", description="Ended by the customer or the shop. Final."
    )
    EXPIRED = strawberry.enum_value("EXPIRED", description="Ran its fixed term out. Final.")


@strawberry.enum(description="The unit of a billing interval.")
class BillingInterval(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


@strawberry.type(
    description="A product subscription or membership of a contact, as the shop reports it. "
    "The shop bills; contactgraph records and can ask the shop to cancel."
)
class SubscriptionContract(Node):
    external_id: str = strawberry.field(
        description="The shop's own id of the contract; unique per shop."
    )
    kind: SubscriptionKind
    status: SubscriptionStatus
    title: str = strawberry.field(description="The product's or membership's name.")
    quantity: int
    interval: BillingInterval
    interval_count: int = strawberry.field(
        description="Billed every `intervalCount` `interval`s, e.g. 2 and WEEK: every two weeks."
    )
    started_at: DateTime
    next_billing_at: DateTime | None = strawberry.field(
        description="The next charge the shop has planned, as last reported."
    )
    ended_at: DateTime | None = strawberry.field(
        description="When it was canceled or expired; null while it runs."
    )
    cancel_requested_at: DateTime | None = strawberry.field(
        description="When staff asked the shop to cancel it (subscriptionContractCancel); "
        "null when nobody asked."
    )
    doc: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="The price of one billing period (all of `quantity`).")
    def price(self) -> Money:
        return Money.of(self.doc.get("price"), self.doc.get("currency"))

    @strawberry.field(
        description="The contact it belongs to; null once that contact was deleted or erased."
    )
    async def contact(self, info: Info) -> Contact | None:
        contact_id = self.doc.get("contactId")
        if contact_id is None:
            return None
        doc = await info.context.loaders.contact_by_id.load(contact_id)
        return Contact.from_doc(doc, info.context.currency) if doc else None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SubscriptionContract:
        return cls(
            id=strawberry.ID(encode_id("SubscriptionContract", doc["_id"])),
            external_id=doc["externalId"],
            kind=SubscriptionKind(doc["kind"]),
            status=SubscriptionStatus(doc["status"]),
            title=doc["title"],
            quantity=doc["quantity"],
            interval=BillingInterval(doc["interval"]),
            interval_count=doc["intervalCount"],
            started_at=doc["startedAt"],
            next_billing_at=doc.get("nextBillingAt"),
            ended_at=doc.get("endedAt"),
            cancel_requested_at=doc.get("cancelRequestedAt"),
            doc=doc,
        )


async def load_subscription_contract(
    info: Info, contract_id: ObjectId | None
) -> SubscriptionContract | None:
    if contract_id is None:
        return None
    doc = await info.context.loaders.subscription_contract_by_id.load(contract_id)
    return SubscriptionContract.from_doc(doc) if doc else None


@strawberry.type
class SubscriptionContractEdge:
    cursor: str
    node: SubscriptionContract


@strawberry.type(description="A page of a contact's subscription contracts, newest start first.")
class SubscriptionContractConnection:
    nodes: list[SubscriptionContract]
    page: strawberry.Private[Page]
    count_key: strawberry.Private[ContractCountKey]

    @strawberry.field
    def edges(self) -> list[SubscriptionContractEdge]:
        return [
            SubscriptionContractEdge(cursor=self.page.cursor(row), node=node)
            for row, node in zip(self.page.rows, self.nodes, strict=True)
        ]

    @strawberry.field
    def page_info(self) -> PageInfo:
        return PageInfo.of(self.page)

    @strawberry.field(
        description="How many contracts the contact has (in the statuses asked for), over all pages."
    )
    async def total_count(self, info: Info) -> int:
        return await info.context.loaders.subscription_contract_count_by_contact_id.load(
            self.count_key
        )


async def contact_subscription_contracts(
    info: Info,
    contact_id: ObjectId,
    first: int | None,
    after: str | None,
    status: list[SubscriptionStatus] | None,
) -> SubscriptionContractConnection:
    """A contact's contracts through the request's loader (batched across contacts)."""
    size, _ = PageRequest(first=first).size(DEFAULT_PAGE)
    if after is not None:
        decode_cursor(after, SORT_FIELD)  # a bad cursor is the client's error, before any read
    # Null or empty: every status. Kept in one order so equal asks share a batch.
    wanted = {s.value for s in status or []}
    statuses = tuple(s for s in ALL_STATUSES if s in wanted) or ALL_STATUSES
    page = await info.context.loaders.subscription_contracts_by_contact_id.load(
        ContractsKey(contact_id, size, after, statuses)
    )
    return SubscriptionContractConnection(
        nodes=[SubscriptionContract.from_doc(row) for row in page.rows],
        page=page,
        count_key=ContractCountKey(contact_id, statuses),
    )


@strawberry.type
class SubscriptionContractPayload:
    subscription_contract: SubscriptionContract | None = strawberry.field(
        default=None, description="The contract as it now stands; null when refused."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> SubscriptionContractPayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.input(
    description="A subscription contract as the shop reports it; also the JSON body of "
    "POST /webhooks/subscriptions."
)
class SubscriptionContractInput:
    external_id: str = strawberry.field(
        description="Idempotency key: the shop's own id of the contract (at most 200 characters)."
    )
    email: str = strawberry.field(
        description="The buyer: finds the contact in any letter case, or makes a CUSTOMER."
    )
    first_name: str | None = strawberry.field(
        default=None, description="Fills a missing name; never overwrites one."
    )
    last_name: str | None = None
    kind: SubscriptionKind | None = SubscriptionKind.PRODUCT
    status: SubscriptionStatus = strawberry.field(
        description="CANCELED and EXPIRED are final: a later report does not revive the contract."
    )
    title: str = strawberry.field(description="1 to 500 characters.")
    quantity: int | None = strawberry.field(default=1, description="1 to 10000.")
    price: Decimal = strawberry.field(
        description="Per billing period: greater than zero, at most 4 decimal places."
    )
    currency_code: str = strawberry.field(
        description="ISO 4217; must be the shop's currency (the first order or contract sets it)."
    )
    interval: BillingInterval
    interval_count: int | None = strawberry.field(default=1, description="1 to 365.")
    started_at: DateTime = strawberry.field(
        description="Not in the future (5 minutes of clock drift allowed), not before 1970."
    )
    next_billing_at: DateTime | None = strawberry.field(
        default=None, description="Not before startedAt, at most 10 years ahead."
    )
    ended_at: DateTime | None = strawberry.field(
        default=None,
        description="Only for CANCELED or EXPIRED; not before startedAt, not in the future. "
        "Default for an ended contract: updatedAt, else when it is recorded.",
    )
    updated_at: DateTime | None = strawberry.field(
        default=None,
        description="When the shop last changed the contract. A report older than the one "
        "applied last changes nothing (webhooks arrive out of order and are retried); "
        "a report without it applies unless it repeats what is stored.",
    )

    def to_data(self) -> SubscriptionData:
        return SubscriptionData(
            external_id=self.external_id,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            # Strawberry turns the enum_value() members into their plain values.
            kind=cast(str, self.kind.value) if self.kind is not None else None,
            status=cast(str, self.status.value),
            title=self.title,
            quantity=self.quantity,
            price=self.price,
            currency_code=self.currency_code,
            interval=self.interval.value,
            interval_count=self.interval_count,
            started_at=self.started_at,
            next_billing_at=self.next_billing_at,
            ended_at=self.ended_at,
            updated_at=self.updated_at,
        )
