"""Labels: normalization, the shop's limit of 250 distinct labels, exact counts, and changes.

A label document `{shopId, key, name, contactCount, createdAt}` exists for
every label in use; `key` is the case-folded identity, `name` the first
spelling, which is the spelling every contact shows. The shop's
`labelCount` holds the slots reserved for label documents.

How counts stay exact: a contact's labels change only by a compare-and-set
on the contact (its `labels` and `labelKeys` exactly as read), so each
change to a contact happens once; the counts then move by exactly the
changes that succeeded. A label deleted (or renamed away) while a call adds
it to contacts makes that call take it off those contacts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from loaders.contacts import LIST_PROJECTION, label_key
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.errors import Field, Problem, Refused, not_found, refuse
from resolvers.events import contact_gid, emit_many
from resolvers.segments import follow_label_rename
from resolvers.validation import LABEL_MAX, Checker

SHOP_LABEL_LIMIT = 250
MAX_CONTACTS = 250
MAX_LABELS_PER_CALL = SHOP_LABEL_LIMIT
BATCH = 500
# How long a call waits for another call that is creating labels it may share.
RESERVE_WAIT_SECONDS = 2.0
ROUNDS = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What a label change reads of a contact.
_LABEL_FIELDS = {"labels": 1, "labelKeys": 1, "activityEmbedded": 1}


def normalize_label(check: Checker, field_path: Field, raw: str) -> str | None:
    """Trimmed, inner whitespace collapsed, 1..100 characters, no control characters."""
    if _CONTROL.search(raw):
        check.add(field_path, "A label must not contain control characters.", "INVALID")
        return None
    name = " ".join(raw.split())
    if not name:
        check.add(field_path, "A label must not be empty.", "REQUIRED")
        return None
    if len(name) > LABEL_MAX:
        check.add(field_path, f"A label is at most {LABEL_MAX} characters.", "TOO_LONG")
        return None
    return name


def normalize_labels(check: Checker, field_path: Field, raws: Iterable[str]) -> list[str]:
    """Distinct labels (case-insensitive, first spelling kept) in the order given."""
    names: dict[str, str] = {}
    for index, raw in enumerate(raws):
        name = normalize_label(check, (*field_path, index), raw)
        if name is not None:
            names.setdefault(label_key(name), name)
    return list(names.values())


@dataclass
class CreatedLabels:
    """Labels a call created; released again when the call fails afterwards.

    `names` maps every reserved key to the spelling contacts must show: the
    existing label's first spelling, or the new label's own.
    """

    database: Database
    shop_id: str
    keys: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    async def release(self) -> None:
        for key in self.keys:
            result = await self.database.labels.delete_one(
                {"shopId": self.shop_id, "key": key, "contactCount": {"$lte": 0}}
            )
            if result.deleted_count:
                await self.database.shops.update_one(
                    {"_id": self.shop_id}, {"$inc": {"labelCount": -1}}
                )


async def _existing(database: Database, shop_id: str, keys: Iterable[str]) -> dict[str, Doc]:
    docs = await database.labels.find({"shopId": shop_id, "key": {"$in": list(keys)}}).to_list()
    return {doc["key"]: doc for doc in docs}


async def reserve_labels(database: Database, shop_id: str, names: list[str]) -> CreatedLabels:
    """Make sure the shop has these labels, creating the new ones within the limit.

    Slots are reserved atomically on the shop's `labelCount` first, so two
    calls racing for the last free slots can never together pass 250.
    LIMIT_EXCEEDED (and nothing changed) when the new labels do not fit.
    """
    created = CreatedLabels(database, shop_id)
    if not names:
        return created
    keys = {label_key(n): n for n in names}
    deadline = asyncio.get_running_loop().time() + RESERVE_WAIT_SECONDS
    while True:
        existing = await _existing(database, shop_id, keys)
        new = [k for k in keys if k not in existing]
        created.names = {k: existing[k]["name"] if k in existing else keys[k] for k in keys}
        if not new:
            return created
        reserved = await database.shops.update_one(
            {"_id": shop_id, "labelCount": {"$lte": SHOP_LABEL_LIMIT - len(new)}},
            {"$inc": {"labelCount": len(new)}},
        )
        if reserved.modified_count:
            break
        # Slots reserved by a call still creating its labels may be for these
        # very labels: once they exist, fewer slots are needed. Only a shop
        # whose every slot holds a label is really full.
        waited_enough = asyncio.get_running_loop().time() > deadline
        if waited_enough or not await _worth_waiting(database, shop_id, new):
            raise refuse(
                ("labels",),
                f"A shop can have at most {SHOP_LABEL_LIMIT} distinct labels.",
                "LIMIT_EXCEEDED",
            )
        await asyncio.sleep(0.01)
    at = now()
    docs = [
        {
            # Named here: after a failed insert, they tell which labels were written.
            "_id": ObjectId(),
            "shopId": shop_id,
            "key": k,
            "name": keys[k],
            "contactCount": 0,
            "createdAt": at,
        }
        for k in new
    ]
    taken: set[str] = set()
    try:
        await database.labels.insert_many(docs, ordered=False)
    except BulkWriteError as error:
        if any(e.get("code") != 11000 for e in error.details.get("writeErrors", [])):
            await _undo_reservation(created, docs)
            raise
        taken = {docs[e["index"]]["key"] for e in error.details["writeErrors"]}
    except PyMongoError:
        await _undo_reservation(created, docs)
        raise
    created.keys.extend(k for k in new if k not in taken)
    if taken:
        # Created meanwhile by another call: give the slots back, take its spelling.
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"labelCount": -len(taken)}})
        for key, doc in (await _existing(database, shop_id, taken)).items():
            created.names[key] = doc["name"]
    return created


async def _undo_reservation(created: CreatedLabels, docs: list[Doc]) -> None:
    """After an insert that failed for another reason than a race: no slot or empty label kept.

    Which labels were written is not known (the reply may be lost after the
    write): those found are released like any label the call made, the
    others' slots given back.
    """
    database = created.database
    # The failure of the insert is the one to report; this is tidying after it.
    with contextlib.suppress(PyMongoError):
        ids = [doc["_id"] for doc in docs]
        written = await database.labels.find({"_id": {"$in": ids}}, {"key": 1}).to_list()
        if len(written) < len(docs):
            await database.shops.update_one(
                {"_id": created.shop_id}, {"$inc": {"labelCount": len(written) - len(docs)}}
            )
        created.keys.extend(doc["key"] for doc in written)
        await created.release()


async def _worth_waiting(database: Database, shop_id: str, keys: list[str]) -> bool:
    """A call is between reserving slots and creating labels, or some of these exist by now."""
    # In this order: a creation that finishes between the two looks is seen by the second.
    shop = await database.shops.find_one({"_id": shop_id}, {"labelCount": 1})
    reserved = int((shop or {}).get("labelCount") or 0)
    if reserved > await database.labels.count_documents({"shopId": shop_id}):
        return True
    return (
        await database.labels.count_documents({"shopId": shop_id, "key": {"$in": keys}}, limit=1)
        > 0
    )


async def add_label_counts(
    database: Database, shop_id: str, keys: Iterable[str], delta: int
) -> None:
    keys = list(keys)
    if keys and delta:
        await database.labels.update_many(
            {"shopId": shop_id, "key": {"$in": keys}}, {"$inc": {"contactCount": delta}}
        )


# ---------------------------------------------------------------- changing contacts' labels


@dataclass(frozen=True)
class Change:
    """A contact's labels after a change, and what its log entry says."""

    labels: list[str]
    keys: list[str]
    text: str


