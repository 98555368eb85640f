"""Merging duplicate contacts into one, all or nothing.

The target keeps its email and its details, filling only the gaps from the
sources (in the order given). Everything else moves to it: orders and
subscription contracts (their `contactId`; `activeSubscriptionCount` and
`isMember` counted afresh over them), messages, the activity log (embedded
entries interleaved by time; archive buckets re-pointed, so a page reads
across all of them),
labels (the union; each label's count drops by the duplicates it loses),
marketing consent (the histories merged by time; the state is that of the
newest event) and the order statistics (re-derived from the orders now on
the target). The sources are deleted and a CONTACTS_MERGED entry names
their emails; their ids stay on the target (`mergedIds`), so the links in
e-mail sent to them (unsubscribe) still reach the person.

Everything happens in one MongoDB transaction: a failure anywhere leaves
every contact, order, bucket, message and label count as it was, and a
concurrent write to any of these documents makes the transaction retry
from a fresh read (snapshot isolation).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from loaders.contacts import label_key
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.contact_events import contacts_merged
from resolvers.contacts import derived_fields, set_or_unset
from resolvers.errors import Problem, Refused
from resolvers.order_stats import COUNTED
from resolvers.subscription_record import subscription_summary

MAX_SOURCES = 10
FILLED_DETAILS = ("firstName", "lastName", "phone", "company", "billingAddress")


@dataclass(frozen=True)
class MergeRequest:
    """Decoded ids: None where a client's id was malformed."""

    target_id: ObjectId | None
    source_ids: list[ObjectId | None]


def _check_ids(request: MergeRequest) -> tuple[list[ObjectId], list[Problem]]:
    """(distinct source ids, problems of the ids themselves); Refused at once when reading is pointless."""
    problems: list[Problem] = []
    if request.target_id is None:
        problems.append(Problem(("targetId",), "Contact not found.", "NOT_FOUND"))
    if not request.source_ids:
        raise Refused(
            [
                Problem(
                    ("sourceIds",),
                    "Name at least one contact to merge into the target.",
                    "REQUIRED",
                )
            ]
        )
    sources: list[ObjectId] = []
    for index, oid in enumerate(request.source_ids):
        if oid is None:
            problems.append(Problem(("sourceIds", index), "Contact not found.", "NOT_FOUND"))
        elif oid == request.target_id:
            problems.append(
                Problem(("sourceIds", index), "A contact cannot be merged into itself.", "INVALID")
            )
        elif oid not in sources:
            sources.append(oid)
    if len(sources) > MAX_SOURCES:
        raise Refused(
            [
                Problem(
                    ("sourceIds",), f"At most {MAX_SOURCES} contacts per merge.", "LIMIT_EXCEEDED"
                )
            ]
        )
    return sources, problems


async def _read(
    database: Database,
    shop_id: str,
    request: MergeRequest,
    checked: tuple[list[ObjectId], list[Problem]],
    session: Any = None,
) -> tuple[Doc, list[Doc]]:
    """The target and the sources in full; Refused with every problem, unknown ids included."""
    sources, problems = checked
    wanted = [oid for oid in (request.target_id, *sources) if oid is not None]
    docs = await database.contacts.find(
        {"shopId": shop_id, "_id": {"$in": wanted}}, session=session
    ).to_list()
    found = {doc["_id"]: doc for doc in docs}
    problems = list(problems)
    if request.target_id is not None and request.target_id not in found:
        problems.append(Problem(("targetId",), "Contact not found.", "NOT_FOUND"))
    for index, oid in enumerate(request.source_ids):
        if oid is not None and oid != request.target_id and oid not in found:
            problems.append(Problem(("sourceIds", index), "Contact not found.", "NOT_FOUND"))
    if problems:
        raise Refused(problems)
    assert request.target_id is not None
    return found[request.target_id], [found[oid] for oid in sources]


async def _order_stats(
    database: Database, shop_id: str, contact_ids: list[ObjectId], session: Any = None
) -> Doc:
    """The statistics of these contacts' orders taken together, straight from the orders."""
    rows = await (
        await database.orders.aggregate(
            [
                {
                    "$match": {
                        "shopId": shop_id,
                        "contactId": {"$in": contact_ids},
                        "status": {"$in": list(COUNTED)},
                    }
                },
                {
                    "$group": {
                        "_id": None,
                        "count": {"$sum": 1},
                        "spent": {"$sum": "$total"},
                        "first": {"$min": "$placedAt"},
                        "last": {"$max": "$placedAt"},
                    }
                },
            ],
            session=session,
        )
    ).to_list()
    row = rows[0] if rows else {}
    spent = row.get("spent")
    return {
        "orderCount": int(row.get("count") or 0),
        "totalSpent": spent if isinstance(spent, Decimal128) else Decimal128(Decimal(spent or 0)),
        "firstOrderAt": row.get("first"),
        "lastOrderAt": row.get("last"),
    }


