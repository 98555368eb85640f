"""`GET /exports/contacts.csv`: the shop's contacts as a streamed CSV file.

Selection as in `contacts`: `ids` (comma-separated or repeated), or
`query`, `filter` (a ContactFilter as JSON), `segment` (an id or a built-in
key), ordered by `sortKey` / `reverse`; everyone by default. `bom=1` starts
the file with a UTF-8 byte-order mark, which Excel needs to read UTF-8.

Everything the request could get wrong is checked before the first byte
is sent, so problems are plain HTTP errors (400, 401, 403, 404) with a JSON
body; after that, rows are written as the cursor delivers them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from graph.http.auth import authenticate, unauthorized
from graph.http.responses import problem
from graph.permissions import READ
from graph.types.node import decode_id
from graph.types.segment import segment_ref
from loaders.contact_search import MAX_QUERY_LENGTH
from loaders.contact_stream import contact_batches
from loaders.contacts import SORT_FIELDS, contact_match
from loaders.mongo import Database, Doc
from resolvers.contact_filters import FilterError, spec_from_json
from resolvers.csv_rows import EXPORT_PROJECTION, contact_row, csv_text, header_text
from resolvers.errors import Refused
from resolvers.segments import segment_condition

MAX_EXPORT_IDS = 1_000
MAX_FILTER_TEXT = 20_000
PARAMETERS = frozenset({"ids", "query", "filter", "segment", "sortKey", "reverse", "bom"})
BOM = "\ufeff"


class ExportError(Exception):
    """A request the export cannot serve, with its HTTP status and error code."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _bad(message: str) -> ExportError:
    return ExportError(400, message, "BAD_USER_INPUT")


@dataclass
class ExportRequest:
    ids: list[str] = field(default_factory=list)
    query: str | None = None
    filter: str | None = None  # JSON text, as given
    segment: str | None = None
    sort_key: str = "CREATED_AT"
    reverse: bool = False
    bom: bool = False


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("", "0", "false", "no"):
        return False
    raise _bad(f"`{name}` must be 1 or 0 (true or false).")


def request_from_params(params: Any) -> ExportRequest:
    """The export a query string asks for; ExportError(400) for anything it cannot mean."""
    unknown = sorted(set(params.keys()) - PARAMETERS)
    if unknown:
        raise _bad(f"Unknown parameter `{unknown[0]}`; known: {', '.join(sorted(PARAMETERS))}.")
    for name in PARAMETERS - {"ids"}:
        if len(params.getlist(name)) > 1:
            raise _bad(f"`{name}` is given more than once.")
    ids = [
        part.strip() for value in params.getlist("ids") for part in value.split(",") if part.strip()
    ]
    if "ids" in params and not ids:
        # An empty selection must not fall back to "everyone".
        raise _bad("`ids` names no contact.")
    return ExportRequest(
        ids=ids,
        query=params.get("query"),
        filter=params.get("filter"),
        segment=params.get("segment") or None,
        sort_key=params.get("sortKey") or "CREATED_AT",
        reverse=_flag("reverse", params.get("reverse", "")),
        bom=_flag("bom", params.get("bom", "")),
    )


async def export_match(database: Database, shop_id: str, request: ExportRequest) -> Doc:
    """The condition for the contacts to export; ExportError for a bad or unknown selection."""
    if request.sort_key not in SORT_FIELDS:
        raise _bad(f"`sortKey` must be one of {', '.join(SORT_FIELDS)}.")
    if request.ids:
        if request.query or request.filter or request.segment:
            raise _bad(
                "Select contacts either by `ids` or by `query` / `filter` / `segment`, not both."
            )
        if len(request.ids) > MAX_EXPORT_IDS:
            raise _bad(
                f"At most {MAX_EXPORT_IDS} ids per export; use a filter or a segment for more."
            )
        oids: list[ObjectId] = []
        for index, value in enumerate(request.ids):
            oid = decode_id(value, "Contact")
            if oid is None:
                raise _bad(f"ids[{index}] is not a contact id.")
            oids.append(oid)
        return {"shopId": shop_id, "_id": {"$in": oids}}
    if request.query is not None and len(request.query) > MAX_QUERY_LENGTH:
        raise _bad(f"`query` is at most {MAX_QUERY_LENGTH} characters.")
    spec, segments = None, [request.segment] if request.segment else []
    if request.filter:
        if len(request.filter) > MAX_FILTER_TEXT:
            raise _bad(f"`filter` is at most {MAX_FILTER_TEXT} characters.")
        try:
            data = json.loads(request.filter)
        except ValueError as err:
            raise _bad(f"`filter` is not valid JSON: {err}.") from None
        try:
            spec, inner_segment = spec_from_json(data)
        except FilterError as err:
            raise _bad(f"`filter`: {err.message}") from None
        if inner_segment:
            segments.append(inner_segment)
    match = contact_match(shop_id, request.query, spec)
    conditions = []
    for ref in segments:
        try:
            conditions.append(await segment_condition(database, shop_id, segment_ref(ref)))
        except Refused:
            raise ExportError(404, "Segment not found.", "NOT_FOUND") from None
    return {"$and": [match, *conditions]} if conditions else match


async def csv_pieces(
    database: Database, match: Doc, request: ExportRequest, currency: str | None
) -> AsyncIterator[tuple[str, int]]:
    """The CSV file in pieces, each with the number of contacts in it: the header, then one per batch."""
    yield (BOM if request.bom else "") + header_text(), 0
    async for batch in contact_batches(
        database,
        match,
        SORT_FIELDS[request.sort_key],
        ascending=not request.reverse,
        projection=EXPORT_PROJECTION,
    ):
        yield csv_text(contact_row(doc, currency) for doc in batch), len(batch)


async def export_contacts(request: Request) -> Response:
    found = await authenticate(request)
    if found is None:
        return unauthorized()
    key, shop = found
    if key.role not in READ:
        return problem(403, f"{key.role.a_key} may not export contacts.", "FORBIDDEN")
    database: Database = request.app.state.database
    try:
        export = request_from_params(request.query_params)
        match = await export_match(database, shop.id, export)
    except ExportError as err:
        return problem(err.status, err.message, err.code)
    return StreamingResponse(
        _encoded(csv_pieces(database, match, export, shop.currency)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="contacts.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _encoded(pieces: AsyncIterator[tuple[str, int]]) -> AsyncIterator[bytes]:
    async for text, _ in pieces:
        yield text.encode("utf-8")