Plan = Callable[[Doc], Change | None]


def add_remove_plan(add: dict[str, str], remove: set[str]) -> Plan:
    """Add labels (key -> spelling) a contact lacks, remove keys it has; None for no change."""

    def plan(doc: Doc) -> Change | None:
        pairs = list(zip(doc.get("labels") or [], doc.get("labelKeys") or [], strict=False))
        kept = [(n, k) for n, k in pairs if k not in remove]
        removed = [n for n, k in pairs if k in remove]
        have = {k for _, k in kept}
        added = [(n, k) for k, n in add.items() if k not in have]
        if not added and not removed:
            return None
        after = kept + added
        return Change(
            [n for n, _ in after], [k for _, k in after], _describe([n for n, _ in added], removed)
        )

    return plan


def _describe(added: list[str], removed: list[str]) -> str:
    parts = []
    if added:
        parts.append("Labels added: " + ", ".join(added))
    if removed:
        parts.append(("removed: " if added else "Labels removed: ") + ", ".join(removed))
    return "; ".join(parts)


@dataclass
class Outcome:
    modified: list[ObjectId] = field(default_factory=list)
    deltas: Counter[str] = field(default_factory=Counter)
    added: dict[str, list[ObjectId]] = field(default_factory=dict)  # key -> contacts that gained it


