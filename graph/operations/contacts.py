"""Queries and mutations of contacts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from bson import ObjectId
from strawberry.types.nodes import SelectedField

from graph.context import Info
from graph.errors import bad_input
from graph.types.contact import Contact, ContactConnection, ContactSortKey
from graph.types.contact_inputs import ContactFilter, ContactInput
from graph.types.node import Node, decode_any, decode_id, decode_owner, encode_id
from graph.types.order import load_order
from graph.types.payloads import ContactPayload, ContactsDeletePayload
from graph.types.segment import segment_filter_condition
from loaders.contact_search import MAX_QUERY_LENGTH
from loaders.contacts import LIST_PROJECTION, SORT_FIELDS, ContactFilterSpec, contact_match
from loaders.keyset import Page, PageRequest, decode_cursor, find_page
from resolvers import contacts
from resolvers.errors import Problem, Refused, not_found
from resolvers.validation import Checker

MAX_IDS = 250
DEFAULT_PAGE = 50
COUNT_ONLY = frozenset({"totalCount", "__typename"})
MAX_FILTER_LABELS = 250


async def load_contact(info: Info, contact_id: ObjectId | None) -> Contact | None:
    if contact_id is None:
        return None
    doc = await info.context.loaders.contact_by_id.load(contact_id)
    return Contact.from_doc(doc, info.context.currency) if doc else None


def contact_from(info: Info, doc: dict) -> Contact:
    """A contact just written: prime the loader so later fields see the new state."""
    info.context.loaders.contact_by_id.prime(doc["_id"], doc, force=True)
    return Contact.from_doc(doc, info.context.currency)


def _asks_only_for_the_count(info: Info) -> bool:
    """True when the page itself is not selected: plain fields, no fragments or directives."""
    return all(
        isinstance(selection, SelectedField)
        and selection.name in COUNT_ONLY
        and not selection.directives
        for field in info.selected_fields
        for selection in field.selections
    )


def check_filter(spec: ContactFilterSpec) -> None:
    """Filters are query arguments: nonsense is a BAD_USER_INPUT error, not an empty list."""
    for name in ("labels_any", "labels_all", "labels_none"):
        values = getattr(spec, name) or []
        if len(values) > MAX_FILTER_LABELS:
            raise bad_input(f"A label filter takes at most {MAX_FILTER_LABELS} labels.")
        if any(len(v) > 100 for v in values):
            raise bad_input("A label is at most 100 characters.")
    for name in ("total_spent_min", "total_spent_max"):
        value = getattr(spec, name)
        if value is not None and (not value.is_finite() or abs(value) >= 10**15):
            raise bad_input("totalSpent bounds must be finite amounts.")
    for name in ("order_count_min", "order_count_max"):
        value = getattr(spec, name)
        if value is not None and not 0 <= value <= 2**31 - 1:
            raise bad_input("orderCount bounds must be between 0 and 2147483647.")


async def selection_match(info: Info, query: str | None, filter: ContactFilter | None) -> dict:
    """The condition for `query` + `filter`; async because `filter.segment` is read from the database."""
    if query is not None and len(query) > MAX_QUERY_LENGTH:
        raise bad_input(f"`query` is at most {MAX_QUERY_LENGTH} characters.")
    spec = filter.to_spec() if filter else None
    if spec is not None:
        check_filter(spec)
        if filter is not None and filter.segment is not None:
            spec.extra.append(await segment_filter_condition(info, filter.segment))
    return contact_match(info.context.shop_id, query, spec)


def _ids(values: list[strawberry.ID]) -> list[tuple[int, ObjectId | None]]:
    return [(i, decode_id(v, "Contact")) for i, v in enumerate(values)]


@strawberry.type
class ContactQuery:
    @strawberry.field(description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        decoded = decode_any(id)
        if decoded is None:
            return None
        type_name, oid = decoded
        owned = OWNED_NODE_RESOLVERS.get(type_name)
        if owned is not None:
            return await owned(info, oid, decode_owner(id))
        resolve = NODE_RESOLVERS.get(type_name)
        return await resolve(info, oid) if resolve else None

    @strawberry.field(description="A contact by id; null when it does not exist in this shop.")
    async def contact(self, info: Info, id: strawberry.ID) -> Contact | None:
        return await load_contact(info, decode_id(id, "Contact"))

    @strawberry.field(
        description="A contact by email, in any letter case; null when there is none."
    )
    async def contact_by_email(self, info: Info, email: str) -> Contact | None:
        checked = Checker().email(("email",), email)
        if checked is None:
            return None
        doc = await info.context.loaders.contact_by_email_key.load(checked[1])
        return Contact.from_doc(doc, info.context.currency) if doc else None

    @strawberry.field(description="Contacts, filtered, searched and sorted, a page at a time.")
    async def contacts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        query: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "Free text: matches the start of any word of name, email or company, "
                    "case-insensitive."
                )
            ),
        ] = None,
        filter: ContactFilter | None = None,
        sort_key: ContactSortKey | None = ContactSortKey.CREATED_AT,
        reverse: bool | None = False,
    ) -> ContactConnection:
        match = await selection_match(info, query, filter)
        database = info.context.database
        field = SORT_FIELDS[(sort_key or ContactSortKey.CREATED_AT).value]
        request = PageRequest(first, after, last, before)
        if _asks_only_for_the_count(info):
            # A report's `contacts { totalCount }` reads the counters, not a page
            # the server would sort for nothing; the arguments are still checked.
            request.size(DEFAULT_PAGE)
            for cursor in (after, before):
                if cursor is not None:
                    decode_cursor(cursor, field)
            page = Page([], has_next=False, has_previous=False, field=field)
        else:
            page = await find_page(
                database.contacts,
                match,
                field,
                ascending=not reverse,
                page=request,
                default_size=DEFAULT_PAGE,
                projection=LIST_PROJECTION,
            )
        return ContactConnection.from_page(page, info.context.currency, database, match)


@strawberry.type
class ContactMutation:
    @strawberry.mutation(description="A new LEAD; only the email is required.")
    async def contact_create(self, info: Info, input: ContactInput) -> ContactPayload:
        ctx = info.context
        try:
            doc = await contacts.create_contact(
                ctx.database, ctx.shop_id, input.to_details(), ctx.key.name
            )
        except Refused as refusal:
            return ContactPayload.refused(refusal)
        return ContactPayload(contact=contact_from(info, doc))

    @strawberry.mutation(
        description="Edit a contact's details; this locks them against overwrites by new orders."
    )
    async def contact_update(
        self, info: Info, id: strawberry.ID, input: ContactInput
    ) -> ContactPayload:
        ctx = info.context
        try:
            contact_id = decode_id(id, "Contact")
            if contact_id is None:
                raise not_found(("id",))
            doc = await contacts.edit_contact(
                ctx.database, ctx.shop_id, contact_id, input.to_details(), ctx.key.name
            )
        except Refused as refusal:
            return ContactPayload.refused(refusal)
        return ContactPayload(contact=contact_from(info, doc))

    @strawberry.mutation(description="Let new orders overwrite the contact's details again.")
    async def contact_unlock(self, info: Info, id: strawberry.ID) -> ContactPayload:
        ctx = info.context
        try:
            contact_id = decode_id(id, "Contact")
            if contact_id is None:
                raise not_found(("id",))
            doc = await contacts.unlock_contact(ctx.database, ctx.shop_id, contact_id)
        except Refused as refusal:
            return ContactPayload.refused(refusal)
        return ContactPayload(contact=contact_from(info, doc))

    @strawberry.mutation(
        description=(
            "Delete contacts; unknown ids are reported and do not stop the others. "
            "Orders stay, unlinked."
        )
    )
    async def contacts_delete(self, info: Info, ids: list[strawberry.ID]) -> ContactsDeletePayload:
        ctx = info.context
        if len(ids) > MAX_IDS:
            return ContactsDeletePayload.refused(
                Refused([Problem(("ids",), f"At most {MAX_IDS} ids per call.", "LIMIT_EXCEEDED")])
            )
        deleted, problems = await contacts.delete_contacts(ctx.database, ctx.shop_id, _ids(ids))
        ctx.loaders.contact_by_id.prime_many({oid: None for oid in deleted}, force=True)
        payload = (
            ContactsDeletePayload.refused(Refused(problems))
            if problems
            else ContactsDeletePayload()
        )
        payload.deleted_ids = [strawberry.ID(encode_id("Contact", oid)) for oid in deleted]
        return payload


async def _contact_node(info: Info, oid: ObjectId) -> Contact | None:
    return await load_contact(info, oid)


# How `node(id:)` finds each type; other features add theirs.
NODE_RESOLVERS: dict[str, Callable[[Info, ObjectId], Awaitable[Node | None]]] = {
    "Contact": _contact_node,
    "Order": load_order,
}
# Types found through their owner, whose id the global id carries (graph/types/node.py).
OWNED_NODE_RESOLVERS: dict[
    str, Callable[[Info, ObjectId, ObjectId | None], Awaitable[Node | None]]
] = {}
