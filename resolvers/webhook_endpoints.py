"""The shop's webhook endpoints: where outbound events go, and the secrets that sign them.

Secrets follow Standard Webhooks: `whsec_` and the base64 of 32 random
bytes, shown once (on create and on rotate), kept to sign. A rotation keeps
the old secret signing next to the new one for a while (24 h by default),
so a receiver can switch without refusing a delivery; both signatures go in
`webhook-signature`, space-separated.

An endpoint's URL is `https://`, or plain `http://` to localhost when the
server allows insecure webhooks (development, tests). A URL naming a
private, loopback, link-local or otherwise non-public address is refused
here; a host name is checked again at each delivery after its DNS answer
(resolvers/event_delivery.py), where it counts.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from bson import ObjectId
from pymongo import ReturnDocument

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.errors import Problem, Refused, not_found
from resolvers.events import EVENT_TYPES

URL_MAX = 2_000
MAX_ENDPOINTS = 20
MAX_DELIVERIES_PAGE = 250
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Host names that may be plain http:// (and loopback) when insecure webhooks are allowed.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def show_secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """One Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_keys(endpoint: Doc, at: dt.datetime) -> list[bytes]:
    """The secrets that sign now: the current one, and rotated-out ones still in their window."""
    return [
        bytes(s["key"])
        for s in endpoint.get("secrets") or []
        if s.get("expiresAt") is None or s["expiresAt"] > at
    ]


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Reachable on the internet: not private, loopback, link-local, multicast or reserved."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public_address(address.ipv4_mapped)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def is_local_host(host: str) -> bool:
    return host.lower().strip("[]") in LOCAL_HOSTS