async def change_labels(
    database: Database, shop_id: str, contacts: list[Doc], plan: Plan, author: str | None
) -> Outcome:
    """Apply `plan` to each contact with a compare-and-set; retry the ones that changed meanwhile.

    One bulk write per round; each update also logs LABELS_CHANGED. The
    label counts are then moved by exactly the changes that were made.
    """
    outcome = Outcome()
    pending = contacts
    latest = _by_id(contacts)

    def record(changes: dict[ObjectId, tuple[Doc, Change, Doc]], done: set[ObjectId]) -> None:
        for contact_id in done:
            doc, change, _ = changes[contact_id]
            before, after = set(doc.get("labelKeys") or []), set(change.keys)
            outcome.modified.append(contact_id)
            outcome.deltas.update({k: 1 for k in after - before})
            outcome.deltas.subtract({k: 1 for k in before - after})
            for key in after - before:
                outcome.added.setdefault(key, []).append(contact_id)

    def logged(changes: dict[ObjectId, tuple[Doc, Change, Doc]]) -> dict[ObjectId, ObjectId]:
        return {entry["_id"]: cid for cid, (_, _, entry) in changes.items()}

    # The counts move by what was written even when a round fails midway:
    # otherwise a label could keep contacts while its count says none.
    try:
        for _ in range(ROUNDS):
            changes: dict[ObjectId, tuple[Doc, Change, Doc]] = {}
            for doc in pending:
                change = plan(doc)
                if change is not None:
                    changes[doc["_id"]] = (
                        doc,
                        change,
                        activity.entry("LABELS_CHANGED", text=change.text, author=author),
                    )
            if not changes:
                break
            at = now()
            writes = [
                UpdateOne(
                    {
                        # `_id` first: the embedded server then looks it up by id.
                        "_id": contact_id,
                        "shopId": shop_id,
                        "labels": doc.get("labels") or [],
                        "labelKeys": doc.get("labelKeys") or [],
                    },
                    activity.merge_updates(
                        {
                            "$set": {
                                "labels": change.labels,
                                "labelKeys": change.keys,
                                "updatedAt": at,
                            }
                        },
                        activity.push([entry]),
                    ),
                )
                for contact_id, (doc, change, entry) in changes.items()
            ]

            async def work(
                session: Any,
                writes: list[UpdateOne] = writes,
                changes: dict[ObjectId, tuple[Doc, Change, Doc]] = changes,
            ) -> set[ObjectId]:
                # The labels and each changed contact's LABELS_CHANGED event, together.
                result = await database.contacts.bulk_write(writes, ordered=False, session=session)
                if result.modified_count == len(changes):
                    done = set(changes)
                else:
                    done = await _written(database, shop_id, logged(changes), session=session)
                await emit_many(
                    database,
                    shop_id,
                    "LABELS_CHANGED",
                    [
                        (cid, _labels_event(cid, doc, change))
                        for cid, (doc, change, _) in changes.items()
                        if cid in done
                    ],
                    session=session,
                )
                return done

            try:
                done = await activity.in_transaction(database, work)
            except PyMongoError:
                # A commit whose outcome stayed unknown may have landed: the entries tell.
                with contextlib.suppress(PyMongoError):
                    record(changes, await _written(database, shop_id, logged(changes)))
                raise
            record(changes, done)
            retry = [cid for cid in changes if cid not in done]
            if not retry:
                break
            pending = await database.contacts.find(
                {"shopId": shop_id, "_id": {"$in": retry}}, _LABEL_FIELDS
            ).to_list()
            latest.update(_by_id(pending))
    finally:
        await _move_counts(database, shop_id, outcome.deltas)
    # Each modified contact logged one entry more than it had when read.
    await asyncio.gather(
        *(
            activity.spill_overflow(
                database,
                shop_id,
                {"_id": cid, "activityEmbedded": (latest[cid].get("activityEmbedded") or 0) + 1},
            )
            for cid in outcome.modified
        )
    )
    return outcome


