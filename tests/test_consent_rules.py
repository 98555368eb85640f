"""Consent rules to the edge: which time wins, the clock's bounds, the messages, what else moves.

tests/test_consent.py covers the story of consentUpdate; these pin its
bounds (five minutes ahead of the server's clock, not before 1970), the
exact messages, a tie in time, and what a consent write does to the rest of
the contact (its update time, its activity log).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from conftest import SHOP

from graph.types.node import decode_id
from resolvers import activity
from resolvers import consent as consent_rules
from resolvers.activity import EMBEDDED_KEEP, SPILL_AT
from resolvers.consent import ConsentEvent, check_event, current_state, record_consent
from resolvers.contacts import new_contact
from resolvers.errors import Refused
from resolvers.events import contact_gid

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
UPDATE = """
mutation($id: ID!, $state: MarketingState!, $level: OptInLevel, $evidence: String, $at: DateTime) {
  consentUpdate(contactId: $id, state: $state, optInLevel: $level, evidence: $evidence, at: $at) {
    contact { updatedAt consent { state optInLevel updatedAt source history { state at } } }
    userErrors { field message code }
  }
}
"""
SEND = """
mutation($id: ID!) {
  messageSend(contactId: $id, subject: "Sale", body: "20% off", marketing: true) {
    message { marketing status }
    userErrors { field message code }
  }
}
"""
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
T = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


async def contact(api: Any, email: str = "ann@example.com") -> str:
    return (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]


async def update(api: Any, gid: str, state: str, **more: Any) -> dict:
    return (await api.data(UPDATE, {"id": gid, "state": state, **more}))["consentUpdate"]


def problems(
    refusal: pytest.ExceptionInfo[Refused],
) -> list[tuple[tuple[str | int, ...] | None, str, str]]:
    return [(p.field, p.message, p.code) for p in refusal.value.problems]


def test_a_time_up_to_five_minutes_ahead_of_the_clock_is_taken_as_given():
    edge = NOW + dt.timedelta(minutes=5)

    assert check_event("SUBSCRIBED", None, None, edge, now=NOW) == (None, edge)
    with pytest.raises(Refused) as refused:
        check_event("SUBSCRIBED", None, None, edge + dt.timedelta(microseconds=1), now=NOW)

    assert problems(refused) == [(("at",), "Consent cannot be given in the future.", "INVALID")]


def test_a_time_from_1970_on_is_taken_and_earlier_is_refused():
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

    assert check_event("UNSUBSCRIBED", None, None, epoch, now=NOW) == (None, epoch)
    with pytest.raises(Refused) as refused:
        check_event("UNSUBSCRIBED", None, None, epoch - dt.timedelta(microseconds=1), now=NOW)

    assert problems(refused) == [(("at",), "The time is before 1970.", "INVALID")]


def test_no_time_means_now_and_a_time_without_offset_is_refused():
    assert check_event("PENDING", "UNKNOWN", None, None, now=NOW) == (None, NOW)
    # Another offset is the same instant, kept as given.
    cet = dt.datetime(2025, 6, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert check_event("PENDING", None, None, cet, now=NOW) == (None, cet)

    with pytest.raises(Refused) as refused:
        check_event("PENDING", None, None, dt.datetime(2025, 6, 1), now=NOW)

    assert problems(refused) == [(("at",), "The time needs a UTC offset.", "INVALID")]


@pytest.mark.parametrize(
    ("state", "level"),
    [
        ("SUBSCRIBED", "SINGLE_OPT_IN"),
        ("SUBSCRIBED", "CONFIRMED_OPT_IN"),
        ("PENDING", "UNKNOWN"),
        ("NOT_SUBSCRIBED", None),
        ("UNSUBSCRIBED", None),
    ],
)
def test_a_level_goes_with_a_yes_and_only_with_one(state, level):
    assert check_event(state, level, None, T, now=NOW) == (None, T)


@pytest.mark.parametrize("state", ["NOT_SUBSCRIBED", "UNSUBSCRIBED"])
def test_a_level_with_a_no_is_refused(state):
    with pytest.raises(Refused) as refused:
        check_event(state, "SINGLE_OPT_IN", None, T, now=NOW)

    assert problems(refused) == [
        (("optInLevel",), "An opt-in level goes with SUBSCRIBED or PENDING only.", "INVALID")
    ]


def test_every_problem_of_an_event_is_named_at_once():
    with pytest.raises(Refused) as refused:
        check_event("MAYBE", "DOUBLE", "x" * 5001, dt.datetime(1969, 1, 1, tzinfo=dt.UTC), now=NOW)

    assert problems(refused) == [
        (("state",), "Unknown marketing state.", "INVALID"),
        (("optInLevel",), "Unknown opt-in level.", "INVALID"),
        (("evidence",), "Evidence is longer than 5000 characters.", "TOO_LONG"),
        (("at",), "The time is before 1970.", "INVALID"),
    ]


def test_evidence_is_kept_trimmed_with_its_line_breaks():
    evidence, _ = check_event("SUBSCRIBED", None, "\n  I agree\n\tto the newsletter.  ", T, now=NOW)

    assert evidence == "I agree\n\tto the newsletter."


async def test_the_api_names_a_refused_time_and_level(api, database):
    gid = await contact(api)
    before = await database.contacts.find_one({"shopId": SHOP})
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)

    refusals = [
        await update(api, gid, "SUBSCRIBED", at=iso(future)),
        await update(api, gid, "SUBSCRIBED", at="1969-12-31T23:59:59.999Z"),
        await update(api, gid, "UNSUBSCRIBED", level="CONFIRMED_OPT_IN"),
    ]

    assert [r["userErrors"] for r in refusals] == [
        [{"field": ["at"], "message": "Consent cannot be given in the future.", "code": "INVALID"}],
        [{"field": ["at"], "message": "The time is before 1970.", "code": "INVALID"}],
        [
            {
                "field": ["optInLevel"],
                "message": "An opt-in level goes with SUBSCRIBED or PENDING only.",
                "code": "INVALID",
            }
        ],
    ]
    assert all(r["contact"] is None for r in refusals)
    assert await database.contacts.find_one({"shopId": SHOP}) == before


async def test_of_two_events_at_the_same_time_the_later_recorded_wins(api):
    gid = await contact(api)
    await update(api, gid, "SUBSCRIBED", level="SINGLE_OPT_IN", at=iso(T))

    second = await update(api, gid, "UNSUBSCRIBED", at=iso(T))

    consent = second["contact"]["consent"]
    assert (consent["state"], consent["optInLevel"], consent["updatedAt"]) == (
        "UNSUBSCRIBED",
        None,
        iso(T),
    )
    assert [e["state"] for e in consent["history"]] == ["SUBSCRIBED", "UNSUBSCRIBED"]


async def test_the_newest_event_carries_its_level_and_source_into_the_state(api, as_role):
    gid = await contact(api)
    await update(as_role("STAFF"), gid, "PENDING", level="UNKNOWN", at=iso(T))

    newer = await update(
        api, gid, "SUBSCRIBED", level="CONFIRMED_OPT_IN", at=iso(T + dt.timedelta(1))
    )

    consent = newer["contact"]["consent"]
    assert (consent["state"], consent["optInLevel"], consent["source"]) == (
        "SUBSCRIBED",
        "CONFIRMED_OPT_IN",
        "ADMIN",
    )
    stored = await as_role("STAFF").data(
        "query($id: ID!) { contact(id: $id) { consent { state optInLevel source } } }", {"id": gid}
    )
    assert stored["contact"]["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "CONFIRMED_OPT_IN",
        "source": "ADMIN",
    }


async def test_every_consent_write_moves_the_contacts_update_time(api, database):
    gid = await contact(api)
    oid = decode_id(gid, "Contact")
    created = (await database.contacts.find_one({"_id": oid}))["updatedAt"]

    await asyncio.sleep(0.002)  # times are kept to the millisecond
    newest = await update(api, gid, "SUBSCRIBED", at=iso(T))
    after_newest = (await database.contacts.find_one({"_id": oid}))["updatedAt"]
    await asyncio.sleep(0.002)
    late = await update(api, gid, "UNSUBSCRIBED", at=iso(T - dt.timedelta(days=1)))
    after_late = (await database.contacts.find_one({"_id": oid}))["updatedAt"]

    assert created < after_newest < after_late
    assert newest["contact"]["updatedAt"] == iso(after_newest.replace(tzinfo=dt.UTC))
    assert late["contact"]["updatedAt"] == iso(after_late.replace(tzinfo=dt.UTC))
    assert late["contact"]["consent"]["state"] == "SUBSCRIBED"


@pytest.mark.parametrize("offset_days", [1, -1], ids=["newest event", "late event"])
async def test_a_consent_write_hands_back_the_contact_without_its_log(api, database, offset_days):
    # A contact's log holds up to hundreds of entries; the writers that take
    # the contact back read its consent and counters, never the log.
    gid = await contact(api)
    oid = decode_id(gid, "Contact")
    await update(api, gid, "SUBSCRIBED", at=iso(T))
    event = ConsentEvent("UNSUBSCRIBED", T + dt.timedelta(days=offset_days), "API", actor="Ann")

    after = await record_consent(database, SHOP, oid, event)

    assert after is not None and "activity" not in after
    assert after["activityEmbedded"] == 3
    state = "UNSUBSCRIBED" if offset_days > 0 else "SUBSCRIBED"
    assert (after["_id"], after["consent"]["state"]) == (oid, state)
    assert await record_consent(database, SHOP, ObjectId(), event) is None


async def fill_log(database, oid: ObjectId, count: int) -> None:
    """Entries pushed as every writer pushes them, but without the spill that follows."""
    entries = [
        activity.entry("NOTE", text=f"n{i}", at=T + dt.timedelta(seconds=i)) for i in range(count)
    ]
    await database.contacts.update_one({"_id": oid}, activity.push(entries))


@pytest.mark.parametrize("offset_days", [1, -1], ids=["newest event", "late event"])
async def test_a_consent_write_on_a_full_log_moves_the_oldest_entries_to_the_archive(
    api, database, offset_days
):
    gid = await contact(api)
    oid = decode_id(gid, "Contact")
    await update(api, gid, "SUBSCRIBED", at=iso(T))
    await fill_log(database, oid, SPILL_AT - 3)  # with the creation and the first event: one short
    assert await database.activity_archive.count_documents({}) == 0

    await update(api, gid, "UNSUBSCRIBED", at=iso(T + dt.timedelta(days=offset_days)))

    doc = await database.contacts.find_one({"_id": oid})
    assert len(doc["activity"]) == doc["activityEmbedded"] == EMBEDDED_KEEP
    assert doc["activityCount"] == SPILL_AT
    assert await database.activity_archive.count_documents({"contactId": oid}) == 1


async def test_marketing_mail_follows_the_current_state(api, database):
    gid = await contact(api)
    await update(api, gid, "SUBSCRIBED", at=iso(T))
    await update(api, gid, "UNSUBSCRIBED", at=iso(T - dt.timedelta(days=1)))  # late: no change

    allowed = (await api.data(SEND, {"id": gid}))["messageSend"]
    await update(api, gid, "UNSUBSCRIBED", at=iso(T + dt.timedelta(days=1)))
    refused = (await api.data(SEND, {"id": gid}))["messageSend"]

    assert allowed == {"message": {"marketing": True, "status": "QUEUED"}, "userErrors": []}
    assert refused == {
        "message": None,
        "userErrors": [
            {
                "field": ["marketing"],
                "message": "Marketing e-mail goes only to contacts whose consent is SUBSCRIBED.",
                "code": "NOT_ALLOWED",
            }
        ],
    }
    assert await database.messages.count_documents({}) == 1


@pytest.mark.parametrize(
    ("stored", "state"),
    [
        ({}, "NOT_SUBSCRIBED"),
        ({"consent": None}, "NOT_SUBSCRIBED"),
        ({"consent": {"history": []}}, "NOT_SUBSCRIBED"),
        ({"consent": {"state": "PENDING", "history": []}}, "PENDING"),
    ],
)
def test_a_contact_stored_without_a_state_is_not_subscribed(stored, state):
    assert current_state({"_id": ObjectId(), **stored}) == state


RECORD = """
mutation($input: OrderInput!) {
  orderRecord(input: $input) {
    contact {
      consent {
        state optInLevel updatedAt source
        history { state optInLevel at source actor evidence }
      }
      activity(kinds: [CONSENT_CHANGED]) { nodes { text author } }
    }
    userErrors { field message code }
  }
}
"""


async def checkout(api: Any, external_id: str, placed: dt.datetime, accepts: bool | None) -> dict:
    order: dict[str, Any] = {
        "externalId": external_id,
        "email": "ann@example.com",
        "currencyCode": "EUR",
        "placedAt": iso(placed),
        "lineItems": [{"title": "Mug", "quantity": 1, "unitPrice": "9.50"}],
    }
    if accepts is not None:
        order["acceptsMarketing"] = accepts
    payload = (await api.data(RECORD, {"input": order}))["orderRecord"]
    assert payload["userErrors"] == []
    return payload["contact"]


def checkout_event(external_id: str, placed: dt.datetime) -> dict:
    return {
        "state": "SUBSCRIBED",
        "optInLevel": "SINGLE_OPT_IN",
        "at": iso(placed),
        "source": "CHECKOUT",
        "actor": None,
        "evidence": external_id,
    }


async def test_a_first_order_that_accepts_marketing_subscribes_its_new_buyer(api):
    buyer = await checkout(api, "A-1", T, accepts=True)

    assert buyer["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "SINGLE_OPT_IN",
        "updatedAt": iso(T),
        "source": "CHECKOUT",
        "history": [checkout_event("A-1", T)],
    }
    assert buyer["activity"]["nodes"] == [
        {"text": "Marketing consent: SUBSCRIBED (CHECKOUT)", "author": None}
    ]


@pytest.mark.parametrize("accepts", [False, None], ids=["declined", "not asked"])
async def test_an_order_that_does_not_accept_marketing_records_no_consent(api, accepts):
    buyer = await checkout(api, "A-1", T, accepts=accepts)

    assert buyer["consent"]["state"] == "NOT_SUBSCRIBED"
    assert buyer["consent"]["history"] == []
    assert buyer["activity"]["nodes"] == []


@pytest.mark.parametrize(
    ("placed", "state"),
    [
        (T + dt.timedelta(days=1), "SUBSCRIBED"),  # after the unsubscribe: the order's yes wins
        (T, "SUBSCRIBED"),  # at the same time: the later recorded wins
        (T - dt.timedelta(days=1), "UNSUBSCRIBED"),  # before it: history only
    ],
    ids=["later", "same time", "earlier"],
)
async def test_a_checkout_yes_on_a_known_contact_wins_only_if_it_is_not_older(api, placed, state):
    gid = await contact(api)
    await update(api, gid, "UNSUBSCRIBED", at=iso(T))

    buyer = await checkout(api, "A-2", placed, accepts=True)

    consent = buyer["consent"]
    newest = max(T, placed)
    assert (consent["state"], consent["updatedAt"]) == (state, iso(newest))
    assert consent["source"] == ("CHECKOUT" if state == "SUBSCRIBED" else "ADMIN")
    assert consent["optInLevel"] == ("SINGLE_OPT_IN" if state == "SUBSCRIBED" else None)
    # The history is in time order, whichever arrived first.
    assert [(e["state"], e["at"]) for e in consent["history"]] == sorted(
        [("UNSUBSCRIBED", iso(T)), ("SUBSCRIBED", iso(placed))],
        key=lambda e: (e[1], e[0] != "UNSUBSCRIBED"),
    )
    assert len(buyer["activity"]["nodes"]) == 2


async def test_a_checkout_yes_on_a_lead_without_consent_subscribes_it(api):
    await contact(api)

    buyer = await checkout(api, "A-3", T, accepts=True)

    assert (buyer["consent"]["state"], buyer["consent"]["source"]) == ("SUBSCRIBED", "CHECKOUT")
    assert buyer["consent"]["history"] == [checkout_event("A-3", T)]


# -- the write itself, called directly -----------------------------------------

SINGLE = "SINGLE_OPT_IN"


async def stored_contact(database: Any, email: str, consent: dict | None = None) -> ObjectId:
    doc = new_contact(SHOP, email, email, "LEAD", {}, T)
    if consent is not None:
        doc["consent"] = consent
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def consent_events(database: Any, oid: ObjectId) -> list[dict]:
    found = database.events.find({"type": "CONSENT_CHANGED", "contactId": oid}, sort=[("_id", 1)])
    return [event["data"] for event in await found.to_list()]


def at(days: int) -> dt.datetime:
    return T + dt.timedelta(days=days)


async def test_a_late_event_joins_the_history_in_time_order_and_leaves_the_state(database):
    oid = await stored_contact(database, "ann@example.com")
    newest = ConsentEvent("SUBSCRIBED", at(0), "API", SINGLE, actor="Ann")
    late = ConsentEvent("UNSUBSCRIBED", at(-2), "IMPORT", evidence="row 7")
    later_but_still_late = ConsentEvent("PENDING", at(-1), "CONTACT_FORM", "UNKNOWN")

    await record_consent(database, SHOP, oid, newest)
    await record_consent(database, SHOP, oid, late)
    after = await record_consent(database, SHOP, oid, later_but_still_late)

    assert after is not None
    stored = await database.contacts.find_one({"_id": oid})
    for consent in (after["consent"], stored["consent"]):
        assert consent["history"] == [late.to_doc(), later_but_still_late.to_doc(), newest.to_doc()]
        assert (consent["state"], consent["optInLevel"], consent["at"], consent["source"]) == (
            "SUBSCRIBED",
            SINGLE,
            at(0),
            "API",
        )
    assert await consent_events(database, oid) == [
        {
            "id": contact_gid(oid),
            "state": "SUBSCRIBED",
            "previousState": "NOT_SUBSCRIBED",
            "optInLevel": SINGLE,
            "source": "API",
            "at": at(0),
        }
    ]


async def test_only_a_change_of_state_or_level_is_sent_as_consent_changed(database):
    # Another contact, stored first, already holds the state this one is given.
    await stored_contact(
        database, "bob@example.com", {"state": "SUBSCRIBED", "optInLevel": SINGLE, "at": at(0)}
    )
    oid = await stored_contact(database, "ann@example.com")

    steps = [
        ConsentEvent("SUBSCRIBED", at(1), "API", SINGLE),
        ConsentEvent("SUBSCRIBED", at(2), "ADMIN", SINGLE),  # the same state again
        ConsentEvent("SUBSCRIBED", at(3), "API", "CONFIRMED_OPT_IN"),
        ConsentEvent("SUBSCRIBED", at(4), "API", "CONFIRMED_OPT_IN"),  # the same level again
        ConsentEvent("UNSUBSCRIBED", at(5), "UNSUBSCRIBE_LINK"),
    ]
    for event in steps:
        await record_consent(database, SHOP, oid, event)

    sent = await consent_events(database, oid)
    assert [(e["previousState"], e["state"], e["optInLevel"], e["at"]) for e in sent] == [
        ("NOT_SUBSCRIBED", "SUBSCRIBED", SINGLE, at(1)),
        ("SUBSCRIBED", "SUBSCRIBED", "CONFIRMED_OPT_IN", at(3)),
        ("SUBSCRIBED", "UNSUBSCRIBED", None, at(5)),
    ]
    assert len((await database.contacts.find_one({"_id": oid}))["consent"]["history"]) == 5
    assert await database.events.distinct("shopId", {"contactId": oid}) == [SHOP]


class OutboxDown:
    """The database, with the webhook endpoints unreadable: sending an event fails after storing it."""

    def __init__(self, database: Any) -> None:
        self._database = database

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    @property
    def webhook_endpoints(self) -> Any:
        raise RuntimeError("outbox down")


async def test_an_event_that_cannot_be_sent_leaves_the_contact_as_it_was(database):
    oid = await stored_contact(database, "ann@example.com")
    before = await database.contacts.find_one({"_id": oid})

    with pytest.raises(RuntimeError, match="outbox down"):
        await record_consent(
            OutboxDown(database),  # type: ignore[arg-type]
            SHOP,
            oid,
            ConsentEvent("SUBSCRIBED", at(1), "API"),
        )

    assert await database.contacts.find_one({"_id": oid}) == before
    assert await database.events.count_documents({}) == 0


async def test_a_late_event_in_a_transaction_that_fails_leaves_no_trace(database):
    oid = await stored_contact(
        database, "ann@example.com", {"state": "SUBSCRIBED", "optInLevel": None, "at": at(0)}
    )
    before = await database.contacts.find_one({"_id": oid})
    late = ConsentEvent("UNSUBSCRIBED", at(-1), "API")

    async def work(session: Any) -> None:
        written = await consent_rules._record_consent(database, SHOP, oid, late, session)
        assert written is not None and written["consent"]["history"] == [late.to_doc()]
        raise RuntimeError("the caller's next write failed")

    with pytest.raises(RuntimeError, match="next write failed"):
        await activity.in_transaction(database, work)

    assert await database.contacts.find_one({"_id": oid}) == before


class RacingContacts:
    """The contacts collection, with another client's write landing right after the first read."""

    def __init__(self, contacts: Any, race: list[Any]) -> None:
        self._contacts = contacts
        self._race = race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._contacts, name)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        found = await self._contacts.find_one(*args, **kwargs)
        while self._race:
            await self._race.pop()()
        return found


