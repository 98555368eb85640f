"""Delivers queued messages over SMTP in the background, with retries; an outage loses nothing.

A message is claimed by moving its `nextAttemptAt` past a lease, so several
processes can share the outbox and a process that dies mid-delivery leaves
the message due again once the lease ends. A failure that may pass (the
server is away, a 4xx reply) keeps the message QUEUED with an exponential
backoff; a refusal (5xx, e.g. an unknown mailbox) makes it FAILED with the
server's reason, as does a marketing message whose contact unsubscribed
meanwhile. After `give_up_after` of failing the message is FAILED too.

Delivery is at least once: if a process dies after the server accepted a
message but before recording it as SENT, the message goes out again; its
Message-ID stays the same, so receivers can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import logging
import random
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.consent import current_state

log = logging.getLogger("contactgraph")


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """`smtp://[user:password@]host[:port]` (STARTTLS when offered) or `smtps://...` (TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:password@host:port")
        tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=tls,
        )


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 2.0  # seconds; doubles with every failed attempt
    max_delay: float = 300.0
    give_up_after: float = 72 * 3600.0
    lease: float = 120.0  # longer than one delivery can take
    timeout: float = 30.0

    def delay(self, attempts: int) -> float:
        base = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return base * random.uniform(0.8, 1.0)  # spread the retries of many messages


class PermanentFailure(Exception):
    pass


class VerbatimHeader(str):
    """A header written as given: plain ASCII, folded only at its spaces, never encoded.

    Python's email package writes a header with a word longer than a line
    (a URL) as RFC 2047 encoded-words, and mail clients then cannot read the
    `List-Unsubscribe` URL (RFC 2369 and RFC 8058 want it as it is, in angle
    brackets). The generator asks a header object with a `name` to fold
    itself, whatever policy it runs with, so this one keeps its text.
    """

    name: str
    MAX_LINE = 998  # RFC 5322: no line may be longer

    def __new__(cls, name: str, value: str) -> VerbatimHeader:
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"{name} must be printable ASCII: {value!r}")
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Any) -> str:
        limit = policy.max_line_length or self.MAX_LINE
        first, *rest = str(self).split(" ")
        lines = [f"{self.name}: {first}"]  # the value starts on the header's own line
        for word in rest:
            if len(lines[-1]) + 1 + len(word) > limit:
                lines.append("")  # continued on the next line, after the space it folds at
            lines[-1] += f" {word}"
        if any(len(line) > self.MAX_LINE for line in lines):
            raise ValueError(f"{self.name} has a word longer than a mail line may be")
        return policy.linesep.join(lines) + policy.linesep


