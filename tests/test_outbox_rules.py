"""The outbox to the edge: which message goes when, what a reply of the mail server makes of it.

tests/test_messages.py tells the story through the API and a real SMTP
server; these call the outbox directly, with a fixed clock and a stand-in
for the SMTP client, for the exact rules: due means at or before now, the
oldest goes first, a 5xx fails and a 4xx waits (500 and 499), the backoff
doubles and is spread, the give-up bound on both sides, the lease a stop
gives back, and a delivery that another claim overtook writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.policy
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from resolvers import activity, outbox
from resolvers.outbox import (
    Outbox,
    RetryPolicy,
    SmtpServer,
    VerbatimHeader,
    build_email,
)

SHOP = "acme"
OTHER_SHOP = "globex"
NOW = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
SENDER = "Acme Shop <news@acme.example>"
MS = dt.timedelta(milliseconds=1)


# ---------------------------------------------------------------- the SMTP address


def test_an_smtp_url_names_host_port_and_login():
    server = SmtpServer.from_url("smtp://mailer%40acme:p%3Ass%20w@mail.acme.example:2525")
    assert server == SmtpServer("mail.acme.example", 2525, "mailer@acme", "p:ss w", False)


def test_the_default_ports_are_25_for_smtp_and_465_for_smtps():
    assert SmtpServer.from_url("smtp://mail.acme.example") == SmtpServer(
        "mail.acme.example", 25, None, None, False
    )
    assert SmtpServer.from_url("smtps://mail.acme.example") == SmtpServer(
        "mail.acme.example", 465, None, None, True
    )
    assert SmtpServer.from_url("smtps://u:p@mail.acme.example:587") == SmtpServer(
        "mail.acme.example", 587, "u", "p", True
    )


def test_a_user_without_a_password_logs_in_with_none():
    assert SmtpServer.from_url("smtp://mailer@mail.acme.example") == SmtpServer(
        "mail.acme.example", 25, "mailer", None, False
    )


@pytest.mark.parametrize(
    "url", ["http://mail.acme.example", "mail.acme.example:25", "smtp://", "smtps://:25", ""]
)
def test_anything_but_an_smtp_url_with_a_host_is_refused(url):
    with pytest.raises(ValueError) as refused:
        SmtpServer.from_url(url)
    assert str(refused.value) == "SMTP_URL must look like smtp://user:password@host:port"


# ---------------------------------------------------------------- the backoff


def bounds(policy: RetryPolicy, attempts: int, samples: int = 400) -> tuple[float, float]:
    random.seed(attempts)
    delays = [policy.delay(attempts) for _ in range(samples)]
    return min(delays), max(delays)


@pytest.mark.parametrize(
    ("attempts", "base"), [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (8, 256.0), (9, 300.0)]
)
def test_the_delay_doubles_from_the_first_up_to_the_cap_spread_over_its_last_fifth(attempts, base):
    low, high = bounds(RetryPolicy(), attempts)
    assert base * 0.8 <= low < base * 0.81
    assert base * 0.99 < high <= base


def test_the_delay_follows_the_policy():
    low, high = bounds(RetryPolicy(first_delay=0.5, max_delay=3.0), 3)
    assert 1.6 <= low < 1.62 and 1.98 < high <= 2.0
    low, high = bounds(RetryPolicy(first_delay=0.5, max_delay=3.0), 4)
    assert 2.4 <= low < 2.43 and 2.97 < high <= 3.0


# ---------------------------------------------------------------- the raw header


def test_a_header_fits_on_its_line_up_to_the_limit_and_folds_one_past_it():
    header = VerbatimHeader("X", "aaaa bbbb cc")
    assert header == "aaaa bbbb cc" and header.name == "X"
    fits = email.policy.SMTP.clone(max_line_length=12)
    assert header.fold(policy=fits) == "X: aaaa bbbb\r\n cc\r\n"
    assert header.fold(policy=fits.clone(max_line_length=11)) == "X: aaaa\r\n bbbb cc\r\n"
    assert header.fold(policy=fits.clone(max_line_length=15)) == "X: aaaa bbbb cc\r\n"
    assert header.fold(policy=fits.clone(linesep="\n")) == "X: aaaa bbbb\n cc\n"


def test_a_header_keeps_its_spaces_as_given():
    policy = email.policy.SMTP.clone(max_line_length=12)
    assert VerbatimHeader("X", "aa  bb").fold(policy=policy) == "X: aa  bb\r\n"
    assert VerbatimHeader("X", " aa").fold(policy=policy) == "X:  aa\r\n"


def test_without_a_line_length_a_header_folds_at_998_characters():
    unlimited = email.policy.SMTP.clone(max_line_length=None)
    word = "a" * 990
    assert VerbatimHeader("X", f"{word} bbbb").fold(policy=unlimited) == f"X: {word} bbbb\r\n"
    assert VerbatimHeader("X", f"{word} bbbbb").fold(policy=unlimited) == f"X: {word}\r\n bbbbb\r\n"


def test_a_word_longer_than_a_mail_line_is_refused():
    unlimited = email.policy.SMTP.clone(max_line_length=None)
    assert VerbatimHeader("X", "a" * 995).fold(policy=unlimited) == f"X: {'a' * 995}\r\n"
    with pytest.raises(ValueError) as refused:
        VerbatimHeader("List-Unsubscribe", "a" * 981).fold(policy=unlimited)
    assert str(refused.value) == "List-Unsubscribe has a word longer than a mail line may be"
    with pytest.raises(ValueError, match="^X has a word longer"):
        VerbatimHeader("X", "b " + "a" * 998).fold(policy=email.policy.SMTP)


@pytest.mark.parametrize("value", ["<https://bücher.example/u>", "<https://a.example/u>\r\nBcc: x"])
def test_a_header_that_is_not_printable_ascii_is_refused(value):
    with pytest.raises(ValueError) as refused:
        VerbatimHeader("List-Unsubscribe", value)
    assert str(refused.value) == f"List-Unsubscribe must be printable ASCII: {value!r}"


# ---------------------------------------------------------------- the mail


def message_doc(**fields: Any) -> dict[str, Any]:
    return {
        "_id": ObjectId("6a1b2c3d4e5f60718293a4b5"),
        "shopId": SHOP,
        "contactId": ObjectId(),
        "to": "ann@example.com",
        "toKey": "ann@example.com",
        "subject": "Your order",
        "body": "Hello Ann,\n\nyour parcel is on its way.",
        "marketing": False,
        "status": "QUEUED",
        "attempts": 0,
        "nextAttemptAt": NOW,
        "lastError": None,
        "sentAt": None,
        "author": "Bea Admin",
        "createdAt": NOW,
        **fields,
    }


def test_a_mail_carries_its_addresses_date_and_a_message_id_of_the_senders_domain():
    mail = build_email(message_doc(), SENDER)
    assert mail.items() == [
        ("From", SENDER),
        ("To", "ann@example.com"),
        ("Subject", "Your order"),
        ("Date", "Fri, 01 Mar 2126 10:00:00 +0000"),
        ("Message-ID", "<6a1b2c3d4e5f60718293a4b5@acme.example>"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "7bit"),
        ("MIME-Version", "1.0"),
    ]
    assert mail.get_content() == "Hello Ann,\n\nyour parcel is on its way.\n"


def test_the_message_id_takes_the_domain_after_the_last_at_sign():
    mail = build_email(message_doc(), 'Acme <"news@desk"@acme.example>')
    assert mail["Message-ID"] == "<6a1b2c3d4e5f60718293a4b5@acme.example>"


@pytest.mark.parametrize("sender", ["postmaster", '"news@"', ""])
def test_a_sender_without_a_domain_gives_message_ids_of_contactgraph(sender):
    assert build_email(message_doc(), sender)["Message-ID"] == (
        "<6a1b2c3d4e5f60718293a4b5@contactgraph>"
    )


def test_a_marketing_mail_has_one_click_unsubscribe_headers_and_the_link_below_the_body():
    url = "https://acme.example/unsubscribe/" + "t" * 80
    mail = build_email(message_doc(unsubscribeUrl=url, body="20% off."), SENDER)
    raw = mail.as_bytes(policy=email.policy.SMTP)
    headers = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert f"\r\nList-Unsubscribe: <{url}>\r\n" in headers
    assert "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers
    assert mail.keys()[5:7] == ["List-Unsubscribe", "List-Unsubscribe-Post"]
    assert mail.get_content() == (
        f"20% off.\n\n--\nTo stop receiving these e-mails, unsubscribe: {url}\n"
    )


def test_an_empty_unsubscribe_link_adds_nothing():
    mail = build_email(message_doc(unsubscribeUrl=""), SENDER)
    assert mail["List-Unsubscribe"] is None
    assert mail.get_content() == "Hello Ann,\n\nyour parcel is on its way.\n"


# ---------------------------------------------------------------- delivery: fixtures


class Clock:
    def __init__(self) -> None:
        self.at = NOW


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    # The outbox's clock only: the log entry of a sent message must carry the
    # outbox's time (sentAt), not a time of its own.
    monkeypatch.setattr(outbox, "now", lambda: clock.at)
    return clock


class Mailer:
    """Stands in for aiosmtplib.send: records each attempt, then fails as told or accepts."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Any, dict[str, Any]]] = []
        self.failures: list[BaseException] = []
        self.during: Callable[[Any], Awaitable[None]] | None = None
        self.tried = asyncio.Event()

    async def send(self, message: Any, **kwargs: Any) -> None:
        self.attempts.append((message, kwargs))
        self.tried.set()
        if self.during is not None:
            await self.during(message)
        if self.failures:
            raise self.failures.pop(0)

    @property
    def subjects(self) -> list[str]:
        return [mail["Subject"] for mail, _ in self.attempts]