def check_url(field: tuple[str, ...], url: Any, *, allow_insecure: bool) -> list[Problem]:
    """What is wrong with an endpoint URL; empty when it may be used."""

    def bad(message: str, code: str = "INVALID") -> list[Problem]:
        return [Problem(field, message, code)]

    if not isinstance(url, str) or not url:
        return bad("Give the endpoint's URL.", "REQUIRED")
    if len(url) > URL_MAX:
        return bad(f"A URL is at most {URL_MAX} characters.", "TOO_LONG")
    if not url.isascii() or not url.isprintable() or any(c in url for c in ' <>"\\{}|^`'):
        return bad("The URL must be plain ASCII without spaces (punycode for other names).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return bad("This is not a URL.")
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("https", "http"):
        return bad("The URL must start with https://.")
    if not host:
        return bad("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        return bad(
            "The URL must not carry a user name or password; the signature proves the sender."
        )
    if parts.fragment:
        return bad("The URL must not have a #fragment.")
    if port == 0:
        return bad("The URL's port must be 1-65535.")
    local = is_local_host(host)
    if scheme == "http" and not (allow_insecure and local):
        return bad("The URL must start with https:// (events carry personal data).")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if not is_public_address(address) and not (allow_insecure and local):
            return bad("The URL must not point at a private, loopback or link-local address.")
        return []
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return bad("The URL's host is not a valid host name.")
    if labels[-1].isdigit():
        return bad("The URL's host is not a valid host name.")  # 10.1 and other partial addresses
    return []


def check_events(field: tuple[str, ...], events: Any) -> tuple[list[str], list[Problem]]:
    if not events:
        return [], [Problem(field, "Subscribe to at least one event type.", "REQUIRED")]
    unknown = [
        Problem((*field, i), f"Unknown event type {e!r}.", "INVALID")
        for i, e in enumerate(events)
        if e not in EVENT_TYPES
    ]
    # The order of EventType, without repeats: what the endpoint shows.
    return [t for t in EVENT_TYPES if t in set(events)], unknown


async def list_endpoints(database: Database, shop_id: str) -> list[Doc]:
    return await database.webhook_endpoints.find(
        {"shopId": shop_id}, sort=[("createdAt", 1), ("_id", 1)]
    ).to_list()


async def find_endpoint(
    database: Database, shop_id: str, endpoint_id: ObjectId | None
) -> Doc | None:
    if endpoint_id is None:
        return None
    return await database.webhook_endpoints.find_one({"shopId": shop_id, "_id": endpoint_id})


async def create_endpoint(
    database: Database, shop_id: str, url: Any, events: Sequence[str], *, allow_insecure: bool
) -> tuple[Doc, str]:
    """A new endpoint and its secret (`whsec_…`), which is shown this once."""
    problems = check_url(("url",), url, allow_insecure=allow_insecure)
    chosen, event_problems = check_events(("events",), events)
    problems += event_problems
    if problems:
        raise Refused(problems)
    key = new_secret()
    at = now()
    doc: Doc = {
        "_id": ObjectId(),
        "shopId": shop_id,
        "url": url,
        "events": chosen,
        "enabled": True,
        "createdAt": at,
        "updatedAt": at,
        "secrets": [{"key": key, "createdAt": at, "expiresAt": None}],
        "lastDeliveryAt": None,
        "lastError": None,
        "failingSince": None,
    }

    async def work(session: Any) -> None:
        # Touching the shop makes two creates at once conflict, so the limit holds exactly.
        await database.shops.update_one(
            {"_id": shop_id}, {"$inc": {"webhookEndpointWrites": 1}}, session=session
        )
        count = await database.webhook_endpoints.count_documents(
            {"shopId": shop_id}, session=session
        )
        if count >= MAX_ENDPOINTS:
            raise Refused(
                [
                    Problem(
                        ("url",),
                        f"A shop has at most {MAX_ENDPOINTS} webhook endpoints.",
                        "LIMIT_EXCEEDED",
                    )
                ]
            )
        await database.webhook_endpoints.insert_one(doc, session=session)

    await activity.in_transaction(database, work)
    return doc, show_secret(key)


async def update_endpoint(
    database: Database,
    shop_id: str,
    endpoint_id: ObjectId | None,
    *,
    url: Any = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
    allow_insecure: bool,
) -> Doc:
    """Change what is given; enabling again forgets the failures that disabled it."""
    problems: list[Problem] = []
    sets: Doc = {}
    if url is not None:
        problems += check_url(("url",), url, allow_insecure=allow_insecure)
        sets["url"] = url
    if events is not None:
        chosen, event_problems = check_events(("events",), events)
        problems += event_problems
        sets["events"] = chosen
    if problems:
        raise Refused(problems)
    if enabled is not None:
        sets["enabled"] = enabled
        if enabled:
            sets.update({"failingSince": None, "lastError": None})
    sets["updatedAt"] = now()
    if endpoint_id is None:
        raise not_found(("id",), "Webhook endpoint")
    doc = await database.webhook_endpoints.find_one_and_update(
        {"_id": endpoint_id, "shopId": shop_id},
        {"$set": sets},
        return_document=ReturnDocument.AFTER,
    )
    if doc is None:
        raise not_found(("id",), "Webhook endpoint")
    return doc


async def rotate_secret(
    database: Database, shop_id: str, endpoint_id: ObjectId | None, *, overlap_seconds: float
) -> tuple[Doc, str]:
    """A new signing secret; the ones before it sign too until `overlap_seconds` from now."""
    if endpoint_id is None:
        raise not_found(("id",), "Webhook endpoint")
    at = now()
    until = at + dt.timedelta(seconds=overlap_seconds)
    key = new_secret()
    for _ in range(10):
        current = await find_endpoint(database, shop_id, endpoint_id)
        if current is None:
            raise not_found(("id",), "Webhook endpoint")
        kept = [
            {**s, "expiresAt": until if s.get("expiresAt") is None else min(s["expiresAt"], until)}
            for s in current.get("secrets") or []
            if s.get("expiresAt") is None or s["expiresAt"] > at
        ]
        doc = await database.webhook_endpoints.find_one_and_update(
            # As read: a rotation at the same moment makes this one read again.
            {"_id": endpoint_id, "shopId": shop_id, "secrets": current.get("secrets") or []},
            {
                "$set": {
                    "secrets": [{"key": key, "createdAt": at, "expiresAt": None}, *kept],
                    "updatedAt": at,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return doc, show_secret(key)
    raise RuntimeError("the endpoint's secrets kept changing while they were rotated")


async def delete_endpoint(database: Database, shop_id: str, endpoint_id: ObjectId | None) -> Doc:
    """The endpoint and its delivery log go; deliveries under way to it are dropped."""
    if endpoint_id is None:
        raise not_found(("id",), "Webhook endpoint")

    async def work(session: Any) -> Doc | None:
        doc = await database.webhook_endpoints.find_one_and_delete(
            {"_id": endpoint_id, "shopId": shop_id}, session=session
        )
        if doc is not None:
            await database.webhook_deliveries.delete_many(
                {"shopId": shop_id, "endpointId": endpoint_id}, session=session
            )
        return doc

    doc = await activity.in_transaction(database, work)
    if doc is None:
        raise not_found(("id",), "Webhook endpoint")
    return doc


async def list_deliveries(
    database: Database, shop_id: str, endpoint_id: ObjectId | None, first: int
) -> list[Doc]:
    """The endpoint's delivery log, newest first; NOT_FOUND-free: an unknown endpoint has none."""
    if endpoint_id is None:
        return []
    return await database.webhook_deliveries.find(
        {"shopId": shop_id, "endpointId": endpoint_id},
        {"body": 0},
        sort=[("createdAt", -1), ("_id", -1)],
        limit=first,
    ).to_list()
