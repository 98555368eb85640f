"""Reads of contacts: by id, by email, and filtered, sorted pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from strawberry.dataloader import DataLoader

from loaders.contact_search import query_match
from loaders.mongo import Database, Doc
from resolvers.contact_counts import KINDS, contact_totals

# The activity log and search terms are large and never needed for a list
# row; the activity field reads them on its own when asked.
LIST_PROJECTION = {"activity": 0, "searchTerms": 0}

SORT_FIELDS = {
    "CREATED_AT": "createdAt",
    "UPDATED_AT": "updatedAt",
    "NAME": "nameKey",
    "EMAIL": "emailKey",
    "LAST_ORDER_AT": "lastOrderAt",
    "ORDER_COUNT": "orderCount",
    "TOTAL_SPENT": "totalSpent",
}


@dataclass
class ContactFilterSpec:
    """A contact filter as plain values (the ContactFilter input, minus GraphQL)."""

    kind: str | None = None
    labels_any: list[str] | None = None
    labels_all: list[str] | None = None
    labels_none: list[str] | None = None
    total_spent_min: Decimal | None = None
    total_spent_max: Decimal | None = None
    order_count_min: int | None = None
    order_count_max: int | None = None
    last_order_after: dt.datetime | None = None
    last_order_before: dt.datetime | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    marketing_state: str | None = None
    has_account: bool | None = None
    has_active_subscription: bool | None = None
    is_member: bool | None = None
    # Further conditions (a saved segment's) combined with AND.
    extra: list[dict[str, Any]] = field(default_factory=list)


def label_key(name: str) -> str:
    return " ".join(name.split()).casefold()


# "At most" sent as `$lt` OR `$eq`: the embedded server drops the upper end of
# a `$lte` it answers from a (shopId, field, _id) index, which would lose every
# contact exactly at the bound. On MongoDB that `$or` costs a plan of two index
# scans, so it is sent only to the embedded server: `adapt_to_server` finds out
# which one this process talks to, once, at connect. Until then the
# workaround holds, as it is correct on both.
_lte_as_lt_or_eq = True


async def adapt_to_server(database: Database) -> None:
    """Learn whether the server is the embedded one (it says so in buildInfo)."""
    global _lte_as_lt_or_eq
    info = await database.db.command("buildInfo")
    _lte_as_lt_or_eq = "secantusVersion" in info


def _range(
    conditions: dict[str, Any], extra: list[Doc], name: str, low: Any, high: Any, *, strict: bool
) -> None:
    bounds: dict[str, Any] = {}
    if low is not None:
        bounds["$gt" if strict else "$gte"] = low
    if high is not None:
        if strict:
            bounds["$lt"] = high
        elif _lte_as_lt_or_eq:
            extra.append({"$or": [{name: {"$lt": high}}, {name: {"$eq": high}}]})
        else:
            bounds["$lte"] = high
    if bounds:
        conditions[name] = bounds


def contact_match(
    shop_id: str, text: str | None = None, spec: ContactFilterSpec | None = None
) -> Doc:
    """The MongoDB condition for a shop's contacts matching a query and a filter.

    Every value is placed under an explicit operator, so a client string can
    never become an operator itself.
    """
    match: Doc = {"shopId": shop_id}
    extra: list[Doc] = []
    if text:
        words = query_match(text)
        if words and "searchTerms" in words:
            # One word, one field condition beside shopId: a top-level `$and`
            # makes the embedded server scan every shop's contacts.
            match.update(words)
        elif words:
            extra.append(words)
    if spec is not None:
        if spec.kind is not None:
            match["kind"] = {"$eq": spec.kind}
        labels: Doc = {}
        if spec.labels_any:
            labels["$in"] = [label_key(x) for x in spec.labels_any]
        if spec.labels_all:
            labels["$all"] = [label_key(x) for x in spec.labels_all]
        if spec.labels_none:
            labels["$nin"] = [label_key(x) for x in spec.labels_none]
        if labels:
            match["labelKeys"] = labels
        _range(
            match,
            extra,
            "totalSpent",
            None if spec.total_spent_min is None else Decimal128(spec.total_spent_min),
            None if spec.total_spent_max is None else Decimal128(spec.total_spent_max),
            strict=False,
        )
        _range(match, extra, "orderCount", spec.order_count_min, spec.order_count_max, strict=False)
        _range(
            match, extra, "lastOrderAt", spec.last_order_after, spec.last_order_before, strict=True
        )
        _range(match, extra, "createdAt", spec.created_after, spec.created_before, strict=True)
        if spec.marketing_state is not None:
            if spec.marketing_state == "NOT_SUBSCRIBED":
                match["consent.state"] = {"$in": ["NOT_SUBSCRIBED", None]}
            else:
                match["consent.state"] = {"$eq": spec.marketing_state}
        if spec.has_account is not None:
            match["hasAccount"] = {"$eq": spec.has_account}
        # Contacts stored before subscriptions were recorded lack both fields: none and false.
        if spec.has_active_subscription is True:
            match["activeSubscriptionCount"] = {"$gt": 0}
        elif spec.has_active_subscription is False:
            match["activeSubscriptionCount"] = {"$not": {"$gt": 0}}
        if spec.is_member is not None:
            match["isMember"] = {"$eq": True} if spec.is_member else {"$ne": True}
        extra.extend(spec.extra)
    if extra:
        return {"$and": [match, *extra]}
    return match


async def _by_ids(database: Database, shop_id: str, ids: Sequence[ObjectId]) -> list[Doc | None]:
    rows = await database.contacts.find(
        {"shopId": shop_id, "_id": {"$in": list(ids)}}, LIST_PROJECTION
    ).to_list()
    found = {row["_id"]: row for row in rows}
    return [found.get(i) for i in ids]


class ContactByIdLoader(DataLoader[ObjectId, Doc | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(ids: list[ObjectId]) -> list[Doc | None]:
            return await _by_ids(database, shop_id, ids)

        super().__init__(load_fn=load)


class ContactByEmailKeyLoader(DataLoader[str, Doc | None]):
    def __init__(self, database: Database, shop_id: str) -> None:
        async def load(keys: list[str]) -> list[Doc | None]:
            rows = await database.contacts.find(
                {"shopId": shop_id, "emailKey": {"$in": list(keys)}}, LIST_PROJECTION
            ).to_list()
            found = {row["emailKey"]: row for row in rows}
            return [found.get(k) for k in keys]

        super().__init__(load_fn=load)


async def count_contacts(database: Database, match: Doc) -> int:
    """How many contacts match: from the shop's counters when the filter is none or only a kind.

    Those counts cost one small indexed read whatever the shop's size; any
    other filter is counted exactly by the database.
    """
    shop_id = match.get("shopId")
    rest = {k: v for k, v in match.items() if k != "shopId"}
    if isinstance(shop_id, str) and not rest:
        return (await contact_totals(database, shop_id))["total"]
    kind = rest.get("kind")
    if isinstance(shop_id, str) and list(rest) == ["kind"] and isinstance(kind, dict):
        wanted = kind.get("$eq")
        if list(kind) == ["$eq"] and wanted in KINDS:
            return (await contact_totals(database, shop_id))[wanted]
    return await database.contacts.count_documents(match)