class RacingDatabase:
    def __init__(self, database: Any, race: list[Any]) -> None:
        self._database = database
        self._race = race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._database, name)

    @property
    def contacts(self) -> RacingContacts:
        return RacingContacts(self._database.contacts, self._race)


async def test_a_state_changed_while_the_event_was_being_written_is_the_one_it_replaces(
    database,
):
    # The other write commits between this write's read of the state and its
    # update: the transaction starts over and compares with what is stored now.
    oid = await stored_contact(database, "ann@example.com")
    checkout = ConsentEvent("SUBSCRIBED", at(0), "CHECKOUT", SINGLE)

    async def checkout_subscribes() -> None:
        await database.contacts.update_one(
            {"_id": oid},
            {
                "$set": {"consent.state": "SUBSCRIBED", "consent.optInLevel": SINGLE},
                "$push": {"consent.history": checkout.to_doc()},
            },
        )

    racing = RacingDatabase(database, [checkout_subscribes])
    event = ConsentEvent("SUBSCRIBED", at(1), "API", SINGLE)
    after = await record_consent(racing, SHOP, oid, event)  # type: ignore[arg-type]

    assert after is not None
    assert after["consent"]["history"] == [checkout.to_doc(), event.to_doc()]
    assert await consent_events(database, oid) == []


