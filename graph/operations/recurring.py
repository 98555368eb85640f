"""Queries and mutations of subscriptions and memberships (the Recurring tab)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import strawberry

from graph.context import Info
from graph.operations.contacts import NODE_RESOLVERS
from graph.types.node import decode_id
from graph.types.subscription_contract import (
    SubscriptionContract,
    SubscriptionContractInput,
    SubscriptionContractPayload,
    load_subscription_contract,
)
from resolvers.errors import Refused
from resolvers.subscription_cancel import request_cancel
from resolvers.subscription_record import record_subscription


def _payload(
    info: Info, contract: dict[str, Any], contact: dict[str, Any] | None = None
) -> SubscriptionContractPayload:
    """The answer of a contract mutation; what this request read before is stale now."""
    ctx = info.context
    if ctx.shop.currency is None and contract.get("currency"):
        # This contract gave the shop its currency: money in this response is in it.
        ctx.shop = replace(ctx.shop, currency=contract["currency"])
    loaders = ctx.loaders
    loaders.subscription_contracts_by_contact_id.clear_all()
    loaders.subscription_contract_count_by_contact_id.clear_all()
    loaders.subscription_contract_by_id.prime(contract["_id"], contract, force=True)
    if contact is not None:
        loaders.contact_by_id.prime(contact["_id"], contact, force=True)
    elif contract.get("contactId") is not None:
        with contextlib.suppress(KeyError):  # not read before
            loaders.contact_by_id.clear(contract["contactId"])
    return SubscriptionContractPayload(
        subscription_contract=SubscriptionContract.from_doc(contract)
    )


@strawberry.type
class RecurringQuery:
    @strawberry.field(
        description="A subscription contract by id; null when it does not exist in this shop."
    )
    async def subscription_contract(
        self, info: Info, id: strawberry.ID
    ) -> SubscriptionContract | None:
        return await load_subscription_contract(info, decode_id(id, "SubscriptionContract"))


@strawberry.type
class RecurringMutation:
    @strawberry.mutation(
        description="The shop reports a subscription or membership (INGEST, STAFF, ADMIN). "
        "Idempotent on externalId and ordered by updatedAt: a replay or an older report changes "
        "nothing. The contact is found by e-mail or made a CUSTOMER; a LEAD becomes a CUSTOMER. "
        "Logs SUBSCRIPTION_STARTED, SUBSCRIPTION_CHANGED or SUBSCRIPTION_ENDED, once per change."
    )
    async def subscription_contract_record(
        self, info: Info, input: SubscriptionContractInput
    ) -> SubscriptionContractPayload:
        ctx = info.context
        try:
            recorded = await record_subscription(
                ctx.database, ctx.shop_id, input.to_data(), shop_currency=ctx.currency
            )
        except Refused as refusal:
            return SubscriptionContractPayload.refused(refusal)
        return _payload(info, recorded.contract, recorded.contact)

    @strawberry.mutation(
        description="Ask the shop to cancel a subscription: stamps cancelRequestedAt, logs "
        "SUBSCRIPTION_CANCEL_REQUESTED with the key's name and the reason (at most 1000 "
        "characters) and sends the event SUBSCRIPTION_CANCEL_REQUESTED to the shop's endpoints. "
        "It does not stop billing: the shop cancels and reports CANCELED. Asking again is the "
        "same request; an ended contract cannot be asked for (NOT_ALLOWED)."
    )
    async def subscription_contract_cancel(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> SubscriptionContractPayload:
        ctx = info.context
        try:
            contract, _ = await request_cancel(
                ctx.database,
                ctx.shop_id,
                decode_id(id, "SubscriptionContract"),
                reason,
                ctx.key.name,
            )
        except Refused as refusal:
            return SubscriptionContractPayload.refused(refusal)
        return _payload(info, contract)


NODE_RESOLVERS["SubscriptionContract"] = load_subscription_contract
