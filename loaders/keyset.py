"""Keyset (seek) pagination: cursors carry the sort value and `_id`, never an offset.

A page is `filter AND after-the-cursor`, sorted by (field, _id) in one
direction, fetched with one extra row to know whether more follow. Rows
whose sort field is missing or null sort first ascending and last
descending, as MongoDB sorts them, and the seek condition honours that.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId
from bson.errors import InvalidId

MAX_PAGE = 250


class BadCursor(ValueError):
    pass


class BadPageSize(ValueError):
    pass


def _tag(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return {"d": value.isoformat()}
    if isinstance(value, Decimal128):
        return {"m": str(value.to_decimal())}
    if isinstance(value, Decimal):
        return {"m": str(value)}
    if isinstance(value, bool | int | str | float):
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        if "d" in value:
            return dt.datetime.fromisoformat(value["d"])
        if "m" in value:
            return Decimal128(Decimal(value["m"]))
        raise BadCursor("unknown value in cursor")
    if isinstance(value, list):
        raise BadCursor("unknown value in cursor")
    return value


def encode_cursor(field: str, value: Any, oid: ObjectId) -> str:
    raw = json.dumps([field, _tag(value), str(oid)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> tuple[Any, ObjectId]:
    """(sort value, _id) of a cursor made for `field`; BadCursor for anything else."""
    if not isinstance(cursor, str) or len(cursor) > 1000:
        raise BadCursor("Cursor is not valid.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_field, value, oid = json.loads(raw)
        if cursor_field != field:
            raise BadCursor("Cursor belongs to another sort order; start again without it.")
        return _untag(value), ObjectId(oid)
    except BadCursor:
        raise
    except (ValueError, TypeError, InvalidId, KeyError, ArithmeticError):
        # ArithmeticError: decimal.InvalidOperation for a forged amount.
        raise BadCursor("Cursor is not valid.") from None


def _seek(field: str, value: Any, oid: ObjectId, ascending: bool) -> dict[str, Any]:
    """Rows strictly after (value, oid) in the (field, _id) order of the given direction."""
    id_op = "$gt" if ascending else "$lt"
    if value is None:
        if ascending:  # nulls come first: then every non-null row
            return {"$or": [{field: None, "_id": {"$gt": oid}}, {field: {"$ne": None}}]}
        return {field: None, "_id": {"$lt": oid}}  # nulls come last
    value_op = "$gt" if ascending else "$lt"
    after = [{field: {value_op: value}}, {field: value, "_id": {id_op: oid}}]
    if not ascending:
        after.append({field: None})
    return {"$or": after}


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    def size(self, default: int) -> tuple[int, bool]:
        """(page size, paging backwards); BadPageSize outside 1..250."""
        if self.first is not None and self.last is not None:
            raise BadPageSize("Pass either `first` or `last`, not both.")
        for name, value in (("first", self.first), ("last", self.last)):
            if value is not None and not 1 <= value <= MAX_PAGE:
                raise BadPageSize(f"`{name}` must be between 1 and {MAX_PAGE}, got {value}.")
        if self.last is not None:
            return self.last, True
        return (self.first if self.first is not None else default), False


@dataclass
class Page:
    rows: list[dict[str, Any]]
    has_next: bool
    has_previous: bool
    field: str

    def cursor(self, row: dict[str, Any]) -> str:
        return encode_cursor(self.field, _get(row, self.field), row["_id"])


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


async def find_page(
    collection: Any,
    match: dict[str, Any],
    field: str,
    ascending: bool,
    page: PageRequest,
    *,
    default_size: int = 50,
    projection: dict[str, Any] | None = None,
) -> Page:
    """One `find` for a page of rows ordered by (field, _id).

    `after` and `before` both bound the window whichever end the page is
    taken from, so `first` with `before` (or `last` with `after`) is honoured
    rather than silently ignored.
    """
    size, backwards = page.size(default_size)
    direction = ascending != backwards  # walk the other way for `last/before`
    conditions = [match]
    if page.after is not None:
        value, oid = decode_cursor(page.after, field)
        conditions.append(_seek(field, value, oid, ascending))
    if page.before is not None:
        value, oid = decode_cursor(page.before, field)
        conditions.append(_seek(field, value, oid, not ascending))
    query = match if len(conditions) == 1 else {"$and": conditions}
    order = 1 if direction else -1
    # batch_size: the whole page (and the look-ahead row) in the first reply,
    # so a page of 250 costs one command like a page of 5.
    rows = await collection.find(
        query,
        projection,
        sort=[(field, order), ("_id", order)],
        limit=size + 1,
        batch_size=size + 1,
    ).to_list()
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        return Page(
            rows,
            has_next=page.before is not None,
            has_previous=more or page.after is not None,
            field=field,
        )
    return Page(
        rows,
        has_next=more or page.before is not None,
        has_previous=page.after is not None,
        field=field,
    )
