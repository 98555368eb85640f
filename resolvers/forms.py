"""Contact forms on the shop's website: a message that finds or makes a contact (a LEAD).

Forms are public: anyone can submit any email address. So a submission
never changes an existing contact's details, never makes anyone
SUBSCRIBED (a checked box asks for confirmation: PENDING), and answers the
same whether or not the email was known. Submissions are rate-limited per
shop and client address.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from loaders.contacts import LIST_PROJECTION
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now as utc_now
from resolvers.consent import ConsentEvent, current_state, record_consent
from resolvers.contact_events import contacts_created
from resolvers.contacts import new_contact
from resolvers.errors import Field, RateLimited, Refused
from resolvers.validation import NAME_MAX, TEXT_MAX, URL_MAX, Checker

MESSAGE_MAX = TEXT_MAX
CONSENT_TEXT_MAX = TEXT_MAX
RATE_WINDOW_SECONDS = 60
# Fields of a new contact the log update creates itself ($push and $inc).
_LOG_FIELDS = ("activity", "activityCount", "activityEmbedded", "updatedAt")


@dataclass
class FormData:
    email: str | None
    message: str | None
    name: str | None = None
    phone: str | None = None
    accepts_marketing: bool | None = False
    consent_text: str | None = None
    page_url: str | None = None


@dataclass
class CheckedForm:
    email: str
    email_key: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    message: str
    accepts_marketing: bool
    evidence: str | None


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    """A form has one name field: the first word is the first name, the rest the last name."""
    if not name:
        return None, None
    first, _, rest = name.partition(" ")
    return first, rest.strip() or None


def check_form(data: FormData) -> CheckedForm:
    check = Checker()
    p: Field = ("input",)
    email = check.email((*p, "email"), data.email, required=True)
    name = check.text((*p, "name"), data.name, NAME_MAX)
    phone = check.phone((*p, "phone"), data.phone)
    message = check.text((*p, "message"), data.message, MESSAGE_MAX, required=True, multiline=True)
    consent_text = check.text(
        (*p, "consentText"), data.consent_text, CONSENT_TEXT_MAX, multiline=True
    )
    page_url = check.text((*p, "pageUrl"), data.page_url, URL_MAX)
    if page_url is not None and not page_url.lower().startswith(("http://", "https://")):
        check.add((*p, "pageUrl"), "Page URL must be an http(s) address.", "INVALID")
    if not check.ok:
        raise Refused(check.problems)
    assert email is not None and message is not None
    first, last = _split_name(name)
    evidence = " | ".join(part for part in (consent_text, page_url) if part) or None
    return CheckedForm(
        email=email[0],
        email_key=email[1],
        first_name=first,
        last_name=last,
        phone=phone,
        message=message,
        accepts_marketing=data.accepts_marketing is True,
        evidence=evidence,
    )


async def count_hit(
    database: Database, shop_id: str, key: str, limit: int, at: dt.datetime | None = None
) -> int:
    """Count one call against a fixed one-minute window; RateLimited past `limit`.

    One counter document per (shop, key, window), bumped atomically; the
    TTL index on `expiresAt` removes old windows.
    """
    at = at or utc_now()
    window = int(at.timestamp()) // RATE_WINDOW_SECONDS
    expires = dt.datetime.fromtimestamp((window + 2) * RATE_WINDOW_SECONDS, dt.UTC)
    for _ in range(10):
        try:
            doc = await database.rate_limits.find_one_and_update(
                {"shopId": shop_id, "key": key, "window": window},
                {"$inc": {"count": 1}, "$setOnInsert": {"expiresAt": expires}},
                projection={"count": 1},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            break
        except DuplicateKeyError:  # two first calls of a window raced to make the counter
            continue
    else:
        raise RuntimeError("could not count a rate-limited call")
    assert doc is not None  # an upsert returning the document after the update finds one
    count = int(doc["count"])
    if count > limit:
        retry = (window + 1) * RATE_WINDOW_SECONDS - int(at.timestamp())
        wait = "1 second" if retry == 1 else f"{retry} seconds"
        raise RateLimited(f"Too many submissions from this address; try again in {wait}.")
    return count


async def submit_form(
    database: Database, shop_id: str, data: FormData, *, client: str, rate_per_minute: int
) -> None:
    """Record a form submission.

    Returns nothing on purpose: the caller must learn nothing about the email.
    """
    await count_hit(database, shop_id, f"form:{client}", rate_per_minute)
    checked = check_form(data)
    at = utc_now()
    lead = new_contact(
        shop_id,
        checked.email,
        checked.email_key,
        "LEAD",
        {"firstName": checked.first_name, "lastName": checked.last_name, "phone": checked.phone},
        at,
    )
    on_insert = {k: v for k, v in lead.items() if k not in _LOG_FIELDS}
    # Details apply only to a contact this submission makes: an existing
    # contact must not be changed by whoever knows its email.
    update = activity.merge_updates(
        {"$setOnInsert": on_insert, "$set": {"updatedAt": at}},
        activity.push([activity.entry("FORM_SUBMITTED", text=checked.message, at=at)]),
    )

    async def work(session: Any) -> Doc | None:
        found = await database.contacts.find_one_and_update(
            {"shopId": shop_id, "emailKey": checked.email_key},
            update,
            projection=LIST_PROJECTION,
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if found is not None and found["_id"] == lead["_id"]:  # this submission made it
            await contacts_created(database, shop_id, [lead], session=session)
        return found

    contact: Doc | None = None
    for _ in range(10):
        try:
            contact = await activity.in_transaction(database, work)
            break
        except DuplicateKeyError:  # made meanwhile by another call: the next try finds it
            continue
    if contact is None:
        raise RuntimeError("could not record a form submission")
    if checked.accepts_marketing and current_state(contact) not in ("SUBSCRIBED", "PENDING"):
        # Someone already subscribed stays so: a form can ask, not confirm or downgrade.
        # A request already pending stands: anyone may submit forms, and an
        # event per submission would grow the contact's history without end.
        event = ConsentEvent(
            state="PENDING", at=at, source="CONTACT_FORM", evidence=checked.evidence
        )
        contact = await record_consent(database, shop_id, contact["_id"], event) or contact
    await activity.spill_overflow(database, shop_id, contact)