@pytest.fixture
def mailer(monkeypatch: pytest.MonkeyPatch) -> Mailer:
    mailer = Mailer()
    monkeypatch.setattr(aiosmtplib, "send", mailer.send)
    return mailer


async def stored_contact(
    database: Any, *, shop: str = SHOP, state: str | None = None, **fields: Any
) -> ObjectId:
    doc = {
        "_id": ObjectId(),
        "shopId": shop,
        "email": "ann@example.com",
        "emailKey": f"{ObjectId()}@example.com",
        "kind": "LEAD",
        "createdAt": NOW - dt.timedelta(days=30),
        "updatedAt": NOW - dt.timedelta(days=30),
        **fields,
    }
    if state is not None:
        doc["consent"] = {"state": state, "at": NOW - dt.timedelta(days=10)}
    await database.contacts.insert_one(doc)
    return doc["_id"]


async def stored_message(database: Any, contact_id: ObjectId, **fields: Any) -> dict[str, Any]:
    doc = message_doc(_id=ObjectId(), contactId=contact_id, **fields)
    await database.messages.insert_one(doc)
    return doc


async def stored(database: Any, message: dict[str, Any]) -> dict[str, Any]:
    doc = await database.messages.find_one({"_id": message["_id"]})
    assert doc is not None
    return doc