def _by_id(docs: list[Doc]) -> dict[ObjectId, Doc]:
    return {doc["_id"]: doc for doc in docs}


def _labels_event(contact_id: ObjectId, doc: Doc, change: Change) -> Doc:
    """LABELS_CHANGED's data: the contact's labels after the change, and what came and went."""
    before = dict(zip(doc.get("labelKeys") or [], doc.get("labels") or [], strict=False))
    after = set(change.keys)
    return {
        "id": contact_gid(contact_id),
        "labels": change.labels,
        "added": [n for n, k in zip(change.labels, change.keys, strict=True) if k not in before],
        "removed": [n for k, n in before.items() if k not in after],
    }


async def _written(
    database: Database,
    shop_id: str,
    entry_contacts: dict[ObjectId, ObjectId],
    *,
    session: Any = None,
) -> set[ObjectId]:
    """The contacts whose update went through: those that hold the entry it logged.

    Looked up through the contacts (by `_id`), as entries have no index of their own.
    """
    entry_ids = list(entry_contacts)
    contact_ids = list(set(entry_contacts.values()))
    done: set[ObjectId] = set()
    async for doc in database.contacts.find(
        # `_id` first: the embedded server then looks it up by id.
        {"_id": {"$in": contact_ids}, "shopId": shop_id, "activity._id": {"$in": entry_ids}},
        {"_id": 1},
        session=session,
    ):
        done.add(doc["_id"])
    if len(done) < len(entry_ids):
        # An entry may already have been archived by a busy contact's own spill.
        async for bucket in database.activity_archive.find(
            {
                "shopId": shop_id,
                "contactId": {"$in": [c for c in contact_ids if c not in done]},
                "entries._id": {"$in": entry_ids},
            },
            {"contactId": 1},
            session=session,
        ):
            done.add(bucket["contactId"])
    return done


async def _move_counts(database: Database, shop_id: str, deltas: Counter[str]) -> None:
    moves = {k: d for k, d in deltas.items() if d}
    if moves:
        await database.labels.bulk_write(
            [
                UpdateOne({"shopId": shop_id, "key": k}, {"$inc": {"contactCount": d}})
                for k, d in moves.items()
            ],
            ordered=False,
        )


async def _take_back_vanished(
    database: Database, shop_id: str, outcome: Outcome, author: str | None
) -> None:
    """Labels deleted or renamed while this call added them: take them off those contacts again."""
    if not outcome.added:
        return
    alive = await _existing(database, shop_id, outcome.added)
    gone = {k for k in outcome.added if k not in alive}
    if not gone:
        return
    ids = list({cid for k in gone for cid in outcome.added[k]})
    # In batches: a shop-wide change may have touched a million contacts, and
    # one `$in` of all their ids would pass MongoDB's 16 MB command limit.
    for start in range(0, len(ids), BATCH):
        docs = await database.contacts.find(
            {"shopId": shop_id, "_id": {"$in": ids[start : start + BATCH]}},
            _LABEL_FIELDS,
            batch_size=BATCH,
        ).to_list()
        await change_labels(database, shop_id, docs, add_remove_plan({}, gone), author)