def _labels(contacts: list[Doc]) -> tuple[list[str], list[str], dict[str, int]]:
    """(names, keys, count change per key): the union, first spelling kept, target first."""
    names: dict[str, str] = {}
    holders: Counter[str] = Counter()
    for doc in contacts:
        keys = doc.get("labelKeys") or [label_key(n) for n in doc.get("labels") or []]
        for name, key in zip(doc.get("labels") or [], keys, strict=False):
            names.setdefault(key, name)
        holders.update(set(keys))
    # The merged contact holds each label once, where `holders` contacts held it.
    deltas = {key: 1 - count for key, count in holders.items() if count != 1}
    return list(names.values()), list(names), deltas


def _consent(target: Doc, contacts: list[Doc]) -> Doc:
    history = sorted(
        (event for doc in contacts for event in ((doc.get("consent") or {}).get("history") or [])),
        key=lambda e: e["at"],
    )
    if not history:
        return target.get("consent") or {"state": "NOT_SUBSCRIBED", "history": []}
    # Of events at the same moment, the first listed wins: the target's.
    newest = max(history, key=lambda e: e["at"])
    return {
        "state": newest["state"],
        "optInLevel": newest.get("optInLevel"),
        "at": newest["at"],
        "source": newest.get("source"),
        "history": history,
    }


def _shipping(target: Doc, sources: list[Doc]) -> tuple[Any, Any]:
    """(shippingAddress, shipAt): the target's when its details are locked, else the newest shipped-to."""
    if target.get("detailsLocked") and target.get("shippingAddress"):
        return target.get("shippingAddress"), target.get("shipAt")
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    candidates = [doc for doc in (target, *sources) if doc.get("shippingAddress")]
    if not candidates:
        return None, None
    best = max(candidates, key=lambda doc: doc.get("shipAt") or floor)  # ties: the earliest listed
    return best["shippingAddress"], best.get("shipAt")


def _merged_ids(target: Doc, sources: list[Doc]) -> list[ObjectId]:
    ids: list[ObjectId] = list(target.get("mergedIds") or [])
    for doc in sources:
        for oid in (doc["_id"], *(doc.get("mergedIds") or [])):
            if oid not in ids:
                ids.append(oid)
    return ids


@dataclass
class MergePlan:
    contact: Doc  # the target as it will be
    set_fields: Doc
    overflow: list[list[Doc]]  # entries that go to new archive buckets, bucket by bucket
    label_deltas: dict[str, int]
    source_ids: list[ObjectId]


def plan_merge(
    target: Doc, sources: list[Doc], stats: Doc, author: str | None, at: dt.datetime
) -> MergePlan:
    """What the merged target looks like; pure, so the preview and the merge agree."""
    contacts = [target, *sources]
    merged_entry = activity.entry(
        "CONTACTS_MERGED",
        text="Merged into this contact: " + ", ".join(doc["email"] for doc in sources),
        author=author,
        at=at,
    )
    entries = [e for doc in contacts for e in doc.get("activity") or []] + [merged_entry]
    entries.sort(key=activity.sort_key, reverse=True)
    embedded, rest = entries[: activity.EMBEDDED_KEEP], entries[activity.EMBEDDED_KEEP :]
    overflow = [
        rest[i : i + activity.BUCKET_SIZE] for i in range(0, len(rest), activity.BUCKET_SIZE)
    ]
    archived_kinds: Counter[str] = Counter(e["kind"] for e in rest)
    archived_at = [e["at"] for e in rest[:1]]
    for doc in contacts:
        archived_kinds.update(
            {k: int(n) for k, n in (doc.get("activityArchivedKinds") or {}).items()}
        )
        if doc.get("activityArchivedAt") is not None:
            archived_at.append(doc["activityArchivedAt"])
    labels, keys, deltas = _labels(contacts)
    shipping, ship_at = _shipping(target, sources)
    fields: Doc = {
        "kind": "CUSTOMER"
        if any(doc.get("kind") == "CUSTOMER" for doc in contacts)
        else target.get("kind", "LEAD"),
        "hasAccount": any(bool(doc.get("hasAccount")) for doc in contacts),
        "labels": labels,
        "labelKeys": keys,
        "consent": _consent(target, contacts),
        **stats,
        "shippingAddress": shipping,
        "shipAt": ship_at,
        "createdAt": min(doc["createdAt"] for doc in contacts),
        "updatedAt": at,
        "activity": embedded,
        "activityEmbedded": len(embedded),
        "activityCount": sum(int(doc.get("activityCount") or 0) for doc in contacts) + 1,
        "activityArchived": sum(int(doc.get("activityArchived") or 0) for doc in contacts)
        + len(rest),
        "activityArchivedKinds": dict(archived_kinds),
        "activityArchivedAt": max(archived_at) if archived_at else None,
        # The ids merged away (and those they had absorbed): links in e-mail
        # sent to them, such as unsubscribe links, find the person here.
        "mergedIds": _merged_ids(target, sources),
    }
    for name in FILLED_DETAILS:
        if target.get(name) in (None, "", {}):
            fields[name] = next(
                (doc[name] for doc in sources if doc.get(name) not in (None, "", {})),
                target.get(name),
            )
    contact = {**target, **fields}
    fields.update(derived_fields(contact))
    contact.update(fields)
    return MergePlan(contact, fields, overflow, deltas, [doc["_id"] for doc in sources])


