"""What each role may call and read: the rules, in one place.

Root fields: which role may call which query, mutation or subscription.
Fields: which role may read which field of which type. Both are applied by
`graph.field_rights` before an operation runs; this module only states them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphql import OperationType

from resolvers.shops import Role

READ = frozenset({Role.ADMIN, Role.STAFF, Role.READER})
WRITE = frozenset({Role.ADMIN, Role.STAFF})
ADMIN = frozenset({Role.ADMIN})

# Root fields whose roles differ from the default of their operation type
# (queries: READ, mutations: WRITE, subscriptions: READ).
ROOT_FIELD_ROLES: dict[str, frozenset[Role]] = {
    "orderRecord": frozenset({Role.ADMIN, Role.STAFF, Role.INGEST}),
    "subscriptionContractRecord": frozenset({Role.ADMIN, Role.STAFF, Role.INGEST}),
    "contactFormSubmit": frozenset({Role.ADMIN, Role.STAFF, Role.PUBLIC}),
    "labelRename": ADMIN,
    "labelDelete": ADMIN,
    "contactErase": ADMIN,
    "contactDataExport": ADMIN,
    # Webhook endpoints send the shop's data elsewhere: the shop's administrators decide.
    "webhookEndpoints": ADMIN,
    "webhookDeliveries": ADMIN,
    "webhookEndpointCreate": ADMIN,
    "webhookEndpointUpdate": ADMIN,
    "webhookEndpointRotateSecret": ADMIN,
    "webhookEndpointDelete": ADMIN,
}


def allowed_roles(operation: OperationType, field: str) -> frozenset[Role]:
    if field.startswith("__"):
        return frozenset(Role)  # introspection describes the API, not a shop's data
    default = WRITE if operation == OperationType.MUTATION else READ
    return ROOT_FIELD_ROLES.get(field, default)


@dataclass(frozen=True)
class ReadRule:
    """What one role reads: everything but `denied`, or, given `only`, nothing but that.

    `only` maps a type to the fields readable on it (None: all of them); a
    type it does not name is not readable at all, so a type added later stays
    closed to the role until someone decides otherwise. `__typename` is
    always readable.
    """

    denied: frozenset[tuple[str, str]] = frozenset()
    only: Mapping[str, frozenset[str] | None] | None = field(default=None)

    def may_read(self, type_name: str, field_name: str) -> bool:
        if field_name.startswith("__"):
            return True
        if self.only is not None:
            if type_name not in self.only:
                return False
            fields = self.only[type_name]
            return fields is None or field_name in fields
        return (type_name, field_name) not in self.denied


# Internal notes are the shop staff's own: not for reporting keys. The same
# rule hides NOTE entries from the activity log, `node` and the live feed.
NOTES = frozenset({("Contact", "notes")})

# Keys from outside the shop's staff: its backend (INGEST) and a web page
# (PUBLIC). They read what their own calls answer about what they sent, never
# a person's data: of a contact only its id; of an order its identifiers,
# status, amounts, lines and timestamps. Not the buyer's email, name, phone,
# addresses or checkout flags: a report of a known externalId answers with
# the stored order, which someone else may have sent.
OUTSIDE_READS: dict[str, frozenset[str] | None] = {
    "OrderPayload": None,
    "ContactFormPayload": None,
    "UserError": None,
    "Order": frozenset(
        {
            "id",
            "externalId",
            "number",
            "status",
            "placedAt",
            "createdAt",
            "updatedAt",
            "subtotal",
            "shipping",
            "tax",
            "discount",
            "total",
            "refunded",
            "lineItems",
            "contact",
        }
    ),
    "LineItem": None,
    "Money": None,
    # A contract names what is sold and its price, never the person: all of it, as for orders.
    "SubscriptionContractPayload": None,
    "SubscriptionContract": None,
    "Contact": frozenset({"id"}),
}

READ_RULES: dict[Role, ReadRule] = {
    Role.ADMIN: ReadRule(),
    Role.STAFF: ReadRule(),
    Role.READER: ReadRule(denied=NOTES),
    Role.INGEST: ReadRule(only=OUTSIDE_READS),
    Role.PUBLIC: ReadRule(only=OUTSIDE_READS),
}


def may_read(role: Role, type_name: str, field_name: str) -> bool:
    return READ_RULES[role].may_read(type_name, field_name)


def may_read_notes(role: Role) -> bool:
    """Notes, and NOTE entries wherever the activity log shows them."""
    return may_read(role, "Contact", "notes")
