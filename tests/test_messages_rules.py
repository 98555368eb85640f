"""Messages and unsubscribe links to the edge: what is queued, what a link proves, what a click stores.

tests/test_messages.py tells the story through the API, a real SMTP server
and the unsubscribe page; these call resolvers/messages.py directly with a
fixed clock for the exact rules: the stored message, the limits of a
subject and a body, who may get marketing, the shop's signing secret, a
link's age on both sides of its bounds, where a link leads after a merge or
an erasure, and what a click records when other consent events race it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
from typing import Any

import pytest
from bson import ObjectId

from resolvers import messages
from resolvers.consent import ConsentEvent
from resolvers.errors import Refused
from resolvers.messages import (
    LinkState,
    LinkTarget,
    Unsubscribed,
    check_message,
    find_message,
    make_token,
    queue_message,
    read_link,
    shop_secret,
    unsubscribe,
    verify_token,
)
from resolvers.shops import ensure_shop

SHOP = "acme"
OTHER = "globex"
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=365)
SECOND = dt.timedelta(seconds=1)
EVIDENCE = "Unsubscribe link in a marketing e-mail"


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages, "now", lambda: NOW)


def problems(refusal: pytest.ExceptionInfo[Refused]) -> list[tuple[Any, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def signature(secret: bytes, payload: str) -> str:
    """The documented signature: HMAC-SHA256, first 128 bits, base64url without padding."""
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def shop(database: Any, shop_id: str = SHOP, name: str | None = "Acme Store") -> bytes:
    """A shop with its signing secret made."""
    await ensure_shop(database, shop_id, name=name)
    secret = await shop_secret(database, shop_id)
    assert secret is not None
    return secret


def consent(state: str, at: dt.datetime = NOW - YEAR) -> dict[str, Any]:
    event = {
        "state": state,
        "optInLevel": "SINGLE_OPT_IN" if state == "SUBSCRIBED" else None,
        "at": at,
        "source": "API",
        "actor": None,
        "evidence": None,
    }
    return {
        "state": state,
        "optInLevel": event["optInLevel"],
        "at": at,
        "source": "API",
        "history": [event],
    }


async def person(
    database: Any,
    state: str | None = "SUBSCRIBED",
    *,
    shop_id: str = SHOP,
    at: dt.datetime = NOW - YEAR,
    **fields: Any,
) -> ObjectId:
    oid = ObjectId()
    doc: dict[str, Any] = {
        "_id": oid,
        "shopId": shop_id,
        "email": f"Ann.{oid}@Example.com",
        "emailKey": f"ann.{oid}@example.com",
        **fields,
    }
    if state is not None:
        doc["consent"] = consent(state, at)
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def stored_consent(database: Any, contact_id: ObjectId) -> dict[str, Any]:
    doc = await database.contacts.find_one({"_id": contact_id})
    assert doc is not None
    return doc["consent"]


# ---------------------------------------------------------------- subject and body


def test_subject_and_body_are_trimmed_and_normalized():
    subject, body = check_message("  Cafe\u0301 news \t", "\n Hello Ann,\n\nsee you.\n ")

    assert (subject, body) == ("Caf\u00e9 news", "Hello Ann,\n\nsee you.")


def test_a_subject_of_200_characters_is_taken_and_201_refused():
    assert check_message("s" * 200, "b") == ("s" * 200, "b")
    with pytest.raises(Refused) as refused:
        check_message("s" * 201, "b")

    assert problems(refused) == [
        (("subject",), "Subject is longer than 200 characters.", "TOO_LONG")
    ]


def test_a_body_of_100000_characters_is_taken_and_100001_refused():
    assert check_message("s", "b" * 100_000) == ("s", "b" * 100_000)
    with pytest.raises(Refused) as refused:
        check_message("s", "b" * 100_001)

    assert problems(refused) == [(("body",), "Body is longer than 100000 characters.", "TOO_LONG")]


def test_a_subject_is_one_line_and_a_body_may_have_many():
    with pytest.raises(Refused) as refused:
        check_message("Sale\r\nBcc: all@example.com", "line one\nline two")

    assert problems(refused) == [(("subject",), "Subject contains control characters.", "INVALID")]
    with pytest.raises(Refused) as refused:
        check_message("Sale", "line one\x00")
    assert problems(refused) == [(("body",), "Body contains control characters.", "INVALID")]


@pytest.mark.parametrize(("subject", "body"), [(None, None), (" ", "\n\t")])
def test_a_missing_subject_and_body_are_both_named(subject, body):
    with pytest.raises(Refused) as refused:
        check_message(subject, body)

    assert problems(refused) == [
        (("subject",), "Subject is required.", "REQUIRED"),
        (("body",), "Body is required.", "REQUIRED"),
    ]


# ---------------------------------------------------------------- queueing


async def queue(database: Any, contact_id: ObjectId, marketing: bool, **more: Any) -> dict:
    return await queue_message(
        database,
        more.pop("shop_id", SHOP),
        contact_id,
        more.pop("subject", " Your order "),
        more.pop("body", "Hello Ann,\nyour parcel is on its way."),
        marketing=marketing,
        author="Admin Person",
        base_url=more.pop("base_url", "https://shop.example"),
    )


async def test_a_message_is_stored_as_returned_and_waits_for_its_first_try(database):
    await shop(database)
    ann = await person(database, None, email="Ann@Example.com", emailKey="ann@example.com")

    queued = await queue(database, ann, marketing=False)

    assert isinstance(queued["_id"], ObjectId)
    assert queued == {
        "_id": queued["_id"],
        "shopId": SHOP,
        "contactId": ann,
        "to": "Ann@Example.com",
        "toKey": "ann@example.com",
        "subject": "Your order",
        "body": "Hello Ann,\nyour parcel is on its way.",
        "marketing": False,
        "status": "QUEUED",
        "attempts": 0,
        "nextAttemptAt": NOW,
        "lastError": None,
        "sentAt": None,
        "author": "Admin Person",
        "createdAt": NOW,
    }
    assert await database.messages.find({}).to_list() == [queued]
    again = await queue(database, ann, marketing=False)
    assert again["_id"] != queued["_id"]
    assert await database.messages.count_documents({}) == 2


async def test_a_marketing_message_carries_the_contacts_own_unsubscribe_link(database):
    await ensure_shop(database, SHOP)
    fan = await person(database, "SUBSCRIBED")

    # Only the trailing slash of the base is dropped, not the letters before it.
    queued = await queue(database, fan, marketing=True, base_url="https://shop.example/INBOX/")

    # The shop's secret is made on its first marketing message.
    secret = await shop_secret(database, SHOP, create=False)
    assert secret is not None
    token = make_token(secret, SHOP, fan, NOW)
    assert queued["unsubscribeUrl"] == f"https://shop.example/INBOX/unsubscribe/{token}"
    assert queued["marketing"] is True and queued["subject"] == "Your order"
    assert await database.messages.find({}).to_list() == [queued]
    assert await verify_token(database, token, NOW) == (SHOP, fan)


@pytest.mark.parametrize("state", [None, "NOT_SUBSCRIBED", "PENDING", "UNSUBSCRIBED"])
async def test_marketing_goes_only_to_subscribed_contacts(database, state):
    await shop(database)
    ann = await person(database, state)

    with pytest.raises(Refused) as refused:
        await queue(database, ann, marketing=True)

    assert problems(refused) == [
        (
            ("marketing",),
            "Marketing e-mail goes only to contacts whose consent is SUBSCRIBED.",
            "NOT_ALLOWED",
        )
    ]
    assert await database.messages.count_documents({}) == 0
    # Anything else still reaches them, with no unsubscribe link.
    receipt = await queue(database, ann, marketing=False)
    assert "unsubscribeUrl" not in receipt and receipt["marketing"] is False


async def test_a_contact_of_another_shop_or_nobody_gets_nothing(database):
    await shop(database)
    await shop(database, OTHER)
    theirs = await person(database, "SUBSCRIBED", shop_id=OTHER)

    for contact_id, marketing in ((theirs, False), (theirs, True), (ObjectId(), False)):
        with pytest.raises(Refused) as refused:
            await queue(database, contact_id, marketing)
        assert problems(refused) == [(("contactId",), "Contact not found.", "NOT_FOUND")]
    assert await database.messages.count_documents({}) == 0


async def test_bad_text_is_refused_before_anything_is_read_or_stored(database):
    with pytest.raises(Refused) as refused:
        await queue(database, ObjectId(), False, subject="", body="b")

    assert problems(refused) == [(("subject",), "Subject is required.", "REQUIRED")]
    assert await database.messages.count_documents({}) == 0


async def test_marketing_for_a_shop_that_is_gone_is_not_found(database):
    orphan = await person(database, "SUBSCRIBED", shop_id="gone")

    with pytest.raises(Refused) as refused:
        await queue(database, orphan, True, shop_id="gone")

    assert problems(refused) == [(("contactId",), "Contact not found.", "NOT_FOUND")]
    assert await database.messages.count_documents({}) == 0
    assert await database.shops.count_documents({}) == 0


# ---------------------------------------------------------------- the shop's secret


async def test_the_secret_is_made_once_on_first_use_and_kept(database):
    await ensure_shop(database, SHOP)
    assert await shop_secret(database, SHOP, create=False) is None
    assert "unsubscribeSecret" not in await database.shops.find_one({"_id": SHOP})

    first = await shop_secret(database, SHOP)

    assert first is not None and len(first) == 32
    stored = await database.shops.find_one({"_id": SHOP})
    assert stored["unsubscribeSecret"] == first.hex()
    assert await shop_secret(database, SHOP) == first
    assert await shop_secret(database, SHOP, create=False) == first
    await ensure_shop(database, OTHER)
    assert await shop_secret(database, OTHER) not in (None, first)


async def test_a_shop_that_does_not_exist_has_no_secret_and_gets_none(database):
    assert await shop_secret(database, SHOP) is None
    assert await shop_secret(database, SHOP, create=False) is None
    assert await database.shops.count_documents({}) == 0


class _RivalShops:
    """The shops collection, where another writer stores its secret just before each of ours."""

    def __init__(self, shops: Any, rival: str) -> None:
        self.shops = shops
        self.rival = rival

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.shops.find_one(*args, **kwargs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        await self.shops.update_one({"_id": SHOP}, {"$set": {"unsubscribeSecret": self.rival}})
        return await self.shops.update_one(*args, **kwargs)


class _RivalDatabase:
    def __init__(self, database: Any, rival: str) -> None:
        self.shops = _RivalShops(database.shops, rival)


async def test_only_the_first_writers_secret_sticks(database):
    await ensure_shop(database, SHOP)
    rival = "ab" * 32

    secret = await shop_secret(_RivalDatabase(database, rival), SHOP)  # type: ignore[arg-type]

    assert secret == bytes.fromhex(rival)
    assert (await database.shops.find_one({"_id": SHOP}))["unsubscribeSecret"] == rival


# ---------------------------------------------------------------- tokens


async def test_a_token_names_shop_contact_and_time_and_is_signed_by_the_shop(database):
    secret = await shop(database)
    ann = await person(database)

    token = make_token(secret, SHOP, ann, NOW)

    payload = f"{SHOP}.{ann}.{int(NOW.timestamp()):x}"
    assert payload == f"acme.{ann}.125bbd020"
    assert token == f"{payload}.{signature(secret, payload)}"
    assert len(token.rsplit(".", 1)[1]) == 22
    assert await verify_token(database, token, NOW) == (SHOP, ann)


async def test_a_token_is_good_for_365_days_and_not_a_second_more(database):
    secret = await shop(database)
    ann = await person(database)

    assert await verify_token(database, make_token(secret, SHOP, ann, NOW - YEAR), NOW) == (
        SHOP,
        ann,
    )
    assert (
        await verify_token(database, make_token(secret, SHOP, ann, NOW - YEAR - SECOND), NOW)
        is None
    )


async def test_a_token_from_up_to_five_minutes_ahead_is_taken(database):
    secret = await shop(database)
    ann = await person(database)
    ahead = NOW + dt.timedelta(minutes=5)

    assert await verify_token(database, make_token(secret, SHOP, ann, ahead), NOW) == (SHOP, ann)
    assert await verify_token(database, make_token(secret, SHOP, ann, ahead + SECOND), NOW) is None


async def test_an_altered_or_foreign_token_proves_nothing(database):
    secret = await shop(database)
    other_secret = await shop(database, OTHER)
    ann = await person(database)
    good = make_token(secret, SHOP, ann, NOW)
    shop_id, contact_hex, issued, sig = good.split(".")
    flipped = sig[:-2] + ("BA" if sig.endswith("AA") else "AA")
    far = "ffffffffffff"  # a genuine signature over a time past any calendar
    forged = [
        f"{shop_id}.{ObjectId()}.{issued}.{sig}",
        f"{shop_id}.{contact_hex}.{int(NOW.timestamp()) - 1:x}.{sig}",
        f"{shop_id}.{contact_hex}.{issued}.{flipped}",
        f"{OTHER}.{contact_hex}.{issued}.{sig}",
        make_token(other_secret, SHOP, ann, NOW),
        make_token(secret, "unknown", ann, NOW),
        f"{SHOP}.{contact_hex}.{far}.{signature(secret, f'{SHOP}.{contact_hex}.{far}')}",
        f"{good}.",
        f"x{good}",
        good.upper(),
        "nonsense",
        "",
        "a" * 400,
        None,
        good.encode(),
    ]

    for token in forged:
        assert await verify_token(database, token, NOW) is None, token  # type: ignore[arg-type]
    assert await verify_token(database, good, NOW) == (SHOP, ann)


async def test_checking_a_token_makes_no_secret_for_a_shop_without_one(database):
    await ensure_shop(database, SHOP)
    ann = await person(database)
    payload = f"{SHOP}.{ann}.{int(NOW.timestamp()):x}"

    assert await verify_token(database, f"{payload}.{signature(b'', payload)}", NOW) is None

    assert "unsubscribeSecret" not in await database.shops.find_one({"_id": SHOP})


# ---------------------------------------------------------------- where a link leads


async def test_a_link_leads_to_its_contact_as_stored(database):
    await shop(database, OTHER, name="Globex")  # stored first: the link must pick its own shop
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")

    target = await read_link(database, make_token(secret, SHOP, ann, NOW))

    assert target == LinkTarget(
        LinkState.ACTIVE,
        "Acme Store",
        {"_id": ann, "shopId": SHOP, "consent": consent("SUBSCRIBED")},
    )


async def test_a_link_of_an_unsubscribed_contact_says_so(database):
    secret = await shop(database)
    ann = await person(database, "UNSUBSCRIBED")

    target = await read_link(database, make_token(secret, SHOP, ann, NOW))

    assert (target.state, target.shop_name) == (LinkState.UNSUBSCRIBED, "Acme Store")
    assert target.contact is not None and target.contact["_id"] == ann


async def test_a_shop_without_a_name_is_shown_by_its_id(database):
    secret = await shop(database)
    await database.shops.update_one({"_id": SHOP}, {"$unset": {"name": ""}})
    ann = await person(database)

    target = await read_link(database, make_token(secret, SHOP, ann, NOW))

    assert (target.state, target.shop_name) == (LinkState.ACTIVE, SHOP)


async def test_a_link_to_an_erased_contact_finds_nobody(database):
    secret = await shop(database)
    ann = await person(database)
    await database.contacts.delete_one({"_id": ann})

    target = await read_link(database, make_token(secret, SHOP, ann, NOW))

    assert target == LinkTarget(LinkState.GONE, "Acme Store", None)


async def test_a_link_of_a_merged_away_contact_leads_to_the_survivor(database):
    secret = await shop(database)
    merged_away = ObjectId()
    survivor = await person(database, "SUBSCRIBED", mergedIds=[ObjectId(), merged_away])

    target = await read_link(database, make_token(secret, SHOP, merged_away, NOW))

    assert target.state is LinkState.ACTIVE
    assert target.contact is not None and target.contact["_id"] == survivor


async def test_a_link_never_leads_into_another_shop(database):
    secret = await shop(database)
    await shop(database, OTHER)
    same_id = await person(database, shop_id=OTHER)
    merged_there = ObjectId()
    await person(database, shop_id=OTHER, mergedIds=[merged_there])

    for contact_id in (same_id, merged_there):
        target = await read_link(database, make_token(secret, SHOP, contact_id, NOW))
        assert target == LinkTarget(LinkState.GONE, "Acme Store", None)


async def test_a_link_is_judged_at_the_time_asked_or_else_now(database):
    secret = await shop(database)
    ann = await person(database)
    token = make_token(secret, SHOP, ann, NOW - YEAR - dt.timedelta(days=30))

    assert await read_link(database, token) == LinkTarget(LinkState.INVALID)
    earlier = await read_link(database, token, NOW - dt.timedelta(days=30))
    assert earlier.state is LinkState.ACTIVE


async def test_an_invalid_link_shows_nothing_of_the_shop(database):
    await shop(database)

    target = await read_link(database, "acme.nonsense")

    assert (target.state, target.shop_name, target.contact) == (LinkState.INVALID, None, None)


# ---------------------------------------------------------------- a click


async def test_a_click_records_unsubscribed_from_the_link(database):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    before = await read_link(database, make_token(secret, SHOP, ann, NOW))

    result = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert result == (Unsubscribed.NOW, before)
    stored = await stored_consent(database, ann)
    assert (stored["state"], stored["optInLevel"], stored["at"], stored["source"]) == (
        "UNSUBSCRIBED",
        None,
        NOW,
        "UNSUBSCRIBE_LINK",
    )
    assert stored["history"][1:] == [
        {
            "state": "UNSUBSCRIBED",
            "optInLevel": None,
            "at": NOW,
            "source": "UNSUBSCRIBE_LINK",
            "actor": None,
            "evidence": EVIDENCE,
        }
    ]


async def test_a_second_click_changes_nothing(database):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    token = make_token(secret, SHOP, ann, NOW)
    await unsubscribe(database, token)
    once = await database.contacts.find_one({"_id": ann})

    status, target = await unsubscribe(database, token)

    assert (status, target.state) == (Unsubscribed.ALREADY, LinkState.UNSUBSCRIBED)
    assert await database.contacts.find_one({"_id": ann}) == once


async def test_a_contact_without_any_consent_is_unsubscribed_at_the_click(database):
    secret = await shop(database)
    ann = await person(database, None)

    status, _ = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert status is Unsubscribed.NOW
    stored = await stored_consent(database, ann)
    assert (stored["state"], stored["at"], len(stored["history"])) == ("UNSUBSCRIBED", NOW, 1)


async def test_the_click_wins_over_a_consent_dated_ahead_of_it(database):
    secret = await shop(database)
    ahead = NOW + dt.timedelta(minutes=3)
    ann = await person(database, "SUBSCRIBED", at=ahead)

    status, _ = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert status is Unsubscribed.NOW
    stored = await stored_consent(database, ann)
    assert (stored["state"], stored["at"]) == ("UNSUBSCRIBED", ahead)
    assert [e["source"] for e in stored["history"]] == ["API", "UNSUBSCRIBE_LINK"]


async def test_an_invalid_link_stores_nothing(database):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    expired = make_token(secret, SHOP, ann, NOW - YEAR - SECOND)

    assert await unsubscribe(database, expired) == (
        Unsubscribed.INVALID,
        LinkTarget(LinkState.INVALID),
    )
    assert await stored_consent(database, ann) == consent("SUBSCRIBED")


async def test_a_link_to_an_erased_contact_stores_nothing(database):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    await database.contacts.delete_one({"_id": ann})

    result = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert result == (Unsubscribed.GONE, LinkTarget(LinkState.GONE, "Acme Store", None))
    assert await database.contacts.count_documents({}) == 0


async def test_a_link_of_a_merged_away_contact_unsubscribes_the_survivor(database):
    secret = await shop(database)
    merged_away = ObjectId()
    survivor = await person(database, "SUBSCRIBED", mergedIds=[merged_away])

    status, target = await unsubscribe(database, make_token(secret, SHOP, merged_away, NOW))

    assert status is Unsubscribed.NOW
    assert target.contact is not None and target.contact["_id"] == survivor
    assert (await stored_consent(database, survivor))["state"] == "UNSUBSCRIBED"
    assert await database.contacts.count_documents({}) == 1


def outrun_by_newer_events(
    monkeypatch: pytest.MonkeyPatch, times: int
) -> list[tuple[ObjectId, ConsentEvent]]:
    """Another SUBSCRIBED, a minute later, follows each of the first `times` clicks' writes."""
    real = messages.record_consent
    calls: list[tuple[ObjectId, ConsentEvent]] = []

    async def outrun(database: Any, shop_id: str, contact_id: ObjectId, event: ConsentEvent) -> Any:
        calls.append((contact_id, event))
        after = await real(database, shop_id, contact_id, event)
        if len(calls) > times:
            return after
        newer = ConsentEvent("SUBSCRIBED", event.at + dt.timedelta(minutes=1), "API")
        return await real(database, shop_id, contact_id, newer)

    monkeypatch.setattr(messages, "record_consent", outrun)
    return calls


