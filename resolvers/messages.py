"""E-mail to a contact: queued in the `messages` outbox, delivered by resolvers/outbox.py.

A message document: `{shopId, contactId, to, subject, body, marketing,
status (QUEUED|SENT|FAILED), attempts, nextAttemptAt, lastError, sentAt,
author, unsubscribeUrl?, createdAt}`.

Marketing messages go only to SUBSCRIBED contacts and carry an unsubscribe
link. Its token is `<shop>.<contact>.<issued, hex seconds>.<signature>`: an
HMAC-SHA256 (first 128 bits) under a secret of the shop's own, so it cannot
be guessed or altered, names exactly one contact, needs nothing stored per
message, and is checked for its age (valid for UNSUBSCRIBE_VALID_DAYS).
A merge keeps the merged-away contacts' ids in the survivor's `mergedIds`,
so their links still act on the person; an erased contact's link finds
nobody and stores nothing.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from bson import ObjectId
from bson.errors import InvalidId

from loaders.mongo import Database, Doc
from resolvers.clock import now
from resolvers.consent import ConsentEvent, current_state, record_consent
from resolvers.errors import Refused, not_found, refuse
from resolvers.validation import Checker

SUBJECT_MAX = 200
BODY_MAX = 100_000
UNSUBSCRIBE_VALID_DAYS = 365
_TOKEN_MAX = 300
_SIGNATURE_BYTES = 16
_TOKEN = re.compile(
    r"([a-z0-9][a-z0-9_-]{0,62})\.([0-9a-f]{24})\.([0-9a-f]{1,12})\.([A-Za-z0-9_-]{22})"
)


def check_message(subject: str | None, body: str | None) -> tuple[str, str]:
    check = Checker()
    # One line: a line break in a subject would be a header of its own.
    clean_subject = check.text(("subject",), subject, SUBJECT_MAX, required=True)
    clean_body = check.text(("body",), body, BODY_MAX, required=True, multiline=True)
    if not check.ok or clean_subject is None or clean_body is None:
        raise Refused(check.problems)
    return clean_subject, clean_body


async def queue_message(
    database: Database,
    shop_id: str,
    contact_id: ObjectId,
    subject: str,
    body: str,
    *,
    marketing: bool,
    author: str,
    base_url: str,
) -> Doc:
    """The queued message; NOT_ALLOWED (nothing queued) for marketing without SUBSCRIBED consent."""
    clean_subject, clean_body = check_message(subject, body)
    contact = await database.contacts.find_one(
        {"shopId": shop_id, "_id": contact_id}, {"email": 1, "emailKey": 1, "consent": 1}
    )
    if contact is None:
        raise not_found(("contactId",))
    if marketing and current_state(contact) != "SUBSCRIBED":
        raise refuse(
            ("marketing",),
            "Marketing e-mail goes only to contacts whose consent is SUBSCRIBED.",
            "NOT_ALLOWED",
        )
    at = now()
    doc: Doc = {
        "_id": ObjectId(),
        "shopId": shop_id,
        "contactId": contact_id,
        "to": contact["email"],
        # The address as a key: export and erasure find the person's messages by it.
        "toKey": contact["emailKey"],
        "subject": clean_subject,
        "body": clean_body,
        "marketing": marketing,
        "status": "QUEUED",
        "attempts": 0,
        "nextAttemptAt": at,
        "lastError": None,
        "sentAt": None,
        "author": author,
        "createdAt": at,
    }
    if marketing:
        secret = await shop_secret(database, shop_id)
        if secret is None:  # the shop itself is gone
            raise not_found(("contactId",))
        token = make_token(secret, shop_id, contact_id, at)
        doc["unsubscribeUrl"] = f"{base_url.rstrip('/')}/unsubscribe/{token}"
    await database.messages.insert_one(doc)
    return doc


# ---------------------------------------------------------------- unsubscribe tokens


async def shop_secret(database: Database, shop_id: str, *, create: bool = True) -> bytes | None:
    """The shop's signing secret for unsubscribe links, made on first use."""
    doc = await database.shops.find_one({"_id": shop_id}, {"unsubscribeSecret": 1})
    if doc is None:
        return None
    if not doc.get("unsubscribeSecret"):
        if not create:
            return None
        # Only the first writer's secret sticks; everyone then reads that one.
        await database.shops.update_one(
            {"_id": shop_id, "unsubscribeSecret": {"$exists": False}},
            {"$set": {"unsubscribeSecret": secrets.token_hex(32)}},
        )
        doc = await database.shops.find_one({"_id": shop_id}, {"unsubscribeSecret": 1})
        assert doc is not None
    return bytes.fromhex(doc["unsubscribeSecret"])


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(secret: bytes, shop_id: str, contact_id: ObjectId, issued: dt.datetime) -> str:
    payload = f"{shop_id}.{contact_id}.{int(issued.timestamp()):x}"
    return f"{payload}.{_sign(secret, payload)}"


