"""consentUpdate: the newest event by `at` is the state, the history is append-only, input is checked."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

from bson import ObjectId

from graph.types.node import decode_id, encode_id

CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
UPDATE = """
mutation($id: ID!, $state: MarketingState!, $level: OptInLevel, $evidence: String, $at: DateTime) {
  consentUpdate(contactId: $id, state: $state, optInLevel: $level, evidence: $evidence, at: $at) {
    contact {
      id
      consent { state optInLevel updatedAt source history { state optInLevel at source actor evidence } }
    }
    userErrors { field message code }
  }
}
"""
LOG = "query($id: ID!) { contact(id: $id) { activity(kinds: [CONSENT_CHANGED]) { totalCount nodes { text author } } } }"


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


async def contact(api: Any, email: str = "ann@example.com") -> str:
    return (await api.data(CREATE, {"email": email}))["contactCreate"]["contact"]["id"]


async def update(api: Any, gid: str, state: str, **more: Any) -> dict:
    return (await api.data(UPDATE, {"id": gid, "state": state, **more}))["consentUpdate"]


def errors(payload: dict) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def test_subscribe_records_who_when_and_what(api):
    gid = await contact(api)
    at = dt.datetime(2025, 5, 1, 9, 30, tzinfo=dt.UTC)
    payload = await update(
        api, gid, "SUBSCRIBED", level="CONFIRMED_OPT_IN", evidence="Yes, send me news", at=iso(at)
    )
    assert payload["userErrors"] == []
    assert payload["contact"]["consent"] == {
        "state": "SUBSCRIBED",
        "optInLevel": "CONFIRMED_OPT_IN",
        "updatedAt": "2025-05-01T09:30:00.000+00:00",
        "source": "ADMIN",
        "history": [
            {
                "state": "SUBSCRIBED",
                "optInLevel": "CONFIRMED_OPT_IN",
                "at": "2025-05-01T09:30:00.000+00:00",
                "source": "ADMIN",
                "actor": "Admin Person",
                "evidence": "Yes, send me news",
            }
        ],
    }
    log = (await api.data(LOG, {"id": gid}))["contact"]["activity"]
    assert log["nodes"] == [
        {"text": "Marketing consent: SUBSCRIBED (ADMIN)", "author": "Admin Person"}
    ]


async def test_staff_keys_record_as_api_and_now_is_the_default(api, as_role):
    gid = await contact(api)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    payload = await update(as_role("STAFF"), gid, "UNSUBSCRIBED")
    consent = payload["contact"]["consent"]
    assert (
        consent["state"] == "UNSUBSCRIBED"
        and consent["source"] == "API"
        and consent["optInLevel"] is None
    )
    event = consent["history"][0]
    assert event["actor"] == "Staff Person" and event["evidence"] is None
    assert (
        before
        <= dt.datetime.fromisoformat(event["at"])
        <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    )


async def test_a_late_older_event_goes_into_history_only(api):
    gid = await contact(api)
    t = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    await update(api, gid, "SUBSCRIBED", level="SINGLE_OPT_IN", at=iso(t))
    await update(api, gid, "UNSUBSCRIBED", at=iso(t + dt.timedelta(days=10)))
    late = await update(
        api,
        gid,
        "SUBSCRIBED",
        level="CONFIRMED_OPT_IN",
        evidence="old form",
        at=iso(t + dt.timedelta(days=5)),
    )
    consent = late["contact"]["consent"]
    assert consent["state"] == "UNSUBSCRIBED"
    assert consent["updatedAt"] == iso(t + dt.timedelta(days=10))
    assert [(e["state"], e["at"]) for e in consent["history"]] == [
        ("SUBSCRIBED", iso(t)),
        ("SUBSCRIBED", iso(t + dt.timedelta(days=5))),
        ("UNSUBSCRIBED", iso(t + dt.timedelta(days=10))),
    ]
    log = (await api.data(LOG, {"id": gid}))["contact"]["activity"]
    assert log["totalCount"] == 3  # every event is logged, also the late one
    filtered = await api.data("{ contacts(filter: {marketingState: UNSUBSCRIBED}) { totalCount } }")
    assert filtered["contacts"]["totalCount"] == 1


async def test_bad_input_is_refused_and_nothing_written(api, database):
    gid = await contact(api)
    oid = decode_id(gid, "Contact")
    before = await database.contacts.find_one({"_id": oid})
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    cases = [
        ({"state": "SUBSCRIBED", "at": iso(future)}, [(["at"], "INVALID")]),
        ({"state": "SUBSCRIBED", "at": "1969-12-31T23:59:59Z"}, [(["at"], "INVALID")]),
        ({"state": "UNSUBSCRIBED", "level": "SINGLE_OPT_IN"}, [(["optInLevel"], "INVALID")]),
        ({"state": "NOT_SUBSCRIBED", "level": "UNKNOWN"}, [(["optInLevel"], "INVALID")]),
        ({"state": "SUBSCRIBED", "evidence": "e" * 5001}, [(["evidence"], "TOO_LONG")]),
        ({"state": "SUBSCRIBED", "evidence": "null\x00byte"}, [(["evidence"], "INVALID")]),
        (
            {
                "state": "UNSUBSCRIBED",
                "level": "SINGLE_OPT_IN",
                "evidence": "e" * 5001,
                "at": iso(future),
            },
            [(["optInLevel"], "INVALID"), (["evidence"], "TOO_LONG"), (["at"], "INVALID")],
        ),
    ]
    for variables, expected in cases:
        payload = (await api.data(UPDATE, {"id": gid, **variables}))["consentUpdate"]
        assert errors(payload) == expected, variables
        assert payload["contact"] is None
    assert await database.contacts.find_one({"_id": oid}) == before
    # Within the clock skew is fine; so is a multi-line evidence of exactly 5,000 characters.
    near = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    ok = await update(
        api, gid, "PENDING", level="UNKNOWN", evidence="a\nb" + "c" * 4997, at=iso(near)
    )
    assert ok["userErrors"] == [] and ok["contact"]["consent"]["state"] == "PENDING"
    assert len(ok["contact"]["consent"]["history"][0]["evidence"]) == 5000
    body = await api.gql(UPDATE, {"id": gid, "state": "SUBSCRIBED", "at": "2025-01-01T10:00:00"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # no UTC offset


async def test_unknown_contacts_and_roles(api, as_role):
    gid = await contact(api)
    for target in (encode_id("Contact", ObjectId()), "junk"):
        assert errors(await update(api, target, "SUBSCRIBED")) == [(["contactId"], "NOT_FOUND")]
    assert errors(await update(as_role("OTHER"), gid, "SUBSCRIBED")) == [
        (["contactId"], "NOT_FOUND")
    ]
    for role in ("READER", "PUBLIC", "INGEST"):
        body = await as_role(role).gql(UPDATE, {"id": gid, "state": "SUBSCRIBED"})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    data = await api.data(
        "query($id: ID!) { contact(id: $id) { consent { state history { state } } } }", {"id": gid}
    )
    assert data["contact"]["consent"] == {"state": "NOT_SUBSCRIBED", "history": []}


async def test_concurrent_events_end_on_the_newest(api):
    gid = await contact(api)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rng = random.Random(11)
    events = [
        (
            rng.choice(["SUBSCRIBED", "UNSUBSCRIBED", "PENDING"]),
            base + dt.timedelta(hours=rng.randrange(10_000)),
        )
        for _ in range(16)
    ]
    events = list({at: (state, at) for state, at in events}.values())  # distinct times
    await asyncio.gather(*(update(api, gid, state, at=iso(at)) for state, at in events))
    data = await api.data(
        """query($id: ID!) { contact(id: $id) {
          consent { state updatedAt history { at } } activity(kinds: [CONSENT_CHANGED]) { totalCount }
        } }""",
        {"id": gid},
    )
    newest = max(events, key=lambda e: e[1])
    consent = data["contact"]["consent"]
    assert (consent["state"], consent["updatedAt"]) == (newest[0], iso(newest[1]))
    assert [e["at"] for e in consent["history"]] == sorted(iso(at) for _, at in events)
    assert data["contact"]["activity"]["totalCount"] == len(events)
