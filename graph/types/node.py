"""Opaque global ids ("Contact:<ObjectId>" in URL-safe base64) and the Node interface."""

from __future__ import annotations

import base64
import binascii

import strawberry
from bson import ObjectId
from bson.errors import InvalidId


def encode_id(type_name: str, oid: ObjectId | str) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{oid}".encode()).decode().rstrip("=")


def decode_any(global_id: str) -> tuple[str, ObjectId] | None:
    """(type name, ObjectId) for a well-formed id; None for anything else."""
    if not isinstance(global_id, str) or len(global_id) > 100:
        return None
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
        type_name, _, oid = raw.partition(":")
        return type_name, ObjectId(oid)
    except (binascii.Error, UnicodeDecodeError, InvalidId, ValueError, TypeError):
        return None


def decode_id(global_id: str, type_name: str) -> ObjectId | None:
    """The ObjectId of an id of the given type; None when it is malformed or another type's."""
    decoded = decode_any(global_id)
    if decoded is None or decoded[0] != type_name:
        return None
    return decoded[1]


@strawberry.interface(description="An object with a global id; `node(id:)` finds any of them.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id.")
