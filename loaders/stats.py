"""Reporting over a shop's contacts, computed inside MongoDB by one aggregation.

One `$match` (the filter, served by the list indexes) feeds one `$facet`:
a single `$group` for every total, one for new contacts per month and one
for label counts. Python only shapes the few result rows: it never loops
over contacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bson import Decimal128

from loaders.mongo import Database, Doc

TOP_LABELS = 10
MAX_TOP_LABELS = 250
_CENTS = Decimal("0.01")


@dataclass(frozen=True)
class LabelCount:
    key: str
    name: str
    contact_count: int


@dataclass(frozen=True)
class ContactStatsResult:
    contacts: int
    customers: int
    leads: int
    subscribed: int
    repeat_customers: int
    total_revenue: Decimal
    orders: int
    average_order_value: Decimal | None
    new_contacts_by_month: list[tuple[str, int]]
    top_labels: list[LabelCount]


def _is(field: str, value: Any) -> dict[str, Any]:
    return {"$cond": [{"$eq": [field, value]}, 1, 0]}


def stats_pipeline(match: Doc, top_labels: int = TOP_LABELS) -> list[Doc]:
    """The whole report as one pipeline (also what the benchmark runs raw)."""
    return [
        {"$match": match},
        {
            "$project": {
                "kind": 1,
                "consent.state": 1,
                "orderCount": 1,
                "totalSpent": 1,
                "createdAt": 1,
                "labelKeys": 1,
            }
        },
        {
            "$facet": {
                "totals": [
                    {
                        "$group": {
                            "_id": None,
                            "contacts": {"$sum": 1},
                            "customers": {"$sum": _is("$kind", "CUSTOMER")},
                            "leads": {"$sum": _is("$kind", "LEAD")},
                            "subscribed": {"$sum": _is("$consent.state", "SUBSCRIBED")},
                            "repeat": {"$sum": {"$cond": [{"$gte": ["$orderCount", 2]}, 1, 0]}},
                            # Decimal128 throughout: the sum of money stays exact.
                            "revenue": {"$sum": "$totalSpent"},
                            "orders": {"$sum": "$orderCount"},
                        }
                    }
                ],
                "months": [
                    {
                        "$group": {
                            "_id": {
                                "$dateToString": {
                                    "format": "%Y-%m",
                                    "date": "$createdAt",
                                    "timezone": "UTC",
                                }
                            },
                            "n": {"$sum": 1},
                        }
                    },
                    {"$sort": {"_id": 1}},
                ],
                "labels": [
                    {"$unwind": "$labelKeys"},
                    {"$group": {"_id": "$labelKeys", "n": {"$sum": 1}}},
                    {"$sort": {"n": -1, "_id": 1}},
                    {"$limit": top_labels},
                ],
            }
        },
    ]


def _months(rows: list[Doc]) -> list[tuple[str, int]]:
    """Every month from the first to the last with new contacts, empty months as 0 (a chart's x-axis)."""
    counts = {row["_id"]: row["n"] for row in rows if row.get("_id")}
    if not counts:
        return []
    year, month = map(int, min(counts).split("-"))
    last = max(counts)
    out = []
    while True:
        key = f"{year:04d}-{month:02d}"
        out.append((key, counts.get(key, 0)))
        if key >= last:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    return Decimal(value or 0)


async def contact_stats(
    database: Database, shop_id: str, match: Doc, top_labels: int = TOP_LABELS
) -> ContactStatsResult:
    rows = await (await database.contacts.aggregate(stats_pipeline(match, top_labels))).to_list()
    facets = rows[0] if rows else {}
    totals = (facets.get("totals") or [{}])[0]
    label_rows = facets.get("labels") or []
    names: dict[str, str] = {}
    if label_rows:
        keys = [row["_id"] for row in label_rows]
        docs = await database.labels.find(
            {"shopId": shop_id, "key": {"$in": keys}}, {"key": 1, "name": 1}
        ).to_list()
        names = {doc["key"]: doc["name"] for doc in docs}
    revenue = _decimal(totals.get("revenue"))
    orders = int(totals.get("orders") or 0)
    average = (revenue / orders).quantize(_CENTS, ROUND_HALF_UP) if orders else None
    return ContactStatsResult(
        contacts=int(totals.get("contacts") or 0),
        customers=int(totals.get("customers") or 0),
        leads=int(totals.get("leads") or 0),
        subscribed=int(totals.get("subscribed") or 0),
        repeat_customers=int(totals.get("repeat") or 0),
        total_revenue=revenue,
        orders=orders,
        average_order_value=average,
        new_contacts_by_month=_months(facets.get("months") or []),
        top_labels=[
            LabelCount(row["_id"], names.get(row["_id"], row["_id"]), row["n"])
            for row in label_rows
        ],
    )