async def preview_merge(
    database: Database, shop_id: str, request: MergeRequest, author: str | None
) -> Doc:
    """The target as `merge_contacts` would leave it; writes nothing."""
    checked = _check_ids(request)
    target, source_docs = await _read(database, shop_id, request, checked)
    stats = await _order_stats(database, shop_id, [target["_id"], *checked[0]])
    stats.update(await subscription_summary(database, shop_id, [target["_id"], *checked[0]]))
    return plan_merge(target, source_docs, stats, author, now()).contact


async def _move_related(database: Database, shop_id: str, plan: MergePlan, session: Any) -> None:
    """Orders, messages, archive buckets and contracts of the sources now belong to the target."""
    target_id = plan.contact["_id"]
    for collection in (
        database.orders,
        database.messages,
        database.activity_archive,
        database.subscription_contracts,
    ):
        await collection.update_many(
            {"shopId": shop_id, "contactId": {"$in": plan.source_ids}},
            {"$set": {"contactId": target_id}},
            session=session,
        )


async def _write_target(database: Database, shop_id: str, plan: MergePlan, session: Any) -> None:
    target_id = plan.contact["_id"]
    if plan.overflow:
        await database.activity_archive.insert_many(
            [activity.bucket_of(shop_id, target_id, chunk) for chunk in plan.overflow],
            session=session,
        )
    result = await database.contacts.update_one(
        {"shopId": shop_id, "_id": target_id},
        # Order times of contacts without counted orders go, never null (BOUND_FIELDS).
        {**set_or_unset(plan.set_fields), "$inc": {"rev": 1, "orderRev": 1}},
        session=session,
    )
    if result.matched_count != 1:
        raise RuntimeError("the merge target disappeared inside its transaction")


async def _delete_sources(database: Database, shop_id: str, plan: MergePlan, session: Any) -> None:
    result = await database.contacts.delete_many(
        {"shopId": shop_id, "_id": {"$in": plan.source_ids}}, session=session
    )
    if result.deleted_count != len(plan.source_ids):
        raise RuntimeError("a merge source disappeared inside its transaction")


async def _adjust_label_counts(
    database: Database, shop_id: str, plan: MergePlan, session: Any
) -> None:
    for key, delta in plan.label_deltas.items():
        await database.labels.update_one(
            {"shopId": shop_id, "key": key}, {"$inc": {"contactCount": delta}}, session=session
        )


async def merge_contacts(
    database: Database, shop_id: str, request: MergeRequest, author: str | None
) -> Doc:
    """Merge the sources into the target in one transaction; the target as written.

    Refused (nothing written) when an id is malformed, unknown, repeated as
    the target, or there are too many.
    """
    checked = _check_ids(request)

    async def work(session: Any) -> Doc:
        target, source_docs = await _read(database, shop_id, request, checked, session)
        stats = await _order_stats(database, shop_id, [target["_id"], *checked[0]], session)
        # The sources' contracts count on the target once moved: counted over all of them.
        stats.update(
            await subscription_summary(database, shop_id, [target["_id"], *checked[0]], session)
        )
        plan = plan_merge(target, source_docs, stats, author, now())
        await _move_related(database, shop_id, plan, session)
        await _write_target(database, shop_id, plan, session)
        await _delete_sources(database, shop_id, plan, session)
        await _adjust_label_counts(database, shop_id, plan, session)
        await contacts_merged(
            database, shop_id, plan.contact, target["kind"], source_docs, session=session
        )
        return plan.contact

    return await activity.in_transaction(database, work)