# ---------------------------------------------------------------- the operations


def check_names(field_path: Field, raws: list[str] | None, *, required: bool) -> list[str]:
    check = Checker()
    names: list[str] = []
    if raws is None or not raws:
        if required:
            check.add(field_path, "Give at least one label.", "REQUIRED")
    elif len(raws) > MAX_LABELS_PER_CALL:
        check.add(field_path, f"At most {MAX_LABELS_PER_CALL} labels per call.", "LIMIT_EXCEEDED")
    else:
        names = normalize_labels(check, field_path, raws)
    if not check.ok:
        raise Refused(check.problems)
    return names


async def contacts_by_ids(
    database: Database, shop_id: str, ids: list[ObjectId | None], field_path: Field
) -> list[Doc]:
    """The contacts of explicit ids (distinct, in order); NOT_FOUND for every id that is not one."""
    if not ids:
        raise refuse(field_path, "Give at least one contact.", "REQUIRED")
    if len(ids) > MAX_CONTACTS:
        raise refuse(field_path, f"At most {MAX_CONTACTS} contacts per call.", "LIMIT_EXCEEDED")
    wanted = [i for i in ids if i is not None]
    found = _by_id(
        await database.contacts.find(
            {"shopId": shop_id, "_id": {"$in": wanted}}, _LABEL_FIELDS
        ).to_list()
    )
    problems = [
        Problem((*field_path, index), "Contact not found.", "NOT_FOUND")
        for index, oid in enumerate(ids)
        if oid is None or oid not in found
    ]
    if problems:
        raise Refused(problems)
    return [found[oid] for oid in dict.fromkeys(wanted)]


async def _spellings_to_remove(
    database: Database, shop_id: str, names: list[str], field_name: str
) -> set[str]:
    """The keys of labels to remove; NOT_FOUND for a label the shop does not have."""
    keys = [label_key(n) for n in names]
    existing = await _existing(database, shop_id, keys)
    problems = [
        Problem((field_name, index), f"No label {name!r} in this shop.", "NOT_FOUND")
        for index, (name, key) in enumerate(zip(names, keys, strict=True))
        if key not in existing
    ]
    if problems:
        raise Refused(problems)
    return set(keys)


@dataclass
class Bulk:
    matched: int = 0
    modified: int = 0


async def label_contacts(
    database: Database,
    shop_id: str,
    contacts: list[Doc] | None,
    match: Doc | None,
    add: list[str],
    remove: list[str],
    author: str,
    *,
    add_field: str = "add",
    remove_field: str = "remove",
) -> Bulk:
    """Add and remove labels on the given contacts, or on every contact `match` selects.

    Validated whole first: unknown labels to remove are NOT_FOUND, a label
    both added and removed is INVALID, new labels beyond the shop's 250 are
    LIMIT_EXCEEDED; then nothing was changed.
    """
    remove_keys = (
        await _spellings_to_remove(database, shop_id, remove, remove_field) if remove else set()
    )
    both = [i for i, name in enumerate(add) if label_key(name) in remove_keys]
    if both:
        raise Refused(
            [
                Problem((add_field, i), "A label cannot be added and removed at once.", "INVALID")
                for i in both
            ]
        )
    try:
        created = await reserve_labels(database, shop_id, add)
    except Refused as refusal:
        raise Refused(
            [Problem((add_field,), p.message, p.code) for p in refusal.problems]
        ) from None
    plan = add_remove_plan(
        {label_key(n): created.names.get(label_key(n), n) for n in add}, remove_keys
    )
    bulk = Bulk()
    outcome = Outcome()
    failed = True
    try:
        if contacts is not None:
            bulk.matched = len(contacts)
            _merge(outcome, await change_labels(database, shop_id, contacts, plan, author))
        else:
            assert match is not None
            last: ObjectId | None = None
            while True:
                page_match = match if last is None else {"$and": [match, {"_id": {"$gt": last}}]}
                batch = await database.contacts.find(
                    page_match, _LABEL_FIELDS, sort=[("_id", 1)], limit=BATCH, batch_size=BATCH
                ).to_list()
                if not batch:
                    break
                bulk.matched += len(batch)
                last = batch[-1]["_id"]
                _merge(outcome, await change_labels(database, shop_id, batch, plan, author))
        failed = False
    finally:
        # Labels made for a selection that matched nobody are not kept. (When
        # contacts matched, a new label is in use, by this call or by another
        # that gave it to the same contacts first.)
        if failed or not bulk.matched:
            await created.release()
    await _take_back_vanished(database, shop_id, outcome, author)
    bulk.modified = len(set(outcome.modified))
    return bulk