async def test_a_click_outrun_once_tries_again_after_the_newer_event(database, monkeypatch):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    calls = outrun_by_newer_events(monkeypatch, times=1)

    status, target = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert status is Unsubscribed.NOW
    assert [(c, e.at) for c, e in calls] == [(ann, NOW), (ann, NOW + dt.timedelta(minutes=1))]
    assert target.state is LinkState.ACTIVE  # as read before the winning round
    stored = await stored_consent(database, ann)
    assert (stored["state"], stored["at"]) == ("UNSUBSCRIBED", NOW + dt.timedelta(minutes=1))


async def test_a_click_outrun_five_times_asks_to_click_again(database, monkeypatch):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    calls = outrun_by_newer_events(monkeypatch, times=10)

    status, target = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert status is Unsubscribed.BUSY
    assert len(calls) == 5
    assert target.state is LinkState.ACTIVE
    history = (await stored_consent(database, ann))["history"]
    assert [e["source"] for e in history].count("UNSUBSCRIBE_LINK") == 5
    assert (await stored_consent(database, ann))["state"] == "SUBSCRIBED"


async def test_a_contact_erased_during_the_click_gets_nothing_stored(database, monkeypatch):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    real = messages.record_consent

    async def erased_first(database: Any, shop_id: str, contact_id: ObjectId, event: Any) -> Any:
        await database.contacts.delete_one({"_id": contact_id})
        return await real(database, shop_id, contact_id, event)

    monkeypatch.setattr(messages, "record_consent", erased_first)

    status, target = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert (status, target) == (Unsubscribed.GONE, LinkTarget(LinkState.GONE, "Acme Store"))
    assert await database.contacts.count_documents({}) == 0


