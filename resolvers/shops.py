"""Shops and their API keys: who may call, in which shop, with which role."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import DuplicateKeyError

from loaders.mongo import Database
from resolvers.clock import now


class Role(StrEnum):
    ADMIN = "ADMIN"
    STAFF = "STAFF"
    READER = "READER"
    INGEST = "INGEST"
    PUBLIC = "PUBLIC"

    @property
    def a_key(self) -> str:
        """The role's key with its article, which follows the first sound: "An INGEST key"."""
        return f"{'An' if self.value[0] in 'AEIOU' else 'A'} {self.value} key"


# Standard Webhooks secrets: "whsec_" and the base64 of 24-64 random bytes (we make 32).
WEBHOOK_SECRET_PREFIX = "whsec_"
WEBHOOK_SECRET_BYTES = 32
# After a rotation the previous secret keeps verifying this long, so the shop
# can switch its sender over without losing a delivery.
WEBHOOK_SECRET_OVERLAP = dt.timedelta(hours=24)


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(
        secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    ).decode("ascii")


def webhook_secret_text(stored: str | None) -> str:
    """The stored secret as shown to the shop: `whsec_<base64>`.

    Shops made before Standard Webhooks hold a hex string that was used as
    the HMAC key byte for byte; shown as the base64 of those same bytes, it
    stays the very same key.
    """
    if not stored:
        return ""
    if stored.startswith(WEBHOOK_SECRET_PREFIX):
        return stored
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(stored.encode()).decode("ascii")


def webhook_secret_key(secret: str) -> bytes | None:
    """The HMAC key a `whsec_` secret stands for; None when it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


@dataclass(frozen=True)
class Shop:
    id: str
    name: str
    currency: str | None
    webhook_secret: str
    # The secret before the last rotation, and until when it still verifies.
    previous_webhook_secret: str | None = None
    previous_webhook_secret_until: dt.datetime | None = None

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Shop:
        return cls(
            id=doc["_id"],
            name=doc.get("name") or doc["_id"],
            currency=doc.get("currency"),
            webhook_secret=webhook_secret_text(doc.get("webhookSecret")),
            previous_webhook_secret=webhook_secret_text(doc.get("previousWebhookSecret")) or None,
            previous_webhook_secret_until=doc.get("previousWebhookSecretUntil"),
        )

    def webhook_secrets(self, at: dt.datetime) -> list[str]:
        """The secrets a delivery may be signed with at `at`: the current one, and the previous within its overlap."""
        valid = [self.webhook_secret] if self.webhook_secret else []
        until = self.previous_webhook_secret_until
        if self.previous_webhook_secret and until is not None and at < until:
            valid.append(self.previous_webhook_secret)
        return valid


@dataclass(frozen=True)
class ApiKey:
    id: ObjectId
    shop_id: str
    role: Role
    name: str


class ShopError(ValueError):
    pass


SHOP_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
CURRENCY = re.compile(r"[A-Z]{3}")


def hash_key(raw_key: str) -> str:
    # Keys are 256-bit random strings, so a plain SHA-256 is enough: there is
    # nothing to brute-force that a slow password hash would protect.
    return hashlib.sha256(raw_key.encode()).hexdigest()


async def ensure_shop(
    database: Database, shop_id: str, name: str | None = None, currency: str | None = None
) -> tuple[Shop, bool]:
    """The shop, created when missing; (shop, created)."""
    if not SHOP_ID.fullmatch(shop_id):
        raise ShopError("A shop id is 1-63 lower-case letters, digits, '-' or '_'.")
    if currency is not None and not CURRENCY.fullmatch(currency):
        raise ShopError("A currency is a three-letter ISO 4217 code such as EUR.")
    doc = {
        "_id": shop_id,
        "name": name or shop_id,
        "currency": currency,
        "webhookSecret": new_webhook_secret(),
        "labelCount": 0,
        "createdAt": now(),
    }
    try:
        await database.shops.insert_one(doc)
        return Shop.from_doc(doc), True
    except DuplicateKeyError:
        existing = await database.shops.find_one({"_id": shop_id})
        assert existing is not None
        return Shop.from_doc(existing), False


async def get_shop(database: Database, shop_id: str) -> Shop | None:
    doc = await database.shops.find_one({"_id": shop_id})
    return Shop.from_doc(doc) if doc else None


async def webhook_secret(database: Database, shop_id: str) -> str | None:
    """The shop's current webhook secret as `whsec_<base64>`; None when there is no such shop."""
    doc = await database.shops.find_one({"_id": shop_id}, {"webhookSecret": 1})
    return webhook_secret_text(doc.get("webhookSecret")) if doc else None