def _merge(total: Outcome, part: Outcome) -> None:
    # Not the count deltas: each batch has moved its own counts.
    total.modified.extend(part.modified)
    for key, ids in part.added.items():
        total.added.setdefault(key, []).extend(ids)


async def contacts_after(database: Database, shop_id: str, ids: list[ObjectId]) -> list[Doc]:
    docs = _by_id(
        await database.contacts.find(
            {"shopId": shop_id, "_id": {"$in": ids}}, LIST_PROJECTION
        ).to_list()
    )
    return [docs[i] for i in ids if i in docs]


async def list_labels(database: Database, shop_id: str) -> list[Doc]:
    """Every label of the shop, by name (case-insensitive)."""
    return await database.labels.find({"shopId": shop_id}, sort=[("key", 1)]).to_list()


def _one_name(field_name: str, raw: str) -> str:
    check = Checker()
    name = normalize_label(check, (field_name,), raw)
    if name is None:
        raise Refused(check.problems)
    return name


async def _sweep(
    database: Database, shop_id: str, key: str, plan: Plan, author: str | None
) -> None:
    """Apply `plan` to every contact that has the label `key`, until none is left to change."""
    while True:
        batch = await database.contacts.find(
            {"shopId": shop_id, "labelKeys": key}, _LABEL_FIELDS, limit=BATCH, batch_size=BATCH
        ).to_list()
        if not batch:
            return
        outcome = await change_labels(database, shop_id, batch, plan, author)
        if not outcome.modified:
            return  # nothing movable is left (contacts changing faster than this sweep)


async def rename_label(
    database: Database, shop_id: str, name: str, new_name: str, author: str
) -> Doc:
    """Rename a label shop-wide; into an existing label it merges (no contact has it twice)."""
    old_name = _one_name("name", name)
    target_name = _one_name("newName", new_name)
    old_key, new_key = label_key(old_name), label_key(target_name)
    old = await database.labels.find_one({"shopId": shop_id, "key": old_key})
    if old is None:
        raise not_found(("name",), "Label")
    if old_key == new_key:
        if old["name"] != target_name:
            await database.labels.update_one(
                {"shopId": shop_id, "_id": old["_id"]}, {"$set": {"name": target_name}}
            )
            respell = _respell_plan(old_key, old["name"], target_name)
            await _sweep_spelling(database, shop_id, old_key, target_name, respell, author)
            await follow_label_rename(database, shop_id, old["name"], target_name)
        doc = await database.labels.find_one({"shopId": shop_id, "_id": old["_id"]})
        if doc is None:
            raise not_found(("name",), "Label")
        return doc
    merged = True
    target = await database.labels.find_one({"shopId": shop_id, "key": new_key})
    if target is None:
        try:
            # The new label takes the slot the old one gives up.
            await database.labels.insert_one(
                {
                    "shopId": shop_id,
                    "key": new_key,
                    "name": target_name,
                    "contactCount": 0,
                    "createdAt": now(),
                }
            )
            merged = False
        except DuplicateKeyError:
            pass  # created meanwhile: merge into it
        target = await database.labels.find_one({"shopId": shop_id, "key": new_key})
        assert target is not None
    plan = _move_plan(old_key, old["name"], new_key, target["name"])
    await _sweep(database, shop_id, old_key, plan, author)
    deleted = await database.labels.delete_one({"shopId": shop_id, "_id": old["_id"]})
    if deleted.deleted_count and merged:
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"labelCount": -1}})
    elif not deleted.deleted_count and not merged:
        # Someone deleted the old label meanwhile; the new one holds a slot of its own.
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"labelCount": 1}})
    await _sweep(database, shop_id, old_key, plan, author)  # contacts labeled while it moved
    await follow_label_rename(database, shop_id, old["name"], target["name"])
    doc = await database.labels.find_one({"shopId": shop_id, "_id": target["_id"]})
    assert doc is not None
    return doc