def an_outbox(database: Any, poll_seconds: float = 5.0, **policy: Any) -> Outbox:
    return Outbox(
        database,
        SmtpServer("mail.acme.example", 2525),
        SENDER,
        RetryPolicy(**policy),
        poll_seconds=poll_seconds,
    )


def leased(message: dict[str, Any], attempts: int = 1, lease: float = 120.0) -> dict[str, Any]:
    """The message as a claim left it: due again only once the lease ends."""
    return {
        **message,
        "attempts": attempts,
        "nextAttemptAt": NOW + dt.timedelta(seconds=lease),
    }


# ---------------------------------------------------------------- delivery: success


async def test_a_due_message_is_sent_once_and_logged_on_its_contact(database, clock, mailer):
    contact_id = await stored_contact(database)
    message = await stored_message(database, contact_id)
    box = an_outbox(database)

    assert await box.deliver_due() == 1

    assert await stored(database, message) == {
        **message,
        "status": "SENT",
        "attempts": 1,
        "sentAt": NOW,
        "nextAttemptAt": None,
        "lastError": None,
    }
    [(mail, _)] = mailer.attempts
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Your order")
    assert mail["Message-ID"] == f"<{message['_id']}@acme.example>"
    contact = await database.contacts.find_one({"_id": contact_id})
    [entry] = contact["activity"]
    assert entry == {
        "_id": entry["_id"],
        "kind": "MESSAGE_SENT",
        "at": NOW,
        "text": "Your order",
        "author": "Bea Admin",
    }
    assert (contact["activityCount"], contact["activityEmbedded"]) == (1, 1)
    assert contact["updatedAt"] == NOW
    assert await box.deliver_due() == 0
    assert len(mailer.attempts) == 1


async def test_a_message_without_an_author_is_logged_without_one(database, clock, mailer):
    contact_id = await stored_contact(database)
    message = message_doc(_id=ObjectId(), contactId=contact_id)
    del message["author"]
    await database.messages.insert_one(message)

    assert await an_outbox(database).deliver_due() == 1

    contact = await database.contacts.find_one({"_id": contact_id})
    assert [{k: v for k, v in e.items() if k != "_id"} for e in contact["activity"]] == [
        {"kind": "MESSAGE_SENT", "at": NOW, "text": "Your order"}
    ]


async def test_the_mail_goes_to_the_configured_server_with_its_login_tls_and_timeout(
    database, clock, mailer
):
    await stored_message(database, await stored_contact(database))
    box = Outbox(
        database,
        SmtpServer("mail.acme.example", 587, "mailer", "secret", use_tls=True),
        SENDER,
        RetryPolicy(timeout=12.5),
    )

    await box.deliver_due()

    [(mail, connection)] = mailer.attempts
    assert mail["From"] == SENDER
    assert connection == {
        "hostname": "mail.acme.example",
        "port": 587,
        "username": "mailer",
        "password": "secret",
        "use_tls": True,
        "timeout": 12.5,
    }