@pytest.mark.parametrize(
    ("role", "source"),
    [("ADMIN", "ADMIN"), ("STAFF", "API"), ("INGEST", "API"), ("READER", "API")],
)
def test_an_admin_key_records_as_the_administration_and_any_other_as_the_api(role, source):
    assert consent_rules.source_for(role) == source


async def test_an_update_through_the_api_keeps_who_gave_it_and_the_trimmed_evidence(
    database, monkeypatch
):
    monkeypatch.setattr(consent_rules, "utc_now", lambda: at(3))
    oid = await stored_contact(database, "ann@example.com")

    after = await consent_rules.update_consent(
        database,
        SHOP,
        oid,
        "SUBSCRIBED",
        opt_in_level=SINGLE,
        evidence="  signed form\nat the fair \t",
        at=at(2),
        role="STAFF",
        actor="Till",
    )

    assert after["consent"]["history"] == [
        {
            "state": "SUBSCRIBED",
            "optInLevel": SINGLE,
            "at": at(2),
            "source": "API",
            "actor": "Till",
            "evidence": "signed form\nat the fair",
        }
    ]
    assert after["updatedAt"] == at(3)
    log = (await database.contacts.find_one({"_id": oid}))["activity"]
    assert [(e["kind"], e["text"], e["author"]) for e in log] == [
        ("CONSENT_CHANGED", "Marketing consent: SUBSCRIBED (API)", "Till")
    ]
    with pytest.raises(Refused) as refused:
        await consent_rules.update_consent(
            database,
            SHOP,
            ObjectId(),
            "SUBSCRIBED",
            opt_in_level=None,
            evidence=None,
            at=None,
            role="ADMIN",
            actor="Ann",
        )
    assert problems(refused) == [(("contactId",), "Contact not found.", "NOT_FOUND")]


@pytest.mark.parametrize("stored", [None, {}], ids=["a contact made with it", "no consent yet"])
async def test_without_a_state_before_it_the_event_replaces_not_subscribed(database, stored):
    oid = ObjectId()
    before = None if stored is None else {"_id": oid, **stored}
    still_no = ConsentEvent("NOT_SUBSCRIBED", at(1), "IMPORT")
    yes = ConsentEvent("SUBSCRIBED", at(2), "IMPORT", SINGLE)

    async def work(session: Any) -> None:
        await consent_rules.consent_changed(database, SHOP, oid, before, still_no, session=session)
        await consent_rules.consent_changed(database, SHOP, oid, before, yes, session=session)

    await activity.in_transaction(database, work)

    sent = await consent_events(database, oid)
    assert [(e["previousState"], e["state"]) for e in sent] == [("NOT_SUBSCRIBED", "SUBSCRIBED")]