async def test_a_contact_merged_away_during_the_click_unsubscribes_the_survivor(
    database, monkeypatch
):
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    real = messages.record_consent
    survivor: list[ObjectId] = []

    async def merged_first(database: Any, shop_id: str, contact_id: ObjectId, event: Any) -> Any:
        if not survivor:
            await database.contacts.delete_one({"_id": contact_id})
            survivor.append(await person(database, "SUBSCRIBED", mergedIds=[contact_id]))
        return await real(database, shop_id, contact_id, event)

    monkeypatch.setattr(messages, "record_consent", merged_first)

    status, target = await unsubscribe(database, make_token(secret, SHOP, ann, NOW))

    assert status is Unsubscribed.NOW
    assert target.contact is not None and target.contact["_id"] == survivor[0]
    assert (await stored_consent(database, survivor[0]))["state"] == "UNSUBSCRIBED"


async def test_the_click_is_judged_and_stored_at_the_moment_it_arrived(database, monkeypatch):
    """A link on its last valid second stays valid through every round of the same click."""
    secret = await shop(database)
    ann = await person(database, "SUBSCRIBED")
    days = itertools.count()
    monkeypatch.setattr(messages, "now", lambda: NOW + dt.timedelta(days=next(days)))
    calls = outrun_by_newer_events(monkeypatch, times=1)

    status, _ = await unsubscribe(database, make_token(secret, SHOP, ann, NOW - YEAR))

    assert status is Unsubscribed.NOW
    assert [e.at for _, e in calls] == [NOW, NOW + dt.timedelta(minutes=1)]


# ---------------------------------------------------------------- reading a message


async def test_a_message_is_found_in_its_shop_without_its_body(database):
    await shop(database)
    await shop(database, OTHER)
    queued = await queue(database, await person(database), marketing=False)

    found = await find_message(database, SHOP, queued["_id"])

    assert found == {k: v for k, v in queued.items() if k != "body"}
    assert await find_message(database, OTHER, queued["_id"]) is None
    assert await find_message(database, SHOP, ObjectId()) is None