async def test_due_means_at_or_before_now(database, clock, mailer):
    contact_id = await stored_contact(database)
    later = await stored_message(database, contact_id, subject="later", nextAttemptAt=NOW + MS)
    now_due = await stored_message(database, contact_id, subject="now", nextAttemptAt=NOW)

    assert await an_outbox(database).deliver_due() == 1

    assert mailer.subjects == ["now"]
    assert (await stored(database, now_due))["status"] == "SENT"
    assert await stored(database, later) == later


async def test_the_longest_waiting_message_goes_first(database, clock, mailer):
    contact_id = await stored_contact(database)
    for subject, ago in (("second", 1), ("third", 0), ("first", 5)):
        await stored_message(
            database, contact_id, subject=subject, nextAttemptAt=NOW - dt.timedelta(seconds=ago)
        )

    assert await an_outbox(database).deliver_due() == 3

    assert mailer.subjects == ["first", "second", "third"]


async def test_a_message_in_delivery_is_leased_to_this_outbox(database, clock, mailer):
    message = await stored_message(database, await stored_contact(database), attempts=2)
    seen: list[dict[str, Any]] = []

    async def look(_: Any) -> None:
        seen.append(await stored(database, message))

    mailer.during = look
    await an_outbox(database, lease=90.0).deliver_due()

    assert seen == [leased(message, attempts=3, lease=90.0)]
    assert (await stored(database, message))["attempts"] == 3


async def test_marking_sent_and_logging_it_happen_together_or_not_at_all(
    database, clock, mailer, monkeypatch
):
    contact_id = await stored_contact(database)
    message = await stored_message(database, contact_id)

    async def aborted(database: Any, work: Any) -> Any:
        async with database.client.start_session() as session:
            await session.start_transaction()
            await work(session)
            await session.abort_transaction()
        raise RuntimeError("the commit did not happen")

    monkeypatch.setattr(activity, "in_transaction", aborted)

    with pytest.raises(RuntimeError, match="the commit did not happen"):
        await an_outbox(database).deliver_due()

    # Still leased: it goes out again once the lease ends (delivery is at least once).
    assert await stored(database, message) == leased(message)
    contact = await database.contacts.find_one({"_id": contact_id})
    assert "activity" not in contact and contact["updatedAt"] == NOW - dt.timedelta(days=30)


async def test_the_log_entry_that_passes_the_bound_moves_the_oldest_to_the_archive(
    database, clock, mailer
):
    old = [
        activity.entry("NOTE_ADDED", text=f"note {i}", at=NOW - dt.timedelta(hours=200 - i))
        for i in range(activity.SPILL_AT - 1)
    ]
    contact_id = await stored_contact(
        database, activity=old, activityCount=len(old), activityEmbedded=len(old)
    )
    await stored_message(database, contact_id)

    await an_outbox(database).deliver_due()

    contact = await database.contacts.find_one({"_id": contact_id})
    assert contact["activityEmbedded"] == activity.SPILL_AT - activity.BUCKET_SIZE
    assert contact["activity"][-1]["kind"] == "MESSAGE_SENT"
    [bucket] = await database.activity_archive.find({"contactId": contact_id}).to_list()
    assert bucket["shopId"] == SHOP
    assert [e["text"] for e in bucket["entries"]] == [
        f"note {i}" for i in reversed(range(activity.BUCKET_SIZE))
    ]


# ---------------------------------------------------------------- delivery: refused before sending


async def test_a_message_whose_contact_is_gone_fails(database, clock, mailer, caplog):
    message = await stored_message(database, ObjectId())

    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        assert await an_outbox(database).deliver_due() == 1

    assert await stored(database, message) == {
        **message,
        "status": "FAILED",
        "attempts": 1,
        "nextAttemptAt": None,
        "lastError": "The contact no longer exists.",
    }
    assert mailer.attempts == []
    assert f"outbox: message {message['_id']} failed: The contact no longer exists." in [
        r.getMessage() for r in caplog.records
    ]


async def test_a_message_never_reaches_a_contact_of_another_shop(database, clock, mailer):
    contact_id = await stored_contact(database, shop=SHOP)
    message = await stored_message(database, contact_id, shopId=OTHER_SHOP)

    await an_outbox(database).deliver_due()

    assert (await stored(database, message))["lastError"] == "The contact no longer exists."
    assert mailer.attempts == []


@pytest.mark.parametrize("state", [None, "PENDING", "NOT_SUBSCRIBED", "UNSUBSCRIBED"])
async def test_marketing_to_a_contact_no_longer_subscribed_fails(database, clock, mailer, state):
    contact_id = await stored_contact(database, state=state)
    message = await stored_message(database, contact_id, marketing=True)

    await an_outbox(database).deliver_due()

    after = await stored(database, message)
    assert (after["status"], after["lastError"], after["nextAttemptAt"]) == (
        "FAILED",
        "The contact is no longer subscribed to marketing e-mail.",
        None,
    )
    assert mailer.attempts == []