def _move_plan(old_key: str, old_name: str, new_key: str, new_name: str) -> Plan:
    def plan(doc: Doc) -> Change | None:
        pairs = list(zip(doc.get("labels") or [], doc.get("labelKeys") or [], strict=False))
        if old_key not in {k for _, k in pairs}:
            return None
        has_new = new_key in {k for _, k in pairs}
        after: list[tuple[str, str]] = []
        for n, k in pairs:
            if k == old_key:
                if not has_new:
                    after.append((new_name, new_key))
            else:
                after.append((n, k))
        return Change(
            [n for n, _ in after], [k for _, k in after], f"Label renamed: {old_name} to {new_name}"
        )

    return plan


def _respell_plan(key: str, old_name: str, new_name: str) -> Plan:
    def plan(doc: Doc) -> Change | None:
        labels, keys = list(doc.get("labels") or []), list(doc.get("labelKeys") or [])
        if key not in keys or labels[keys.index(key)] == new_name:
            return None
        labels[keys.index(key)] = new_name
        return Change(labels, keys, f"Label renamed: {old_name} to {new_name}")

    return plan


async def _sweep_spelling(
    database: Database, shop_id: str, key: str, spelling: str, plan: Plan, author: str | None
) -> None:
    while True:
        batch = await database.contacts.find(
            {"shopId": shop_id, "labelKeys": key, "labels": {"$ne": spelling}},
            _LABEL_FIELDS,
            limit=BATCH,
            batch_size=BATCH,
        ).to_list()
        if not batch or not (await change_labels(database, shop_id, batch, plan, author)).modified:
            return


async def delete_label(database: Database, shop_id: str, name: str, author: str) -> str:
    """Take a label off every contact and out of the shop; its name."""
    cleaned = _one_name("name", name)
    key = label_key(cleaned)
    doc = await database.labels.find_one({"shopId": shop_id, "key": key})
    if doc is None:
        raise not_found(("name",), "Label")
    plan = add_remove_plan({}, {key})
    await _sweep(database, shop_id, key, plan, author)
    deleted = await database.labels.delete_one({"shopId": shop_id, "_id": doc["_id"]})
    if deleted.deleted_count:
        await database.shops.update_one({"_id": shop_id}, {"$inc": {"labelCount": -1}})
    await _sweep(database, shop_id, key, plan, author)  # contacts labeled while it went
    return str(doc["name"])


def check_selection_labels(
    add: list[str] | None, remove: list[str] | None
) -> tuple[list[str], list[str]]:
    """Both lists normalized; REQUIRED when both are empty."""
    problems: list[Problem] = []
    out: list[list[str]] = []
    for name, raws in (("add", add), ("remove", remove)):
        try:
            out.append(check_names((name,), raws, required=False))
        except Refused as refusal:
            problems.extend(refusal.problems)
            out.append([])
    if problems:
        raise Refused(problems)
    if not out[0] and not out[1]:
        raise refuse(("add",), "Give labels to add or to remove.", "REQUIRED")
    return out[0], out[1]
