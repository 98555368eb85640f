"""Contacts: create by hand, edit (which locks details), unlock, delete."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bson import Decimal128, ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from loaders.contact_search import name_key, search_terms
from loaders.contacts import label_key
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.contact_events import contacts_created, contacts_deleted
from resolvers.duplicates import canonical_email
from resolvers.errors import Problem, Refused, not_found, refuse
from resolvers.events import contact_gid, emit
from resolvers.labels import add_label_counts, normalize_labels, reserve_labels
from resolvers.validation import COMPANY_MAX, NAME_MAX, Checker

UNSET: Any = object()  # "not given", as opposed to None ("clear it")

DETAIL_FIELDS = ("firstName", "lastName", "phone", "company", "shippingAddress", "billingAddress")

# Fields kept by `$min` / `$max`: stored only once they have a value, never
# as null. BSON orders null below every date, so `$min` against a stored
# null keeps the null (a lead's first order would never set firstOrderAt).
BOUND_FIELDS = ("firstOrderAt", "lastOrderAt", "activityArchivedAt")


def set_or_unset(fields: dict[str, Any]) -> dict[str, Any]:
    """`$set` for these fields, with `$unset` instead for bound fields that are None."""
    gone = {name: "" for name in BOUND_FIELDS if name in fields and fields[name] is None}
    update: dict[str, Any] = {"$set": {k: v for k, v in fields.items() if k not in gone}}
    if gone:
        update["$unset"] = gone
    return update


@dataclass
class ContactDetails:
    """What a client sends to create or edit a contact; UNSET where it sent nothing."""

    email: Any = UNSET
    first_name: Any = UNSET
    last_name: Any = UNSET
    phone: Any = UNSET
    company: Any = UNSET
    shipping_address: Any = UNSET
    billing_address: Any = UNSET
    labels: Any = UNSET


@dataclass
class CheckedDetails:
    set: dict[str, Any] = field(default_factory=dict)
    email_key: str | None = None
    labels: list[str] = field(default_factory=list)


def check_details(
    details: ContactDetails, *, creating: bool, stored_region: str | None = None
) -> CheckedDetails:
    """Validate every field the client sent; Refused with all problems at once.

    A national phone number is read in the country of the address sent with
    it, else in `stored_region` (the country of the contact's stored address).
    """
    check = Checker()
    out = CheckedDetails()
    prefix = ("input",)
    if details.email is not UNSET or creating:
        email = None if details.email is UNSET else details.email
        checked = check.email((*prefix, "email"), email, required=True)
        if checked:
            out.set["email"], out.email_key = checked
    for name, key, limit in (
        ("first_name", "firstName", NAME_MAX),
        ("last_name", "lastName", NAME_MAX),
        ("company", "company", COMPANY_MAX),
    ):
        value = getattr(details, name)
        if value is not UNSET:
            out.set[key] = check.text((*prefix, key), value, limit)
    for name, key in (
        ("shipping_address", "shippingAddress"),
        ("billing_address", "billingAddress"),
    ):
        value = getattr(details, name)
        if value is not UNSET:
            out.set[key] = check.address((*prefix, key), value)
    if details.phone is not UNSET:
        region = (
            _region(out.set.get("shippingAddress"))
            or _region(out.set.get("billingAddress"))
            or stored_region
        )
        out.set["phone"] = check.phone((*prefix, "phone"), details.phone, region)
    if details.labels is not UNSET and details.labels is not None:
        if creating:
            out.labels = normalize_labels(check, (*prefix, "labels"), details.labels)
        else:
            check.add(
                (*prefix, "labels"), "Labels change with labelsAdd and labelsRemove.", "INVALID"
            )
    if not check.ok:
        raise Refused(check.problems)
    return out


def _region(address: dict[str, Any] | None) -> str | None:
    return (address or {}).get("countryCode")


def derived_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """Fields computed from a contact's details, kept in the document for sorting, search and duplicates."""
    fields = {"nameKey": name_key(doc), "searchTerms": search_terms(doc)}
    if doc.get("emailKey"):
        fields["emailCanon"] = canonical_email(doc["emailKey"])
    return fields


def new_contact(
    shop_id: str,
    email: str,
    email_key: str,
    kind: str,
    details: dict[str, Any],
    at: dt.datetime,
    *,
    labels: list[str] | None = None,
    entries: list[dict[str, Any]] | None = None,
) -> Doc:
    labels = labels or []
    # In write order, as later writes append (resolvers/activity.py).
    log = sorted(entries or [], key=activity.sort_key)
    doc: Doc = {
        "_id": ObjectId(),
        "shopId": shop_id,
        "email": email,
        "emailKey": email_key,
        "firstName": None,
        "lastName": None,
        "phone": None,
        "company": None,
        "shippingAddress": None,
        "billingAddress": None,
        "kind": kind,
        "labels": labels,
        "labelKeys": [label_key(label) for label in labels],
        "hasAccount": False,
        "detailsLocked": False,
        "consent": {"state": "NOT_SUBSCRIBED", "history": []},
        "orderCount": 0,
        "totalSpent": Decimal128("0"),
        # No firstOrderAt / lastOrderAt until there is an order: see BOUND_FIELDS.
        "createdAt": at,
        "updatedAt": at,
        "rev": 0,
        "activity": log,
        "activityCount": len(log),
        "activityEmbedded": len(log),
    }
    doc.update(details)
    doc.update(derived_fields(doc))
    return doc


async def create_contact(
    database: Database, shop_id: str, details: ContactDetails, author: str
) -> Doc:
    """A LEAD made by hand; only the email is required. TAKEN when the email is in use."""
    checked = check_details(details, creating=True)
    at = now()
    email = checked.set.pop("email")
    assert checked.email_key is not None
    doc = new_contact(
        shop_id,
        email,
        checked.email_key,
        "LEAD",
        checked.set,
        at,
        labels=checked.labels,
        entries=[activity.entry("CONTACT_CREATED", author=author, at=at)],
    )
    # The unique index on (shopId, emailKey) decides; this look only spares
    # reserving label slots for a create that is bound to fail.
    if checked.labels and await database.contacts.count_documents(
        {"shopId": shop_id, "emailKey": checked.email_key}, limit=1
    ):
        raise _taken()
    try:
        created_labels = await reserve_labels(database, shop_id, checked.labels)
    except Refused as refusal:
        # The shop's label limit, reported where this input holds the labels.
        problems = [Problem(("input", "labels"), p.message, p.code) for p in refusal.problems]
        raise Refused(problems) from None
    # A label the shop already has keeps the shop's first spelling.
    doc["labels"] = [created_labels.names.get(label_key(name), name) for name in doc["labels"]]

    async def work(session: Any) -> None:
        await database.contacts.insert_one(doc, session=session)
        await contacts_created(database, shop_id, [doc], session=session)

    try:
        await activity.in_transaction(database, work)
    except DuplicateKeyError:
        await created_labels.release()
        raise _taken() from None
    await add_label_counts(database, shop_id, doc["labelKeys"], 1)
    return doc


def _taken() -> Refused:
    return refuse(("input", "email"), "Another contact already has this email.", "TAKEN")


async def update_details(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    changes: dict[str, Any],
    extra_update: dict[str, Any] | None = None,
    *,
    only_if_unlocked: bool = False,
    session: Any = None,
) -> Doc | None:
    """Apply detail changes with a compare-and-set on `rev`, recomputing derived fields.

    Derived fields (name sort key, search terms) depend on several details
    at once, so the write carries the revision it was computed from and is
    retried when another write got there first. None when the contact is gone.
    """
    for _ in range(20):
        current = await database.contacts.find_one(
            {"shopId": shop_id, "_id": contact_id}, {"activity": 0}, session=session
        )
        if current is None:
            return None
        merged = {**current, **changes}
        # _id first: the embedded server then answers by the _id index instead
        # of scanning (real MongoDB plans the same either way). A contact
        # stored without a revision matches `rev: None` (a missing field),
        # never `rev: 0`, and gets its first one from the `$inc`.
        conditions: Doc = {"_id": contact_id, "shopId": shop_id, "rev": current.get("rev")}
        if only_if_unlocked:
            conditions["detailsLocked"] = {"$ne": True}
        update = activity.merge_updates(
            {"$set": {**changes, **derived_fields(merged), "updatedAt": now()}, "$inc": {"rev": 1}},
            extra_update or {},
        )
        try:
            result = await database.contacts.find_one_and_update(
                conditions,
                update,
                projection={"activity": 0},
                return_document=ReturnDocument.AFTER,
                session=session,
            )
        except DuplicateKeyError:
            raise _taken() from None
        if result is not None:
            return result
        if only_if_unlocked and current.get("detailsLocked"):
            return None
        await asyncio.sleep(0)
    raise RuntimeError("contact kept changing while it was being updated")


async def edit_contact(
    database: Database, shop_id: str, contact_id: ObjectId, details: ContactDetails, author: str
) -> Doc:
    """A manual edit: the details change and lock, so later orders no longer overwrite them."""
    stored_region = None
    if isinstance(details.phone, str):
        stored = await database.contacts.find_one(
            {"shopId": shop_id, "_id": contact_id},
            {"shippingAddress.countryCode": 1, "billingAddress.countryCode": 1},
        )
        if stored is not None:
            stored_region = _region(stored.get("shippingAddress")) or _region(
                stored.get("billingAddress")
            )
    checked = check_details(details, creating=False, stored_region=stored_region)
    changes = dict(checked.set)
    if checked.email_key is not None:
        changes["emailKey"] = checked.email_key
    changes["detailsLocked"] = True

    async def work(session: Any) -> Doc | None:
        # The contact before and after, in one transaction with the event naming what changed.
        log = activity.push([activity.entry("DETAILS_UPDATED", author=author)])
        before = await database.contacts.find_one(
            {"_id": contact_id, "shopId": shop_id}, UPDATED_PROJECTION, session=session
        )
        doc = await update_details(database, shop_id, contact_id, changes, log, session=session)
        if doc is not None and before is not None:
            await contact_updated(database, shop_id, before, doc, session=session)
        return doc

    doc = await activity.in_transaction(database, work)
    if doc is None:
        raise not_found(("id",))
    await activity.spill_overflow(database, shop_id, doc)
    return doc


# What CONTACT_UPDATED reports of a manual edit (the API's names).
_UPDATED_FIELDS = ("email", *DETAIL_FIELDS, "detailsLocked")
UPDATED_PROJECTION = {name: 1 for name in _UPDATED_FIELDS}


async def contact_updated(
    database: Database, shop_id: str, before: Doc, after: Doc, *, session: Any
) -> None:
    """CONTACT_UPDATED with the fields that really changed; nothing when none did."""
    changed = {
        name: after.get(name)
        for name in _UPDATED_FIELDS
        if (before.get(name) or None) != (after.get(name) or None)
    }
    if changed:
        await emit(
            database,
            shop_id,
            "CONTACT_UPDATED",
            {"id": contact_gid(after["_id"]), **changed},
            session=session,
            contact_id=after["_id"],
        )


async def unlock_contact(database: Database, shop_id: str, contact_id: ObjectId) -> Doc:
    async def work(session: Any) -> Doc | None:
        at = now()
        before = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "_id": contact_id},
            {"$set": {"detailsLocked": False, "updatedAt": at}},
            projection={"activity": 0},
            return_document=ReturnDocument.BEFORE,
            session=session,
        )
        if before is None:
            return None
        after = {**before, "detailsLocked": False, "updatedAt": at}
        await contact_updated(database, shop_id, before, after, session=session)
        return after

    doc = await activity.in_transaction(database, work)
    if doc is None:
        raise not_found(("id",))
    return doc