async def test_marketing_goes_to_the_subscribed_and_other_mail_to_anyone(database, clock, mailer):
    subscribed = await stored_contact(database, state="SUBSCRIBED")
    unsubscribed = await stored_contact(database, state="UNSUBSCRIBED")
    sale = await stored_message(database, subscribed, subject="Sale", marketing=True)
    receipt = await stored_message(database, unsubscribed, subject="Receipt", marketing=False)

    assert await an_outbox(database).deliver_due() == 2

    assert sorted(mailer.subjects) == ["Receipt", "Sale"]
    for message in (sale, receipt):
        assert (await stored(database, message))["status"] == "SENT"


# ---------------------------------------------------------------- delivery: the server's answer


async def delivered_with(database: Any, mailer: Mailer, failure: BaseException, **fields: Any):
    message = await stored_message(database, await stored_contact(database), **fields)
    mailer.failures.append(failure)
    await an_outbox(database).deliver_due()
    return message, await stored(database, message)


async def test_refused_recipients_fail_the_message_with_every_reason(database, clock, mailer):
    refused = aiosmtplib.SMTPRecipientsRefused(
        [
            aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No such mailbox", "ann@example.com"),
            aiosmtplib.SMTPRecipientRefused(553, "5.1.3 Bad address", "ann@example.com"),
        ]
    )
    message, after = await delivered_with(database, mailer, refused)

    assert after == {
        **leased(message),
        "status": "FAILED",
        "nextAttemptAt": None,
        "lastError": "The mail server refused the recipient: "
        "550 5.1.1 No such mailbox; 553 5.1.3 Bad address",
    }


@pytest.mark.parametrize(("code", "reply"), [(500, "Syntax error"), (554, "Rejected as spam")])
async def test_a_5xx_reply_fails_the_message(database, clock, mailer, code, reply):
    failure = aiosmtplib.SMTPResponseException(code, reply)
    message, after = await delivered_with(database, mailer, failure)

    assert after == {
        **leased(message),
        "status": "FAILED",
        "nextAttemptAt": None,
        "lastError": f"The mail server refused the message: {code} {reply}",
    }


def retry_window(attempts: int, first: float = 2.0) -> tuple[dt.datetime, dt.datetime]:
    base = first * 2 ** (attempts - 1)
    return NOW + dt.timedelta(seconds=base * 0.8) - MS, NOW + dt.timedelta(seconds=base)


async def test_a_4xx_reply_keeps_the_message_for_a_later_try(database, clock, mailer, caplog):
    failure = aiosmtplib.SMTPResponseException(499, "Try again later")
    with caplog.at_level(logging.INFO, logger="contactgraph"):
        message, after = await delivered_with(database, mailer, failure)

    assert after == {
        **leased(message),
        "nextAttemptAt": after["nextAttemptAt"],
        "lastError": "499 Try again later",
    }
    earliest, latest = retry_window(1)
    assert earliest <= after["nextAttemptAt"] <= latest
    [line] = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert re.fullmatch(
        rf"outbox: message {message['_id']} not delivered \(499 Try again later\); "
        r"again in (1\.[6-9]|2\.0)s",
        line,
    ), line


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (OSError("Network is unreachable"), "OSError: Network is unreachable"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (TimeoutError("Timed out connecting"), "TimeoutError: Timed out connecting"),
        (aiosmtplib.SMTPServerDisconnected("Server gone"), "SMTPServerDisconnected: Server gone"),
        (aiosmtplib.SMTPException("Odd reply"), "SMTPException: Odd reply"),
        (ValueError("Cannot build"), "Unexpected error: ValueError: Cannot build"),
    ],
)
async def test_an_outage_or_a_fault_keeps_the_message_for_a_later_try(
    database, clock, mailer, failure, reason
):
    message, after = await delivered_with(database, mailer, failure)

    earliest, latest = retry_window(1)
    assert earliest <= after["nextAttemptAt"] <= latest
    assert after == {
        **leased(message),
        "nextAttemptAt": after["nextAttemptAt"],
        "lastError": reason,
    }


async def test_a_fault_of_ours_is_logged_with_its_traceback(database, clock, mailer, caplog):
    with caplog.at_level(logging.ERROR, logger="contactgraph"):
        message, _ = await delivered_with(database, mailer, ValueError("Cannot build"))

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"outbox: message {message['_id']} could not be sent"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_each_failed_attempt_doubles_the_wait(database, clock, mailer):
    message, after = await delivered_with(database, mailer, OSError("down"), attempts=3)

    assert after["attempts"] == 4
    earliest, latest = retry_window(4)
    assert earliest <= after["nextAttemptAt"] <= latest
    assert message["nextAttemptAt"] == NOW