def build_email(message: Doc, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message["to"]
    mail["Subject"] = message["subject"]
    mail["Date"] = email.utils.format_datetime(message["createdAt"])
    # A sender without a domain (a bare local name) gives no domain to borrow.
    _, at_sign, domain = email.utils.parseaddr(sender)[1].rpartition("@")
    mail["Message-ID"] = f"<{message['_id']}@{domain if at_sign and domain else 'contactgraph'}>"
    body = message["body"]
    url = message.get("unsubscribeUrl")
    if url:
        mail["List-Unsubscribe"] = VerbatimHeader("List-Unsubscribe", f"<{url}>")
        # RFC 8058: a POST of this body to that URL unsubscribes, no page in between.
        mail["List-Unsubscribe-Post"] = VerbatimHeader(
            "List-Unsubscribe-Post", "List-Unsubscribe=One-Click"
        )
        body = f"{body}\n\n--\nTo stop receiving these e-mails, unsubscribe: {url}\n"
    mail.set_content(body)
    return mail


class Outbox:
    def __init__(
        self,
        database: Database,
        server: SmtpServer,
        sender: str,
        policy: RetryPolicy | None = None,
        poll_seconds: float = 5.0,
    ) -> None:
        self.database = database
        self.server = server
        self.sender = sender
        self.policy = policy or RetryPolicy()
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # The message being delivered: its lease is given back if a stop cuts the delivery.
        self._claimed: Doc | None = None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, grace: float = 5.0) -> None:
        """Claims nothing more, lets a delivery under way finish (up to `grace` s), gives back its lease.

        Another instance then delivers a message this one had claimed at
        once, not after the lease (minutes) runs out.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            log.exception("outbox: stopped with an error")
        await self._release()

    async def _release(self) -> None:
        message, self._claimed = self._claimed, None
        if message is None:
            return
        try:
            await self.database.messages.update_one(
                self._mine(message), {"$set": {"nextAttemptAt": now()}}
            )
        except PyMongoError:
            log.warning("outbox: the lease of message %s could not be given back", message["_id"])

    def wake(self) -> None:
        """A message was queued: look now rather than at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.deliver_due()
                # Sleep until woken, the next retry falls due, or the poll interval passes.
                # The timeout first: a stop() while it is read must not leave an
                # Event.wait() coroutine created and never awaited.
                idle = await self._idle_seconds()
            except PyMongoError:
                log.warning("outbox: the database is not reachable; trying again", exc_info=True)
                idle = self.poll_seconds
            except Exception:
                # Whatever went wrong, the outbox must keep running (a dead task
                # would deliver nothing more until the next restart), but
                # without spinning on a fault that repeats.
                log.exception("outbox: unexpected error; carrying on")
                idle = self.poll_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            self._wake.clear()

    async def _idle_seconds(self) -> float:
        try:
            due = await self.database.messages.find_one(
                {"status": "QUEUED"}, {"nextAttemptAt": 1}, sort=[("nextAttemptAt", 1)]
            )
        except PyMongoError:
            return self.poll_seconds
        if due is None or due.get("nextAttemptAt") is None:
            return self.poll_seconds
        wait = (due["nextAttemptAt"] - now()).total_seconds()
        return min(self.poll_seconds, max(0.01, wait))

    async def deliver_due(self) -> int:
        """Deliver every message that is due; how many were attempted."""
        attempted = 0
        while not self._stopping and (message := await self._claim()) is not None:
            attempted += 1
            self._claimed = message
            await self._deliver(message)
            self._claimed = None
        return attempted

    async def _claim(self) -> Doc | None:
        at = now()
        # The outbox serves every shop: the one query that is not by shop.
        return await self.database.messages.find_one_and_update(
            {"status": "QUEUED", "nextAttemptAt": {"$lte": at}},
            {
                "$set": {"nextAttemptAt": at + dt.timedelta(seconds=self.policy.lease)},
                "$inc": {"attempts": 1},
            },
            sort=[("nextAttemptAt", 1)],
            return_document=ReturnDocument.AFTER,
        )

    async def _deliver(self, message: Doc) -> None:
        try:
            await self._check_still_wanted(message)
            await aiosmtplib.send(
                build_email(message, self.sender),
                hostname=self.server.hostname,
                port=self.server.port,
                username=self.server.username,
                password=self.server.password,
                use_tls=self.server.use_tls,
                timeout=self.policy.timeout,
            )
        except PermanentFailure as failure:
            await self._failed(message, str(failure))
        except aiosmtplib.SMTPRecipientsRefused as refused:
            reasons = "; ".join(f"{r.code} {r.message}" for r in refused.recipients)
            await self._failed(message, f"The mail server refused the recipient: {reasons}")
        except aiosmtplib.SMTPResponseException as error:
            if error.code >= 500:
                await self._failed(
                    message, f"The mail server refused the message: {error.code} {error.message}"
                )
            else:
                await self._retry(message, f"{error.code} {error.message}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            await self._retry(message, f"{type(error).__name__}: {error}")
        except PyMongoError:
            raise  # the claim's lease brings the message back once the database answers
        except Exception as error:
            # A fault of ours (say, a message that cannot be built): retried
            # like an outage, so a fix deployed in time still delivers it,
            # and FAILED with the reason once the retries run out.
            log.exception("outbox: message %s could not be sent", message["_id"])
            await self._retry(message, f"Unexpected error: {type(error).__name__}: {error}")
        else:
            await self._sent(message)

    async def _check_still_wanted(self, message: Doc) -> None:
        contact = await self.database.contacts.find_one(
            {"shopId": message["shopId"], "_id": message["contactId"]}, {"consent": 1}
        )
        if contact is None:
            raise PermanentFailure("The contact no longer exists.")
        if message.get("marketing") and current_state(contact) != "SUBSCRIBED":
            raise PermanentFailure("The contact is no longer subscribed to marketing e-mail.")

    def _mine(self, message: Doc) -> Doc:
        """The message as this attempt claimed it: a later claim elsewhere makes writes miss."""
        return {
            "_id": message["_id"],
            "shopId": message["shopId"],
            "status": "QUEUED",
            "attempts": message["attempts"],
        }

    async def _sent(self, message: Doc) -> None:
        at = now()
        entry = activity.entry(
            "MESSAGE_SENT", text=message["subject"], author=message.get("author"), at=at
        )

        async def record(session: Any) -> Doc | None:
            marked = await self.database.messages.update_one(
                self._mine(message),
                {
                    "$set": {
                        "status": "SENT",
                        "sentAt": at,
                        "nextAttemptAt": None,
                        "lastError": None,
                    }
                },
                session=session,
            )
            if not marked.modified_count:
                return None
            return await self.database.contacts.find_one_and_update(
                {"_id": message["contactId"], "shopId": message["shopId"]},
                activity.merge_updates(activity.push([entry]), {"$set": {"updatedAt": at}}),
                projection={"activity": 0},
                return_document=ReturnDocument.AFTER,
                session=session,
            )

        contact = await activity.in_transaction(self.database, record)
        await activity.spill_overflow(self.database, message["shopId"], contact)

    async def _failed(self, message: Doc, reason: str) -> None:
        log.warning("outbox: message %s failed: %s", message["_id"], reason)
        await self.database.messages.update_one(
            self._mine(message),
            {"$set": {"status": "FAILED", "nextAttemptAt": None, "lastError": reason}},
        )

    async def _retry(self, message: Doc, reason: str) -> None:
        at = now()
        if (at - message["createdAt"]).total_seconds() > self.policy.give_up_after:
            await self._failed(
                message, f"Gave up after {message['attempts']} attempts; last error: {reason}"
            )
            return
        delay = self.policy.delay(message["attempts"])
        log.info(
            "outbox: message %s not delivered (%s); again in %.1fs", message["_id"], reason, delay
        )
        await self.database.messages.update_one(
            self._mine(message),
            {"$set": {"nextAttemptAt": at + dt.timedelta(seconds=delay), "lastError": reason}},
        )