async def delete_contacts(
    database: Database, shop_id: str, ids: list[tuple[int, ObjectId | None]]
) -> tuple[list[ObjectId], list[Problem]]:
    """Delete the contacts that exist; report the others as NOT_FOUND without stopping.

    Orders and subscription contracts stay for the books, unlinked from the person.
    """
    wanted = [oid for _, oid in ids if oid is not None]

    async def work(session: Any) -> list[Doc]:
        # In one transaction: the label counts drop exactly for the contacts
        # deleted (a concurrent change to one of them is a write conflict and
        # the whole runs again), and a failure leaves everything as it was.
        found = await database.contacts.find(
            {"shopId": shop_id, "_id": {"$in": wanted}},
            {"_id": 1, "labelKeys": 1, "kind": 1, "email": 1},
            batch_size=len(wanted) + 1,  # all in the first reply: 250 ids cost no getMore
            session=session,
        ).to_list()
        if not found:
            return found
        gone = [doc["_id"] for doc in found]
        await database.contacts.delete_many(
            {"shopId": shop_id, "_id": {"$in": gone}}, session=session
        )
        drops = Counter(key for doc in found for key in doc.get("labelKeys") or [])
        if drops:
            await database.labels.bulk_write(
                [
                    UpdateOne({"shopId": shop_id, "key": key}, {"$inc": {"contactCount": -n}})
                    for key, n in drops.items()
                ],
                ordered=False,
                session=session,
            )
        for kept in (database.orders, database.subscription_contracts):
            await kept.update_many(
                {"shopId": shop_id, "contactId": {"$in": gone}},
                {"$set": {"contactId": None}},
                session=session,
            )
        await database.activity_archive.delete_many(
            {"shopId": shop_id, "contactId": {"$in": gone}}, session=session
        )
        await contacts_deleted(database, shop_id, found, session=session)
        return found

    found = await activity.in_transaction(database, work) if wanted else []
    gone = {doc["_id"] for doc in found}
    problems = [
        Problem(("ids", index), "Contact not found.", "NOT_FOUND")
        for index, oid in ids
        if oid is None or oid not in gone
    ]
    ordered = [oid for _, oid in ids if oid is not None and oid in gone]
    return list(dict.fromkeys(ordered)), problems
