"""Contacts that are probably one person: same phone, same mailbox, or same name and address.

Each reason is one aggregation that groups the shop's contacts by a key
and keeps the groups of two or more, so the cost grows with the number of
contacts, not with the number of pairs:

- phone: the stored E.164 number (indexed);
- mailbox: `emailCanon`, the address with what the provider ignores taken
  out (letter case everywhere; dots and `+tag` at Gmail; `+tag` at other
  large providers), stored with every write of the email (indexed);
- name and address: the name sort key with the first line, postal code and
  country of the shipping address (the billing address when the shipping
  address has no first line), compared without letter
  case and outer spaces; computed in the pipeline from the stored fields,
  so it follows every change however it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from loaders.mongo import Database, Doc

# Providers that deliver `name+tag@` to `name@`, and those that also ignore dots.
_IGNORE_DOTS = frozenset({"gmail.com"})
_IGNORE_TAGS = frozenset(
    {
        "gmail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "protonmail.com",
        "protonmail.ch",
        "proton.me",
        "pm.me",
        "fastmail.com",
        "fastmail.fm",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "posteo.de",
        "mailbox.org",
    }
)
_SAME_DOMAIN = {"googlemail.com": "gmail.com"}

MAX_GROUPS = 100
MAX_GROUP_CONTACTS = 50

SAME_PHONE = "same phone"
SAME_MAILBOX = "same email except dots/plus-tag"
SAME_NAME_ADDRESS = "same name and address"


def canonical_email(email: str) -> str:
    """The mailbox an address delivers to, as far as its provider's rules are known."""
    local, _, domain = email.strip().lower().rpartition("@")
    domain = _SAME_DOMAIN.get(domain, domain)
    if domain in _IGNORE_TAGS:
        local = local.split("+", 1)[0]
    if domain in _IGNORE_DOTS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


@dataclass(frozen=True)
class DuplicateGroupResult:
    reason: str
    contact_ids: list[ObjectId]  # oldest first, at most MAX_GROUP_CONTACTS
    size: int


def _text(path: str) -> dict[str, Any]:
    return {"$toLower": {"$trim": {"input": {"$ifNull": [path, ""]}}}}


def _grouped(key: Any, limit: int) -> list[Doc]:
    # `$topN` keeps at most MAX_GROUP_CONTACTS ids per group while grouping:
    # `$push` of every id (sorted beforehand) would hold the whole shop in
    # the group stage, past its 100 MB limit at a million contacts.
    oldest = {"n": MAX_GROUP_CONTACTS, "sortBy": {"_id": 1}, "output": "$_id"}
    return [
        {"$group": {"_id": key, "ids": {"$topN": oldest}, "n": {"$sum": 1}}},
        {"$match": {"n": {"$gte": 2}}},
        {"$sort": {"_id": 1}},
        {"$limit": limit},
    ]


def phone_pipeline(shop_id: str, limit: int) -> list[Doc]:
    return [
        {"$match": {"shopId": shop_id, "phone": {"$type": "string"}}},
        *_grouped("$phone", limit),
    ]


def mailbox_pipeline(shop_id: str, limit: int) -> list[Doc]:
    return [
        {"$match": {"shopId": shop_id, "emailCanon": {"$type": "string"}}},
        *_grouped("$emailCanon", limit),
    ]


def name_address_pipeline(shop_id: str, limit: int) -> list[Doc]:
    # The address that has a street line: a shipping address of only a town
    # would otherwise make every namesake with one look the same.
    address = {
        "$cond": [
            {"$eq": [{"$type": "$shippingAddress.line1"}, "string"]},
            "$shippingAddress",
            "$billingAddress",
        ]
    }
    key = {
        "name": "$nameKey",
        "line1": _text("$a.line1"),
        "postalCode": {
            "$toUpper": {
                "$replaceAll": {
                    "input": {"$ifNull": ["$a.postalCode", ""]},
                    "find": " ",
                    "replacement": "",
                }
            }
        },
        "countryCode": {"$ifNull": ["$a.countryCode", ""]},
    }
    return [
        {
            "$match": {
                "shopId": shop_id,
                "firstName": {"$type": "string"},
                "lastName": {"$type": "string"},
                "$or": [
                    {"shippingAddress.line1": {"$type": "string"}},
                    {"billingAddress.line1": {"$type": "string"}},
                ],
            }
        },
        {"$project": {"a": address, "nameKey": 1}},
        *_grouped(key, limit),
    ]


async def duplicate_groups(
    database: Database, shop_id: str, first: int
) -> list[DuplicateGroupResult]:
    """Up to `first` groups: same phone, then same mailbox, then same name and address.

    A group with exactly the contacts of an earlier one is left out: the
    earlier reason already names them.
    """
    out: list[DuplicateGroupResult] = []
    seen: set[frozenset[ObjectId]] = set()
    for reason, pipeline in (
        (SAME_PHONE, phone_pipeline),
        (SAME_MAILBOX, mailbox_pipeline),
        (SAME_NAME_ADDRESS, name_address_pipeline),
    ):
        if len(out) >= first:
            break
        rows = await (
            await database.contacts.aggregate(pipeline(shop_id, first + len(seen)))
        ).to_list()
        for row in rows:
            members = frozenset(row["ids"])
            if members in seen:
                continue
            seen.add(members)
            out.append(DuplicateGroupResult(reason, list(row["ids"]), row["n"]))
            if len(out) >= first:
                break
    return out