async def rotate_webhook_secret(
    database: Database, shop_id: str, at: dt.datetime | None = None
) -> tuple[str, dt.datetime]:
    """A new webhook secret; (the secret, until when the one it replaces still verifies).

    One write moves the current secret to `previousWebhookSecret`, so of two
    rotations at once neither loses a secret the other handed out. Only one
    previous secret is kept: rotating twice within the overlap ends the
    first one's validity.
    """
    secret = new_webhook_secret()
    until = (at or now()) + WEBHOOK_SECRET_OVERLAP
    result = await database.shops.update_one(
        {"_id": shop_id},
        [
            {
                "$set": {
                    "previousWebhookSecret": "$webhookSecret",
                    "previousWebhookSecretUntil": until,
                    "webhookSecret": secret,
                }
            }
        ],
    )
    if result.matched_count == 0:
        raise ShopError(f"No shop {shop_id!r}.")
    return secret, until


async def create_key(database: Database, shop_id: str, role: Role, name: str) -> tuple[ApiKey, str]:
    """A new key; the raw key is returned once and only its hash is stored."""
    [made] = await create_keys(database, shop_id, [(role, name)])
    return made


async def create_keys(
    database: Database, shop_id: str, wanted: list[tuple[Role, str]]
) -> list[tuple[ApiKey, str]]:
    """Several new keys of one shop in one write, in the order asked for; see create_key."""
    names = [name.strip() for _, name in wanted]
    if any(not name or len(name) > 100 for name in names):
        raise ShopError("A key's name is 1-100 characters: it signs notes and consent changes.")
    if await database.shops.count_documents({"_id": shop_id}, limit=1) == 0:
        raise ShopError(f"No shop {shop_id!r}.")
    made: list[tuple[ApiKey, str]] = []
    docs = []
    for (role, _), name in zip(wanted, names, strict=True):
        raw = f"cg_{role.value.lower()}_{secrets.token_urlsafe(32)}"
        key_id = ObjectId()
        docs.append(
            {
                "_id": key_id,
                "shopId": shop_id,
                "role": role.value,
                "name": name,
                "hash": hash_key(raw),
                "prefix": raw[:12],
                "createdAt": now(),
                "revokedAt": None,
            }
        )
        made.append((ApiKey(key_id, shop_id, role, name), raw))
    if docs:
        await database.api_keys.insert_many(docs)
    return made


async def list_keys(database: Database, shop_id: str) -> list[dict[str, Any]]:
    return await database.api_keys.find(
        {"shopId": shop_id}, {"hash": 0}, sort=[("createdAt", 1)]
    ).to_list()


async def revoke_key(database: Database, key_id: str) -> bool:
    try:
        oid = ObjectId(key_id)
    except (InvalidId, TypeError):
        return False
    result = await database.api_keys.update_one(
        {"_id": oid, "revokedAt": None}, {"$set": {"revokedAt": now()}}
    )
    return result.modified_count == 1


async def find_key(database: Database, raw_key: str) -> tuple[ApiKey, Shop] | None:
    """The live key and its shop for a raw key; None when unknown or revoked."""
    doc = await database.api_keys.find_one({"hash": hash_key(raw_key), "revokedAt": None})
    if doc is None:
        return None
    shop = await get_shop(database, doc["shopId"])
    if shop is None:
        return None
    return ApiKey(doc["_id"], doc["shopId"], Role(doc["role"]), doc["name"]), shop
