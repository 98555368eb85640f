"""The activity log on the contact page: entries, their connection, and the note payloads."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from bson import ObjectId

from graph.context import Info
from graph.errors import bad_input, refusal_errors
from graph.permissions import may_read_notes as role_reads_notes
from graph.types.common import PageInfo, UserError
from graph.types.contact import Contact
from graph.types.node import Node, encode_id
from graph.types.scalars import DateTime
from loaders.activity import CURSOR_FIELD, ActivityPage, ActivityQuery
from loaders.keyset import MAX_PAGE, decode_cursor, encode_cursor
from resolvers.errors import Refused

if TYPE_CHECKING:
    from graph.types.order import Order

DEFAULT_PAGE = 50
NOTES_MAX = 250


@strawberry.enum(description="What an activity entry records.")
class ActivityKind(Enum):
    CONTACT_CREATED = strawberry.enum_value(
        "CONTACT_CREATED", description="The contact was created."
    )
    DETAILS_UPDATED = strawberry.enum_value(
        "DETAILS_UPDATED", description="Details were edited by hand."
    )
    NOTE = strawberry.enum_value("NOTE", description="An internal note by staff.")
    ORDER_PLACED = strawberry.enum_value("ORDER_PLACED", description="An order was placed.")
    ORDER_CANCELED = strawberry.enum_value("ORDER_CANCELED", description="An order was canceled.")
    DRAFT_ORDER_CREATED = strawberry.enum_value(
        "DRAFT_ORDER_CREATED", description="Staff made a draft order."
    )
    CONVERTED_TO_CUSTOMER = strawberry.enum_value(
        "CONVERTED_TO_CUSTOMER", description="A lead became a customer."
    )
    MESSAGE_SENT = strawberry.enum_value(
        "MESSAGE_SENT", description="An e-mail was delivered; the text is its subject."
    )
    FORM_SUBMITTED = strawberry.enum_value(
        "FORM_SUBMITTED", description="A contact form was submitted; the text is the message."
    )
    CONSENT_CHANGED = strawberry.enum_value(
        "CONSENT_CHANGED", description="A marketing consent event was recorded."
    )
    LABELS_CHANGED = strawberry.enum_value(
        "LABELS_CHANGED", description="Labels were added, removed or renamed."
    )
    CONTACTS_MERGED = strawberry.enum_value(
        "CONTACTS_MERGED", description="Duplicates were merged into this contact."
    )
    SUBSCRIPTION_STARTED = strawberry.enum_value(
        "SUBSCRIPTION_STARTED", description="The shop reported a new subscription or membership."
    )
    SUBSCRIPTION_CHANGED = strawberry.enum_value(
        "SUBSCRIPTION_CHANGED",
        description="A subscription was paused, resumed or became past due, or its price, "
        "quantity or billing interval changed; the text says what.",
    )
    SUBSCRIPTION_CANCEL_REQUESTED = strawberry.enum_value(
        "SUBSCRIPTION_CANCEL_REQUESTED",
        description="Staff asked the shop to cancel a subscription; the text is the reason.",
    )
    SUBSCRIPTION_ENDED = strawberry.enum_value(
        "SUBSCRIPTION_ENDED", description="The shop reported a subscription canceled or expired."
    )


@strawberry.type(description="One entry of a contact's activity log.")
class ActivityEntry(Node):
    kind: ActivityKind
    at: DateTime = strawberry.field(description="When it happened (for notes: when written).")
    author: str | None = strawberry.field(
        description="The API key's name for entries made by staff; null for system entries."
    )
    text: str | None = strawberry.field(
        description="The note, the message subject, the form message, ..."
    )
    edited_at: DateTime | None = strawberry.field(description="When a note was last edited.")
    order_id: strawberry.Private[ObjectId | None]

    @strawberry.field(description="The order, for order entries; null when it no longer exists.")
    def order(self, info: Info) -> Annotated[Order, strawberry.lazy("graph.types.order")] | None:
        # Not async: most entries have no order, and an async resolver costs
        # each of them a coroutine and a task; an order entry hands
        # graphql-core the awaitable that loads its order.
        if self.order_id is None:
            return None
        return _load_order(info, self.order_id)  # type: ignore[return-value]

    @classmethod
    def from_doc(cls, doc: dict[str, Any], contact_id: ObjectId) -> ActivityEntry:
        """The entry of a stored log; its id names the contact, the way to find it again."""
        return cls(
            id=strawberry.ID(encode_id("ActivityEntry", doc["_id"], contact_id)),
            kind=ActivityKind(doc["kind"]),
            at=doc["at"],
            author=doc.get("author"),
            text=doc.get("text"),
            edited_at=doc.get("editedAt"),
            order_id=doc.get("orderId"),
        )


async def _load_order(info: Info, order_id: ObjectId) -> Order | None:
    doc = await info.context.loaders.order_by_id.load(order_id)
    if doc is None:
        return None
    from graph.types.order import Order  # order.py imports the contact types this module needs

    return Order.from_doc(doc)


@strawberry.type
class ActivityEdge:
    cursor: str
    node: ActivityEntry


def _cursor(entry: dict[str, Any]) -> str:
    return encode_cursor(CURSOR_FIELD, entry["at"], entry["_id"])


def _activity_edges(root: ActivityConnection) -> list[ActivityEdge]:
    # Each cursor is a JSON + base64 encoding: made only when a client selects edges.
    return [
        ActivityEdge(cursor=_cursor(entry), node=node)
        for entry, node in zip(root.entries, root.nodes, strict=True)
    ]


@strawberry.type(description="A page of a contact's activity log, newest first.")
class ActivityConnection:
    edges: list[ActivityEdge] = strawberry.field(resolver=_activity_edges)
    nodes: list[ActivityEntry]
    page_info: PageInfo
    total_count: int = strawberry.field(
        description="Entries of the requested kinds over all pages."
    )
    entries: strawberry.Private[list[dict[str, Any]]]

    @classmethod
    def from_page(cls, page: ActivityPage, contact_id: ObjectId) -> ActivityConnection:
        entries = page.entries
        return cls(
            nodes=[ActivityEntry.from_doc(e, contact_id) for e in entries],
            page_info=PageInfo(
                has_next_page=page.has_next,
                has_previous_page=page.has_previous,
                start_cursor=_cursor(entries[0]) if entries else None,
                end_cursor=_cursor(entries[-1]) if entries else None,
            ),
            total_count=page.total_count,
            entries=entries,
        )


def may_read_notes(info: Info) -> bool:
    # `Contact.notes` itself is refused before execution (graph.field_rights);
    # the same rule keeps NOTE entries out of the log, `node` and the live feed.
    return role_reads_notes(info.context.key.role)


def visible_kinds(info: Info, kinds: list[ActivityKind] | None) -> tuple[str, ...] | None:
    """The kinds a caller asked for, less those its role may not read; None for all."""
    if kinds is None and may_read_notes(info):
        return None
    # Names: each kind's value is its name.
    wanted = [k.name for k in (kinds if kinds is not None else list(ActivityKind))]
    if not may_read_notes(info):
        wanted = [k for k in wanted if k != ActivityKind.NOTE.name]
    return tuple(sorted(set(wanted)))


def visible_entry(info: Info, doc: dict[str, Any]) -> bool:
    return doc.get("kind") != ActivityKind.NOTE.name or may_read_notes(info)


EMPTY_PAGE = ActivityPage(entries=[], has_next=False, has_previous=False, total_count=0)


async def contact_activity(
    info: Info,
    contact_id: ObjectId,
    first: int | None,
    after: str | None,
    kinds: list[ActivityKind] | None,
) -> ActivityConnection:
    size = DEFAULT_PAGE if first is None else first
    if not 1 <= size <= MAX_PAGE:
        raise bad_input(f"`first` must be between 1 and {MAX_PAGE}, got {size}.")
    cursor = decode_cursor(after, CURSOR_FIELD) if after is not None else None
    wanted = visible_kinds(info, kinds)
    if wanted == ():
        return ActivityConnection.from_page(EMPTY_PAGE, contact_id)
    page = await info.context.loaders.activity_page.load(
        ActivityQuery(contact_id, size, cursor, wanted)
    )
    return ActivityConnection.from_page(page or EMPTY_PAGE, contact_id)


async def contact_notes(info: Info, contact_id: ObjectId, first: int | None) -> list[ActivityEntry]:
    size = NOTES_MAX if first is None else first
    if not 1 <= size <= NOTES_MAX:
        raise bad_input(f"`first` must be between 1 and {NOTES_MAX}, got {size}.")
    page = await info.context.loaders.activity_page.load(
        ActivityQuery(contact_id, size, None, (ActivityKind.NOTE.name,))
    )
    return [ActivityEntry.from_doc(e, contact_id) for e in (page.entries if page else [])]


@strawberry.type
class NotePayload:
    note: ActivityEntry | None = None
    contact: Contact | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> NotePayload:
        return cls(user_errors=refusal_errors(refusal))


@strawberry.type
class NoteDeletePayload:
    deleted_note_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def refused(cls, refusal: Refused) -> NoteDeletePayload:
        return cls(user_errors=refusal_errors(refusal))
