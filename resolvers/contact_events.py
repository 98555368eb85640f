"""What adding and removing contacts tells the counters and the shop's endpoints, in the write's transaction.

Every write that makes, deletes, merges away or erases a contact calls one of
these inside its own transaction: the shop's contact counters
(resolvers.contact_counts) change and the outbound event
(resolvers.events) is recorded together with the write, or not at all.

An event's data carries the contact's id in the API's global-id form and
the fields the change set; never notes, activity or consent history.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from bson import ObjectId

from loaders.mongo import Database, Doc
from resolvers.contact_counts import count_contacts, kind_change
from resolvers.events import contact_gid, emit, emit_many, event_body

# A new contact's fields an event names (API names), when they hold a value.
CREATED_FIELDS = (
    "email",
    "kind",
    "firstName",
    "lastName",
    "phone",
    "company",
    "shippingAddress",
    "billingAddress",
    "labels",
    "hasAccount",
)


def created_data(doc: Doc) -> dict[str, Any]:
    data: dict[str, Any] = {"id": contact_gid(doc["_id"])}
    for name in CREATED_FIELDS:
        value = doc.get(name)
        if value not in (None, "", [], {}):
            data[name] = value
    data["createdAt"] = doc.get("createdAt")
    return data


async def contacts_created(
    database: Database, shop_id: str, docs: Iterable[Doc], *, session: Any
) -> None:
    """New contacts, as inserted: counted and a CONTACT_CREATED each."""
    docs = list(docs)
    if not docs:
        return
    await count_contacts(database, shop_id, Counter(doc["kind"] for doc in docs), session=session)
    await emit_many(
        database,
        shop_id,
        "CONTACT_CREATED",
        [(doc["_id"], created_data(doc)) for doc in docs],
        session=session,
    )


async def contacts_deleted(
    database: Database, shop_id: str, docs: Iterable[Doc], *, session: Any
) -> None:
    """Deleted contacts (each with `_id`, `kind`, `email`): uncounted and a CONTACT_DELETED each."""
    docs = list(docs)
    if not docs:
        return
    await count_contacts(database, shop_id, _minus(docs), session=session)
    await emit_many(
        database,
        shop_id,
        "CONTACT_DELETED",
        [(doc["_id"], {"id": contact_gid(doc["_id"]), "email": doc.get("email")}) for doc in docs],
        session=session,
    )


def _minus(docs: list[Doc]) -> dict[str, int]:
    counts: Counter[str] = Counter(doc["kind"] for doc in docs)
    return {kind: -n for kind, n in counts.items()}


async def contact_erased(database: Database, shop_id: str, doc: Doc, *, session: Any) -> None:
    """An erased contact: uncounted, and a CONTACT_ERASED that names nothing but its id.

    The person's earlier events (and their deliveries, sent or still to
    send) keep only the contact's id too: what they said about the person
    (an e-mail, a name) is erased with the rest.
    """
    gid = contact_gid(doc["_id"])
    of_contact = {"shopId": shop_id, "contactId": doc["_id"]}
    await database.events.update_many(of_contact, {"$set": {"data": {"id": gid}}}, session=session)
    async for delivery in database.webhook_deliveries.find(
        of_contact, {"type": 1, "seq": 1}, session=session
    ):
        await database.webhook_deliveries.update_one(
            {"_id": delivery["_id"], "shopId": shop_id},
            {"$set": {"body": event_body(delivery["type"], delivery["seq"], {"id": gid})}},
            session=session,
        )
    await count_contacts(database, shop_id, {doc["kind"]: -1}, session=session)
    await emit(
        database,
        shop_id,
        "CONTACT_ERASED",
        {"id": gid},
        session=session,
        contact_id=doc["_id"],
    )


async def contacts_merged(
    database: Database, shop_id: str, survivor: Doc, before: str, merged: list[Doc], *, session: Any
) -> None:
    """`merged` went into `survivor` (its kind `before` the merge, `survivor["kind"]` after)."""
    deltas: Counter[str] = Counter(kind_change(before, survivor["kind"]))
    deltas.update(_minus(merged))
    await count_contacts(database, shop_id, deltas, session=session)
    await emit(
        database,
        shop_id,
        "CONTACT_MERGED",
        {
            "id": contact_gid(survivor["_id"]),
            "mergedIds": [contact_gid(doc["_id"]) for doc in merged],
            "kind": survivor["kind"],
        },
        session=session,
        contact_id=survivor["_id"],
    )


async def contact_changed(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    before: str | None,
    changed: dict[str, Any],
    *,
    session: Any,
) -> None:
    """A contact some write changed, not by hand (an order landing on it, a draft).

    `changed` holds the fields (API names) the write changed, `kind` among
    them when it went from `before` to another (a lead's first order): then
    the counters follow. One CONTACT_UPDATED names them all; nothing when
    `changed` is empty.
    """
    if not changed:
        return
    if "kind" in changed:
        deltas = kind_change(before, changed["kind"])
        await count_contacts(database, shop_id, deltas, session=session)
    await emit(
        database,
        shop_id,
        "CONTACT_UPDATED",
        {"id": contact_gid(contact_id), **changed},
        session=session,
        contact_id=contact_id,
    )
