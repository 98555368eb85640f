"""A real SMTP server (aiosmtpd) inside the tests, and what it received."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from graph.embedded import free_port


@dataclass
class Inbox:
    """What the test's SMTP server received; refuses mail to `refused` addresses with a 550."""

    received: list[Any] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope)
        return "250 Message accepted for delivery"

    def mails(self) -> list[EmailMessage]:
        """The received messages, parsed (SMTP's CRLF line ends read as newlines)."""
        return [
            email.message_from_bytes(e.content.replace(b"\r\n", b"\n"), policy=email.policy.default)  # type: ignore[misc]
            for e in self.received
        ]

    def raw(self) -> list[bytes]:
        """The received messages as the bytes that came over the wire."""
        return [e.original_content or e.content for e in self.received]


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
