"""messageSend: real SMTP delivery to a server the test runs, retries through an outage, unsubscribe links."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from bson import ObjectId
from conftest import OTHER_SHOP, SHOP, Api
from smtp_inbox import SmtpServer

from graph.http.app import create_app
from graph.settings import Settings
from graph.types.node import decode_id, encode_id
from resolvers import messages, outbox
from resolvers.consent import ConsentEvent
from resolvers.messages import make_token, shop_secret

SENDER = "Test Shop <shop@example.com>"
PUBLIC_URL = "https://shop.example"
CREATE = "mutation($email: String!) { contactCreate(input: {email: $email}) { contact { id } } }"
SEND = """
mutation($id: ID!, $subject: String!, $body: String!, $marketing: Boolean) {
  messageSend(contactId: $id, subject: $subject, body: $body, marketing: $marketing) {
    message { id to subject marketing status createdAt sentAt attempts lastError }
    userErrors { field message code }
  }
}
"""
MESSAGE = "query($id: ID!) { message(id: $id) { status sentAt attempts lastError } }"
CONSENT = """
mutation($id: ID!, $state: MarketingState!) {
  consentUpdate(contactId: $id, state: $state) { userErrors { code } }
}
"""
CONTACT = """
query($id: ID!) {
  contact(id: $id) {
    consent { state source history { state source actor evidence } }
    activity(kinds: [MESSAGE_SENT, CONSENT_CHANGED]) { nodes { kind text author } }
  }
}
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@dataclass
class MailApp:
    api: Api
    http: httpx.AsyncClient