async def verify_token(
    database: Database, token: str, at: dt.datetime
) -> tuple[str, ObjectId] | None:
    """(shop id, contact id) of a genuine, unexpired token; None for anything else."""
    if not isinstance(token, str) or len(token) > _TOKEN_MAX:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    shop_id, contact_hex, issued_hex, signature = match.groups()
    secret = await shop_secret(database, shop_id, create=False)
    if secret is None:
        return None
    expected = _sign(secret, f"{shop_id}.{contact_hex}.{issued_hex}")
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        issued = dt.datetime.fromtimestamp(int(issued_hex, 16), dt.UTC)
        contact_id = ObjectId(contact_hex)
    except (ValueError, OverflowError, OSError, InvalidId, binascii.Error):
        return None
    if issued > at + dt.timedelta(minutes=5) or at - issued > dt.timedelta(
        days=UNSUBSCRIBE_VALID_DAYS
    ):
        return None
    return shop_id, contact_id


UNSUBSCRIBE_ROUNDS = 5


class LinkState(enum.Enum):
    """What an unsubscribe link finds, read without changing anything."""

    INVALID = "invalid"  # not signed by the shop, altered or expired
    GONE = "gone"  # genuine, but its contact was erased or deleted
    ACTIVE = "active"  # a click would record UNSUBSCRIBED
    UNSUBSCRIBED = "unsubscribed"


class Unsubscribed(enum.Enum):
    NOW = "now"
    ALREADY = "already"
    INVALID = "invalid"
    GONE = "gone"  # nobody left to unsubscribe: nothing is stored
    BUSY = "busy"  # consent kept changing meanwhile: the person should click again


@dataclass(frozen=True)
class LinkTarget:
    state: LinkState
    shop_name: str | None = None  # for the page; None for an invalid link
    contact: Doc | None = None


async def _linked_contact(database: Database, shop_id: str, contact_id: ObjectId) -> Doc | None:
    """The contact a link names, or the one it was merged into (its `mergedIds`)."""
    for where in ({"_id": contact_id}, {"mergedIds": contact_id}):
        found = await database.contacts.find_one(
            {"shopId": shop_id, **where}, {"shopId": 1, "consent": 1}
        )
        if found is not None:
            return found
    return None


async def read_link(database: Database, token: str, at: dt.datetime | None = None) -> LinkTarget:
    """Where an unsubscribe link leads; reads only (a GET or HEAD of the link changes nothing)."""
    found = await verify_token(database, token, at or now())
    if found is None:
        return LinkTarget(LinkState.INVALID)
    shop_id, contact_id = found
    shop = await database.shops.find_one({"_id": shop_id}, {"name": 1})
    shop_name = str((shop or {}).get("name") or shop_id)
    contact = await _linked_contact(database, shop_id, contact_id)
    if contact is None:
        return LinkTarget(LinkState.GONE, shop_name)
    state = LinkState.UNSUBSCRIBED if current_state(contact) == "UNSUBSCRIBED" else LinkState.ACTIVE
    return LinkTarget(state, shop_name, contact)


async def unsubscribe(database: Database, token: str) -> tuple[Unsubscribed, LinkTarget]:
    """Record UNSUBSCRIBED (source UNSUBSCRIBE_LINK) for the link's contact, or the one it merged into.

    Erased or deleted contacts (GONE) get nothing stored: no event may bring
    back a trace of someone erased.
    """
    at = now()
    target = await read_link(database, token, at)
    if target.state is LinkState.INVALID:
        return Unsubscribed.INVALID, target
    for _ in range(UNSUBSCRIBE_ROUNDS):
        contact = target.contact
        if contact is None:
            return Unsubscribed.GONE, target
        if current_state(contact) == "UNSUBSCRIBED":
            return Unsubscribed.ALREADY, target  # a second click changes nothing
        # The click must win. The current event may carry a time slightly
        # ahead of ours (consentUpdate allows some clock skew): then this one
        # takes that time, and ties go to the later write.
        current_at = (contact.get("consent") or {}).get("at")
        event = ConsentEvent(
            state="UNSUBSCRIBED",
            at=max(at, current_at) if current_at is not None else at,
            source="UNSUBSCRIBE_LINK",
            evidence="Unsubscribe link in a marketing e-mail",
        )
        after = await record_consent(database, contact["shopId"], contact["_id"], event)
        if after is not None and current_state(after) == "UNSUBSCRIBED":
            return Unsubscribed.NOW, target
        # A newer event arrived meanwhile (try again, after it), or the contact
        # was merged away or erased between the read and the write (find where it went).
        target = await read_link(database, token, at)
    # Newer events kept arriving: the click is in the history, not the state.
    return Unsubscribed.BUSY, target


async def find_message(database: Database, shop_id: str, message_id: ObjectId) -> Doc | None:
    return await database.messages.find_one({"shopId": shop_id, "_id": message_id}, {"body": 0})