async def test_the_retries_go_on_up_to_the_give_up_time_exactly(database, clock, mailer):
    three_days = dt.timedelta(hours=72)
    _, after = await delivered_with(database, mailer, OSError("down"), createdAt=NOW - three_days)

    assert (after["status"], after["lastError"]) == ("QUEUED", "OSError: down")


async def test_past_the_give_up_time_a_message_fails_with_its_last_error(database, clock, mailer):
    over = dt.timedelta(hours=72) + MS
    message, after = await delivered_with(
        database,
        mailer,
        aiosmtplib.SMTPResponseException(451, "Try again later"),
        createdAt=NOW - over,
        attempts=40,
    )

    assert after == {
        **leased(message, attempts=41),
        "status": "FAILED",
        "nextAttemptAt": None,
        "lastError": "Gave up after 41 attempts; last error: 451 Try again later",
    }


async def test_the_give_up_time_follows_the_policy(database, clock, mailer):
    contact_id = await stored_contact(database)
    kept = await stored_message(database, contact_id, createdAt=NOW - dt.timedelta(seconds=60))
    dropped = await stored_message(
        database, contact_id, createdAt=NOW - dt.timedelta(seconds=60) - MS
    )
    mailer.failures += [OSError("down"), OSError("down")]

    await an_outbox(database, give_up_after=60.0).deliver_due()

    assert (await stored(database, kept))["status"] == "QUEUED"
    assert (await stored(database, dropped))["lastError"] == (
        "Gave up after 1 attempts; last error: OSError: down"
    )


async def test_a_database_error_in_delivery_leaves_the_message_leased(database, clock, mailer):
    message = await stored_message(database, await stored_contact(database))
    mailer.failures.append(AutoReconnect("database away"))

    with pytest.raises(AutoReconnect):
        await an_outbox(database).deliver_due()

    assert await stored(database, message) == leased(message)


# ---------------------------------------------------------------- a claim elsewhere wins


async def claimed_elsewhere_during_send(database: Any, message: dict[str, Any]) -> None:
    # Another instance took the message over once this one's lease ended.
    await database.messages.update_one(
        {"_id": message["_id"]},
        {"$inc": {"attempts": 1}, "$set": {"nextAttemptAt": NOW + dt.timedelta(minutes=5)}},
    )


@pytest.mark.parametrize(
    "failure",
    [
        None,
        aiosmtplib.SMTPResponseException(550, "No such mailbox"),
        OSError("Network is unreachable"),
    ],
)
async def test_an_attempt_overtaken_by_another_claim_writes_nothing(
    database, clock, mailer, failure
):
    contact_id = await stored_contact(database)
    message = await stored_message(database, contact_id)

    async def overtaken(_: Any) -> None:
        await claimed_elsewhere_during_send(database, message)

    mailer.during = overtaken
    if failure is not None:
        mailer.failures.append(failure)

    await an_outbox(database).deliver_due()

    assert await stored(database, message) == {
        **message,
        "attempts": 2,
        "nextAttemptAt": NOW + dt.timedelta(minutes=5),
    }
    contact = await database.contacts.find_one({"_id": contact_id})
    assert "activity" not in contact


# ---------------------------------------------------------------- how long it sleeps


class FlakyMessages:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = False

    def __getattr__(self, name: str) -> Any:
        if self.down:
            raise AutoReconnect("database away")
        return getattr(self.real, name)


