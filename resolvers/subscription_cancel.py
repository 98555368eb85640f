"""Asking the shop to cancel a subscription (`subscriptionContractCancel`).

contactgraph does not bill, so it cannot cancel: it records the request
(`cancelRequestedAt`, who asked and why), logs SUBSCRIPTION_CANCEL_REQUESTED
on the contact and emits the event SUBSCRIPTION_CANCEL_REQUESTED to the
shop's endpoints, all in one transaction. The shop cancels and reports the
contract CANCELED. Asking again while a request stands is the same request:
nothing is written, logged or sent twice.
"""

from __future__ import annotations

import base64
from typing import Any

from bson import ObjectId

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.contact_events import contact_gid
from resolvers.errors import Refused, not_found, refuse
from resolvers.events import emit
from resolvers.subscription_input import ENDED
from resolvers.validation import Checker

REASON_MAX = 1_000


def contract_gid(contract_id: ObjectId) -> str:
    """The contract's id as clients see it (graph.types.node.encode_id("SubscriptionContract", id))."""
    raw = f"SubscriptionContract:{contract_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def check_reason(reason: str | None) -> str | None:
    check = Checker()
    cleaned = check.text(("reason",), reason, REASON_MAX, multiline=True)
    if not check.ok:
        raise Refused(check.problems)
    return cleaned


async def request_cancel(
    database: Database,
    shop_id: str,
    contract_id: ObjectId | None,
    reason: str | None,
    author: str,
) -> tuple[Doc, Doc | None]:
    """(the contract as it now stands, the contact whose log grew or None).

    NOT_FOUND for a contract the shop does not have, NOT_ALLOWED for one
    that has ended; nothing written either way.
    """
    cleaned = check_reason(reason)
    if contract_id is None:
        raise not_found(("id",), "Subscription contract")

    async def work(session: Any) -> tuple[Doc, Doc | None]:
        contract = await database.subscription_contracts.find_one(
            {"shopId": shop_id, "_id": contract_id}, session=session
        )
        if contract is None:
            raise not_found(("id",), "Subscription contract")
        if contract["status"] in ENDED:
            raise refuse(
                ("id",),
                f"This subscription has already ended ({contract['status']}).",
                "NOT_ALLOWED",
            )
        if contract.get("cancelRequestedAt") is not None:
            return contract, None  # asked before: the same request
        at = now()
        sets = {
            "cancelRequestedAt": at,
            "cancelReason": cleaned,
            "cancelRequestedBy": author,
            "updatedAt": at,
        }
        await database.subscription_contracts.update_one(
            {"shopId": shop_id, "_id": contract_id}, {"$set": sets}, session=session
        )
        contract = {**contract, **sets}
        contact_id = contract.get("contactId")
        logged = None
        contact = None
        if contact_id is not None:
            contact = await database.contacts.find_one(
                {"shopId": shop_id, "_id": contact_id},
                {"_id": 1, "activityEmbedded": 1},
                session=session,
            )
        if contact is not None:
            text = contract["title"] + (f": {cleaned}" if cleaned else "")
            entry = activity.entry("SUBSCRIPTION_CANCEL_REQUESTED", text=text, author=author, at=at)
            entry["subscriptionContractId"] = contract_id
            await database.contacts.update_one(
                {"shopId": shop_id, "_id": contact_id},
                activity.merge_updates({"$set": {"updatedAt": at}}, activity.push([entry])),
                session=session,
            )
            logged = {
                "_id": contact_id,
                "activityEmbedded": (contact.get("activityEmbedded") or 0) + 1,
            }
        await emit(
            database,
            shop_id,
            "SUBSCRIPTION_CANCEL_REQUESTED",
            {
                "id": contract_gid(contract_id),
                "externalId": contract["externalId"],
                "contactId": contact_gid(contact["_id"]) if contact is not None else None,
                "reason": cleaned,
                "requestedBy": author,
                "requestedAt": at.isoformat(timespec="milliseconds"),
            },
            session=session,
            contact_id=contact_id if contact is not None else None,
        )
        return contract, logged

    contract, logged = await activity.in_transaction(database, work)
    await activity.spill_overflow(database, shop_id, logged)
    return contract, logged
