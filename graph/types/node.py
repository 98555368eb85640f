"""Opaque global ids ("Contact:<ObjectId>" in URL-safe base64) and the Node interface.

An object that is found through another carries that one's id too, as its
owner: "ActivityEntry:<entry>@<contact>". Log entries have no index of
their own; the contact leads to them.
"""

from __future__ import annotations

import base64
import binascii

import strawberry
from bson import ObjectId
from bson.errors import InvalidId


def encode_id(type_name: str, oid: ObjectId | str, owner: ObjectId | None = None) -> str:
    raw = f"{type_name}:{oid}" if owner is None else f"{type_name}:{oid}@{owner}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _parts(global_id: str) -> tuple[str, ObjectId, ObjectId | None] | None:
    if not isinstance(global_id, str) or len(global_id) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, rest = raw.partition(":")
        oid, at, owner = rest.partition("@")
        return type_name, ObjectId(oid), ObjectId(owner) if at else None
    except (binascii.Error, UnicodeDecodeError, InvalidId, ValueError, TypeError):
        return None


def decode_any(global_id: str) -> tuple[str, ObjectId] | None:
    """(type name, ObjectId) for a well-formed id; None for anything else."""
    parts = _parts(global_id)
    return None if parts is None else parts[:2]


def decode_owner(global_id: str) -> ObjectId | None:
    """The owner an id names (see above); None when it names none or is malformed."""
    parts = _parts(global_id)
    return None if parts is None else parts[2]


def decode_id(global_id: str, type_name: str) -> ObjectId | None:
    """The ObjectId of an id of the given type; None when it is malformed or another type's."""
    decoded = decode_any(global_id)
    if decoded is None or decoded[0] != type_name:
        return None
    return decoded[1]


@strawberry.interface(description="An object with a global id; `node(id:)` finds any of them.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")