class FlakyDatabase:
    """The database, with a messages collection that can be made unreachable."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.messages = FlakyMessages(real.messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_with_nothing_queued_it_sleeps_the_poll_interval(database, clock):
    contact_id = await stored_contact(database)
    await stored_message(database, contact_id, status="SENT", nextAttemptAt=None)
    assert await an_outbox(database, poll_seconds=7.5)._idle_seconds() == 7.5


async def test_it_sleeps_until_the_next_retry_falls_due_within_the_poll_interval(database, clock):
    contact_id = await stored_contact(database)
    box = an_outbox(database, poll_seconds=5.0)
    # A sent message (no next attempt) sorts first and must be passed over.
    await stored_message(database, contact_id, status="SENT", nextAttemptAt=None)
    await stored_message(database, contact_id, nextAttemptAt=NOW + dt.timedelta(seconds=4))
    assert await box._idle_seconds() == 4.0
    await stored_message(database, contact_id, nextAttemptAt=NOW + dt.timedelta(seconds=3.25))
    assert await box._idle_seconds() == 3.25
    await database.messages.delete_many({"status": "QUEUED"})
    await stored_message(database, contact_id, nextAttemptAt=NOW + dt.timedelta(seconds=10))
    assert await box._idle_seconds() == 5.0


async def test_an_overdue_message_makes_it_look_again_at_once(database, clock):
    await stored_message(database, await stored_contact(database), nextAttemptAt=NOW - MS * 500)
    assert await an_outbox(database)._idle_seconds() == 0.01


async def test_without_the_database_it_sleeps_the_poll_interval(database, clock):
    flaky = FlakyDatabase(database)
    await stored_message(database, await stored_contact(database), nextAttemptAt=NOW)
    flaky.messages.down = True
    assert await an_outbox(flaky, poll_seconds=2.5)._idle_seconds() == 2.5


async def test_by_default_it_polls_every_five_seconds_and_leases_for_two_minutes(
    database, clock, mailer
):
    box = Outbox(database, SmtpServer("mail.acme.example", 25), SENDER)
    assert await box._idle_seconds() == 5.0
    message = await stored_message(database, await stored_contact(database))
    seen: list[dict[str, Any]] = []

    async def look(_: Any) -> None:
        seen.append(await stored(database, message))

    mailer.during = look
    mailer.failures.append(OSError("down"))
    await box.deliver_due()

    assert seen == [leased(message, lease=120.0)]
    earliest, latest = retry_window(1)
    assert earliest <= (await stored(database, message))["nextAttemptAt"] <= latest


# ---------------------------------------------------------------- running, waking, stopping


async def until(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.02)


def status_is(database: Any, message: dict[str, Any], status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await stored(database, message))["status"] == status

    return check


async def test_a_started_outbox_delivers_until_stopped(database, clock, mailer):
    contact_id = await stored_contact(database)
    first = await stored_message(database, contact_id, subject="first")
    box = an_outbox(database, poll_seconds=0.05)
    assert not box.running

    box.start()
    assert box.running
    await until(status_is(database, first, "SENT"))
    await asyncio.wait_for(box.stop(), 3)
    assert not box.running

    after_stop = await stored_message(database, contact_id, subject="after stop")
    await asyncio.sleep(0.3)
    assert await stored(database, after_stop) == after_stop
    assert mailer.subjects == ["first"]


async def test_a_second_start_runs_no_second_loop(database, clock, mailer):
    box = an_outbox(database, poll_seconds=0.05)
    box.start()
    box.start()
    await asyncio.sleep(0.1)
    await asyncio.wait_for(box.stop(), 3)

    message = await stored_message(database, await stored_contact(database))
    await asyncio.sleep(0.3)
    assert await stored(database, message) == message


async def test_a_stopped_outbox_starts_again(database, clock, mailer):
    box = an_outbox(database, poll_seconds=0.05)
    box.start()
    await asyncio.wait_for(box.stop(), 3)
    message = await stored_message(database, await stored_contact(database))

    box.start()
    await until(status_is(database, message, "SENT"))
    await asyncio.wait_for(box.stop(), 3)


async def test_a_wake_looks_at_once_and_only_once(database, clock, mailer, monkeypatch):
    box = an_outbox(database, poll_seconds=30.0)
    looks: list[int] = []
    real = box.deliver_due

    async def counted() -> int:
        looks.append(1)
        return await real()

    monkeypatch.setattr(box, "deliver_due", counted)
    box.start()
    await until(lambda: asyncio.sleep(0, len(looks) == 1))
    message = await stored_message(database, await stored_contact(database))
    await asyncio.sleep(0.1)
    assert (await stored(database, message))["status"] == "QUEUED"

    box.wake()
    await until(status_is(database, message, "SENT"), within=3)
    await asyncio.sleep(0.3)
    assert len(looks) == 2
    await asyncio.wait_for(box.stop(), 3)


async def test_a_retry_falls_due_without_a_wake_or_a_poll(database, clock, mailer):
    message = await stored_message(
        database, await stored_contact(database), nextAttemptAt=NOW + dt.timedelta(seconds=0.3)
    )
    box = an_outbox(database, poll_seconds=30.0)
    box.start()
    await asyncio.sleep(0.1)
    assert (await stored(database, message))["attempts"] == 0
    clock.at = NOW + dt.timedelta(seconds=1)

    await until(status_is(database, message, "SENT"), within=3)
    await asyncio.wait_for(box.stop(), 3)


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        (AutoReconnect("database away"), "outbox: the database is not reachable; trying again"),
        (RuntimeError("a bug in the loop"), "outbox: unexpected error; carrying on"),
    ],
)
async def test_the_loop_survives_a_fault_and_tries_again_after_the_poll_interval(
    database, clock, mailer, monkeypatch, caplog, fault, logged
):
    box = an_outbox(database, poll_seconds=0.2)
    real = box.deliver_due
    looks: list[float] = []

    async def failing_once() -> int:
        looks.append(time.monotonic())
        if len(looks) == 1:
            raise fault
        return await real()

    monkeypatch.setattr(box, "deliver_due", failing_once)
    message = await stored_message(database, await stored_contact(database))
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        box.start()
        await until(status_is(database, message, "SENT"), within=3)
        await asyncio.wait_for(box.stop(), 3)

    assert 0.15 < looks[1] - looks[0] < 1.5
    [record] = [r for r in caplog.records if r.getMessage() == logged]
    assert record.exc_info is not None and record.exc_info[1] is fault


async def test_stop_lets_a_delivery_under_way_finish_and_claims_nothing_more(
    database, clock, mailer
):
    contact_id = await stored_contact(database)
    first = await stored_message(database, contact_id, subject="first", nextAttemptAt=NOW - MS)
    second = await stored_message(database, contact_id, subject="second")

    async def slow(_: Any) -> None:
        await asyncio.sleep(0.3)

    mailer.during = slow
    box = an_outbox(database, poll_seconds=30.0)
    box.start()
    await asyncio.wait_for(mailer.tried.wait(), 3)
    await asyncio.wait_for(box.stop(grace=3), 5)

    assert (await stored(database, first))["status"] == "SENT"
    assert await stored(database, second) == second
    assert mailer.subjects == ["first"]


async def blocked(_: Any) -> None:
    await asyncio.Event().wait()


async def test_a_stop_cuts_a_hung_delivery_after_the_grace_and_gives_its_lease_back(
    database, clock, mailer
):
    message = await stored_message(database, await stored_contact(database))
    mailer.during = blocked
    box = an_outbox(database, poll_seconds=30.0)
    box.start()
    await asyncio.wait_for(mailer.tried.wait(), 3)
    assert await stored(database, message) == leased(message)
    clock.at = NOW + dt.timedelta(seconds=1)

    started = time.monotonic()
    await asyncio.wait_for(box.stop(grace=0.3), 5)
    took = time.monotonic() - started

    assert 0.3 <= took < 2
    assert not box.running
    # Due at once: another instance delivers it now, not when the lease would have ended.
    assert await stored(database, message) == {
        **message,
        "attempts": 1,
        "nextAttemptAt": NOW + dt.timedelta(seconds=1),
    }


async def test_a_stop_waits_five_seconds_for_a_delivery_by_default(database, clock, mailer):
    message = await stored_message(database, await stored_contact(database))
    mailer.during = blocked
    box = an_outbox(database, poll_seconds=30.0)
    box.start()
    await asyncio.wait_for(mailer.tried.wait(), 3)

    started = time.monotonic()
    await asyncio.wait_for(box.stop(), 8)
    took = time.monotonic() - started

    assert 5 <= took < 5.9
    assert (await stored(database, message))["nextAttemptAt"] == NOW


async def test_a_lease_that_cannot_be_given_back_is_logged_and_left_to_run_out(
    database, clock, mailer, caplog
):
    flaky = FlakyDatabase(database)
    message = await stored_message(database, await stored_contact(database))
    mailer.during = blocked
    box = an_outbox(flaky, poll_seconds=30.0)
    box.start()
    await asyncio.wait_for(mailer.tried.wait(), 3)
    flaky.messages.down = True

    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        await asyncio.wait_for(box.stop(grace=0.1), 5)

    assert f"outbox: the lease of message {message['_id']} could not be given back" in [
        r.getMessage() for r in caplog.records
    ]
    assert await stored(database, message) == leased(message)


async def test_a_stop_after_a_finished_delivery_leaves_its_retry_time(database, clock, mailer):
    message = await stored_message(database, await stored_contact(database))
    mailer.failures.append(OSError("down"))
    box = an_outbox(database, poll_seconds=30.0)
    box.start()

    async def retried() -> bool:
        return (await stored(database, message))["lastError"] is not None

    await until(retried)
    waiting = await stored(database, message)
    await asyncio.wait_for(box.stop(), 3)

    assert await stored(database, message) == waiting
    assert waiting["nextAttemptAt"] > NOW


async def test_stopping_an_outbox_never_started_changes_nothing(database, clock, mailer):
    message = await stored_message(database, await stored_contact(database))
    box = an_outbox(database)
    await asyncio.wait_for(box.stop(grace=0), 1)
    assert not box.running
    assert await stored(database, message) == message


async def test_a_loop_that_died_of_an_error_is_still_stopped_and_logged(
    database, clock, mailer, monkeypatch, caplog
):
    box = an_outbox(database)

    async def broken() -> None:
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(box, "_run", broken)
    box.start()
    await asyncio.sleep(0.05)
    assert not box.running
    with caplog.at_level(logging.ERROR, logger="contactgraph"):
        await asyncio.wait_for(box.stop(), 3)

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "outbox: stopped with an error"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the loop broke"