@pytest.fixture
async def mail(
    settings: Settings, smtp: SmtpServer, keys: dict[str, str]
) -> AsyncIterator[MailApp]:
    """The app with an outbox delivering to the test's SMTP server, retrying quickly."""
    app = create_app(
        Settings(
            mongodb_uri=settings.mongodb_uri,
            database=settings.database,
            key_cache_seconds=0,
            migrate_on_start=True,
            smtp_url=f"smtp://127.0.0.1:{smtp.port}",
            mail_from=SENDER,
            public_url=PUBLIC_URL,
            outbox_poll_seconds=0.2,
            outbox_retry_first_seconds=0.1,
            outbox_retry_max_seconds=0.4,
        )
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            yield MailApp(Api(client, keys["ADMIN"]), client)


async def contact(api: Api, email_address: str, state: str | None = None) -> str:
    gid = (await api.data(CREATE, {"email": email_address}))["contactCreate"]["contact"]["id"]
    if state is not None:
        assert (await api.data(CONSENT, {"id": gid, "state": state}))["consentUpdate"][
            "userErrors"
        ] == []
    return gid


async def send(api: Api, gid: str, subject: str, body: str, marketing: bool = False) -> dict:
    return (
        await api.data(SEND, {"id": gid, "subject": subject, "body": body, "marketing": marketing})
    )["messageSend"]


async def failed_once(database: Any, subject: str, within: float = 15.0) -> None:
    """Returns once the message's first attempt has failed and it waits for a retry."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (doc := await database.messages.find_one({"subject": subject})) is None or (
        doc.get("lastError") is None
    ):
        assert loop.time() < deadline, doc
        await asyncio.sleep(0.05)


async def settled(database: Any, count: int, within: float = 15.0) -> list[dict]:
    """The messages once `count` of them are no longer QUEUED."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        docs = await database.messages.find({}).sort("createdAt", 1).to_list()
        if sum(d["status"] != "QUEUED" for d in docs) >= count:
            return docs
        assert loop.time() < deadline, [
            (d["subject"], d["status"], d.get("lastError")) for d in docs
        ]
        await asyncio.sleep(0.05)


def errors(payload: dict) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


async def test_a_message_is_delivered_and_logged(mail, smtp, database):
    gid = await contact(mail.api, "ann@example.com")
    payload = await send(mail.api, gid, "Your order", "Hello Ann,\n\nyour parcel is on its way.")
    assert payload["userErrors"] == []
    message = payload["message"]
    assert (message["to"], message["subject"], message["marketing"], message["status"]) == (
        "ann@example.com",
        "Your order",
        False,
        "QUEUED",
    )
    [stored] = await settled(database, 1)
    assert stored["status"] == "SENT" and stored["attempts"] == 1 and stored["lastError"] is None
    [envelope] = smtp.inbox.received
    assert envelope.mail_from == "shop@example.com"
    assert envelope.rcpt_tos == ["ann@example.com"]
    [mail_] = smtp.inbox.mails()
    assert mail_.keys() == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
    assert mail_["From"] == SENDER
    assert mail_["To"] == "ann@example.com"
    assert mail_["Subject"] == "Your order"
    assert mail_["Message-ID"] == f"<{stored['_id']}@example.com>"
    assert email.utils.parsedate_to_datetime(mail_["Date"]) == stored["createdAt"].replace(
        microsecond=0
    )
    assert mail_["List-Unsubscribe"] is None
    assert mail_.get_content_type() == "text/plain"
    assert mail_.get_content() == "Hello Ann,\n\nyour parcel is on its way.\n"
    status = (await mail.api.data(MESSAGE, {"id": message["id"]}))["message"]
    assert status["status"] == "SENT" and status["attempts"] == 1 and status["sentAt"] is not None
    log = (await mail.api.data(CONTACT, {"id": gid}))["contact"]["activity"]["nodes"]
    assert log == [{"kind": "MESSAGE_SENT", "text": "Your order", "author": "Admin Person"}]


async def test_marketing_needs_a_subscribed_contact(mail, database):
    for state in (None, "PENDING", "UNSUBSCRIBED", "NOT_SUBSCRIBED"):
        gid = await contact(mail.api, f"{state or 'new'}@example.com".lower(), state)
        payload = await send(mail.api, gid, "Spring sale", "20% off", marketing=True)
        assert errors(payload) == [(["marketing"], "NOT_ALLOWED")]
        assert payload["message"] is None
    assert await database.messages.count_documents({}) == 0


async def test_a_marketing_message_carries_a_working_unsubscribe_link(mail, smtp, database):
    gid = await contact(mail.api, "fan@example.com", "SUBSCRIBED")
    payload = await send(mail.api, gid, "Spring sale", "20% off everything.", marketing=True)
    assert payload["userErrors"] == [] and payload["message"]["marketing"] is True
    [stored] = await settled(database, 1)
    [mail_] = smtp.inbox.mails()
    url = stored["unsubscribeUrl"]
    assert url.startswith(f"{PUBLIC_URL}/unsubscribe/")
    assert mail_.keys() == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
    assert mail_["List-Unsubscribe"] == f"<{url}>"
    assert mail_["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (
        mail_.get_content()
        == f"20% off everything.\n\n--\nTo stop receiving these e-mails, unsubscribe: {url}\n"
    )

    # Opening the link (no API key) only asks; the button on the page records it.
    page = await mail.http.get(url.removeprefix(PUBLIC_URL))
    assert page.status_code == 200 and '<form method="post">' in page.text
    assert (await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"][
        "state"
    ] == "SUBSCRIBED"
    done = await mail.http.post(
        url.removeprefix(PUBLIC_URL),
        data={"List-Unsubscribe": "One-Click"},  # what the page's form sends
    )
    assert done.status_code == 200 and "Unsubscribed" in done.text
    data = (await mail.api.data(CONTACT, {"id": gid}))["contact"]
    assert data["consent"]["state"] == "UNSUBSCRIBED"
    assert data["consent"]["source"] == "UNSUBSCRIBE_LINK"
    assert data["consent"]["history"][-1] == {
        "state": "UNSUBSCRIBED",
        "source": "UNSUBSCRIBE_LINK",
        "actor": None,
        "evidence": "Unsubscribe link in a marketing e-mail",
    }
    assert [n["kind"] for n in data["activity"]["nodes"]] == [
        "CONSENT_CHANGED",
        "MESSAGE_SENT",
        "CONSENT_CHANGED",
    ]
    # A second click (or the mail client's one-click POST) changes nothing more.
    again = await mail.http.post(
        url.removeprefix(PUBLIC_URL), content=b"List-Unsubscribe=One-Click"
    )
    assert again.status_code == 200
    assert len((await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"]["history"]) == 2
    refused = await send(mail.api, gid, "Another sale", "30% off", marketing=True)
    assert errors(refused) == [(["marketing"], "NOT_ALLOWED")]


async def test_one_click_post_unsubscribes(mail, database):
    gid = await contact(mail.api, "poster@example.com", "SUBSCRIBED")
    token = make_token(
        await shop_secret(database, SHOP), SHOP, decode_id(gid, "Contact"), dt.datetime.now(dt.UTC)
    )
    response = await mail.http.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 200
    assert (await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"][
        "state"
    ] == "UNSUBSCRIBED"


async def test_the_link_wins_over_a_consent_dated_slightly_ahead(mail, database):
    gid = await contact(mail.api, "ahead@example.com")
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)).isoformat()
    subscribe = """
    mutation($id: ID!, $at: DateTime!) {
      consentUpdate(contactId: $id, state: SUBSCRIBED, at: $at) { userErrors { code } }
    }
    """
    assert (await mail.api.data(subscribe, {"id": gid, "at": ahead}))["consentUpdate"] == {
        "userErrors": []
    }
    token = make_token(
        await shop_secret(database, SHOP), SHOP, decode_id(gid, "Contact"), dt.datetime.now(dt.UTC)
    )
    assert (await mail.http.post(f"/unsubscribe/{token}")).status_code == 200
    consent = (await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"]
    assert consent["state"] == "UNSUBSCRIBED"


async def test_a_click_outrun_by_newer_consent_events_asks_to_try_again(
    mail, database, monkeypatch
):
    gid = await contact(mail.api, "outrun@example.com", "SUBSCRIBED")
    real = messages.record_consent

    async def outrun(database, shop_id, contact_id, event):
        await real(database, shop_id, contact_id, event)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        newer = ConsentEvent(state="SUBSCRIBED", at=later, source="API")
        return await real(database, shop_id, contact_id, newer)

    monkeypatch.setattr(messages, "record_consent", outrun)
    token = make_token(
        await shop_secret(database, SHOP), SHOP, decode_id(gid, "Contact"), dt.datetime.now(dt.UTC)
    )
    response = await mail.http.post(f"/unsubscribe/{token}")
    assert response.status_code == 503 and "try again" in response.text


async def test_only_genuine_unexpired_tokens_unsubscribe(mail, database, as_role):
    gid = await contact(mail.api, "kept@example.com", "SUBSCRIBED")
    oid = decode_id(gid, "Contact")
    secret = await shop_secret(database, SHOP)
    now = dt.datetime.now(dt.UTC)
    good = make_token(secret, SHOP, oid, now)
    shop, contact_hex, issued, signature = good.split(".")
    other_oid = ObjectId()
    other_secret = await shop_secret(database, OTHER_SHOP)
    forged = [
        f"{shop}.{other_oid}.{issued}.{signature}",  # another contact, same signature
        f"{shop}.{contact_hex}.{int(now.timestamp()) + 1:x}.{signature}",  # another time
        # another signature
        f"{shop}.{contact_hex}.{issued}.{signature[:-2]}{'BA' if signature.endswith('AA') else 'AA'}",
        f"{OTHER_SHOP}.{contact_hex}.{issued}.{signature}",  # another shop
        make_token(other_secret, SHOP, oid, now),  # signed with the wrong shop's secret
        make_token(secret, SHOP, oid, now - dt.timedelta(days=366)),  # expired
        make_token(secret, SHOP, oid, now + dt.timedelta(hours=1)),  # from the future
        "nonsense",
        "a" * 400,
        "",
    ]
    assert secret != other_secret and len(secret) == 32
    for token in forged:
        for method in ("GET", "POST"):
            response = await mail.http.request(method, f"/unsubscribe/{token}")
            assert response.status_code == 404, (method, token)
            if token:  # "/unsubscribe/" alone is no link at all: the server's plain 404
                assert "Link not valid" in response.text
    assert (await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"][
        "state"
    ] == "SUBSCRIBED"
    month_old = make_token(secret, SHOP, oid, now - dt.timedelta(days=31))
    assert (await mail.http.post(f"/unsubscribe/{month_old}")).status_code == 200
    assert (await mail.api.data(CONTACT, {"id": gid}))["contact"]["consent"][
        "state"
    ] == "UNSUBSCRIBED"
    assert make_token(secret, SHOP, oid, now) != make_token(secret, SHOP, ObjectId(), now)


async def test_an_smtp_outage_loses_nothing(mail, smtp, database):
    gid = await contact(mail.api, "patient@example.com")
    for i in range(2):
        await send(mail.api, gid, f"before {i}", "body")
    await settled(database, 2)
    smtp.stop()
    for i in range(3):
        await send(mail.api, gid, f"during {i}", "body")
    # They are tried, fail, and wait for another try.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        waiting = await database.messages.find({"subject": {"$regex": "^during"}}).to_list()
        if all(m["attempts"] >= 2 for m in waiting):
            break
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    assert all(m["status"] == "QUEUED" and m["lastError"] for m in waiting)
    smtp.start()
    docs = await settled(database, 5)
    assert [d["status"] for d in docs] == ["SENT"] * 5
    subjects = sorted(m["Subject"] for m in smtp.inbox.mails())
    assert subjects == ["before 0", "before 1", "during 0", "during 1", "during 2"]
    log = (await mail.api.data(CONTACT, {"id": gid}))["contact"]["activity"]["nodes"]
    assert sorted(n["text"] for n in log) == subjects


async def test_an_unexpected_error_does_not_stop_delivery(mail, smtp, database, monkeypatch):
    real_build, real_claim = outbox.build_email, outbox.Outbox._claim
    faults = {"build": 1, "claim": 1}

    def failing_build(message, sender):
        if faults["build"]:
            faults["build"] -= 1
            raise ValueError("cannot build this one")
        return real_build(message, sender)

    async def failing_claim(self):
        if faults["claim"]:
            faults["claim"] -= 1
            raise RuntimeError("a bug in the loop")
        return await real_claim(self)

    monkeypatch.setattr(outbox, "build_email", failing_build)
    monkeypatch.setattr(outbox.Outbox, "_claim", failing_claim)
    gid = await contact(mail.api, "steady@example.com")
    await send(mail.api, gid, "first", "body")
    await send(mail.api, gid, "second", "body")
    docs = await settled(database, 2)
    assert faults == {"build": 0, "claim": 0}
    assert [d["status"] for d in docs] == ["SENT", "SENT"]
    assert sorted(m["Subject"] for m in smtp.inbox.mails()) == ["first", "second"]
    assert sorted(d["attempts"] for d in docs) == [1, 2]  # the one that could not be built


async def test_a_refused_recipient_fails_with_the_reason(mail, smtp, database):
    smtp.inbox.refused.add("gone@example.com")
    gid = await contact(mail.api, "gone@example.com")
    payload = await send(mail.api, gid, "Hello", "body")
    [stored] = await settled(database, 1)
    assert stored["status"] == "FAILED"
    assert "550" in stored["lastError"] and "No such mailbox" in stored["lastError"]
    assert smtp.inbox.received == []
    status = (await mail.api.data(MESSAGE, {"id": payload["message"]["id"]}))["message"]
    assert status["status"] == "FAILED" and status["sentAt"] is None
    assert (await mail.api.data(CONTACT, {"id": gid}))["contact"]["activity"]["nodes"] == []


async def test_unsubscribing_before_delivery_cancels_marketing(mail, smtp, database):
    gid = await contact(mail.api, "late@example.com", "SUBSCRIBED")
    smtp.stop()
    await send(mail.api, gid, "Sale", "body", marketing=True)
    await send(mail.api, gid, "Receipt", "body", marketing=False)
    # An attempt already under way when the unsubscribe lands may still send:
    # the unsubscribe comes once the first attempt has failed.
    await failed_once(database, "Sale")
    assert (await mail.api.data(CONSENT, {"id": gid, "state": "UNSUBSCRIBED"}))["consentUpdate"][
        "userErrors"
    ] == []
    smtp.start()
    docs = await settled(database, 2)
    assert {d["subject"]: d["status"] for d in docs} == {"Sale": "FAILED", "Receipt": "SENT"}
    assert docs[0]["lastError"] == "The contact is no longer subscribed to marketing e-mail."
    assert [m["Subject"] for m in smtp.inbox.mails()] == ["Receipt"]


async def test_bad_input_queues_nothing(mail, as_role, database):
    gid = await contact(mail.api, "ann@example.com")
    cases = [
        ({"subject": "", "body": "b"}, [(["subject"], "REQUIRED")]),
        ({"subject": "Two\r\nBcc: x@evil.example", "body": "b"}, [(["subject"], "INVALID")]),
        ({"subject": "s" * 201, "body": "b"}, [(["subject"], "TOO_LONG")]),
        ({"subject": "ok", "body": "  "}, [(["body"], "REQUIRED")]),
        ({"subject": "ok", "body": "b" * 100_001}, [(["body"], "TOO_LONG")]),
        ({"subject": " ", "body": ""}, [(["subject"], "REQUIRED"), (["body"], "REQUIRED")]),
    ]
    for variables, expected in cases:
        payload = (await mail.api.data(SEND, {"id": gid, **variables}))["messageSend"]
        assert errors(payload) == expected, variables
    for target in (encode_id("Contact", ObjectId()), "junk"):
        payload = (await mail.api.data(SEND, {"id": target, "subject": "s", "body": "b"}))[
            "messageSend"
        ]
        assert errors(payload) == [(["contactId"], "NOT_FOUND")]
    foreign = (await as_role("OTHER").data(SEND, {"id": gid, "subject": "s", "body": "b"}))[
        "messageSend"
    ]
    assert errors(foreign) == [(["contactId"], "NOT_FOUND")]
    for role in ("READER", "PUBLIC", "INGEST"):
        body = await as_role(role).gql(SEND, {"id": gid, "subject": "s", "body": "b"})
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await database.messages.count_documents({}) == 0


async def test_without_smtp_messages_stay_queued(api, database):
    gid = await contact(api, "ann@example.com")
    payload = await send(api, gid, "Hello", "body")
    assert payload["message"]["status"] == "QUEUED"
    await asyncio.sleep(0.5)
    [stored] = await database.messages.find({}).to_list()
    assert (stored["status"], stored["attempts"]) == ("QUEUED", 0)
    status = (await api.data(MESSAGE, {"id": payload["message"]["id"]}))["message"]
    assert status == {"status": "QUEUED", "sentAt": None, "attempts": 0, "lastError": None}
