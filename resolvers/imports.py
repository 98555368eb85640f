"""Importing leads from a CSV file with the export's columns.

Every row is checked before anything is written: one bad row stops the
whole import (nothing written) unless bad rows are to be skipped. The file
is read twice, once to check and once to write, so memory does not grow
with its size beyond one e-mail key per row (to find repeated addresses).

A new e-mail becomes a LEAD. An existing contact takes the row's non-empty
details only while its details are not locked (a manual edit locks them),
and gains the row's labels either way, spelled as the shop
spells them. Marketing consent from the file is
recorded (source IMPORT) only for contacts that were never asked before,
so an import never re-subscribes someone who unsubscribed.

Columns that the shop computes (Type, Account, Total Orders, Total Spent,
Average Order Value, Currency, Last Order Date, Customer Since, Created At,
Active Subscriptions, Member) are read-only: an import ignores them.

An address is read from its part columns (`Shipping Address 1`, `Shipping
City`, ...). Files written before the parts had columns of their own hold
one `Shipping Address` / `Billing Address` column, `line1, line2, postal
code city, region, country code`; it is still read, but not together with
the part columns of the same address.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from loaders.contacts import label_key
from loaders.mongo import Database, Doc
from resolvers import activity
from resolvers.clock import now
from resolvers.consent import STATES, ConsentEvent, consent_changed
from resolvers.contact_events import contacts_created
from resolvers.contacts import UPDATED_PROJECTION, contact_updated, new_contact, update_details
from resolvers.csv_rows import (
    ADDRESS_PARTS,
    ADDRESSES,
    COLUMNS,
    parse_address_text,
    parse_labels_text,
    restore,
)
from resolvers.errors import Problem, Refused
from resolvers.events import contact_gid, emit
from resolvers.labels import SHOP_LABEL_LIMIT, add_label_counts, normalize_labels, reserve_labels
from resolvers.validation import COMPANY_MAX, NAME_MAX, Checker

IMPORT_BATCH = 500
# A batch meets an e-mail another writer took after its snapshot at most this often.
CREATE_ATTEMPTS = 5
IMPORT_TEXT = "CSV import"
# The one-column address of older files, by the address it fills.
LEGACY_ADDRESS_COLUMNS = {key: f"{prefix} Address" for key, prefix in ADDRESSES}
# The parts a one-column address holds: its columns and a legacy column exclude each other.
_LEGACY_PARTS = frozenset({"line1", "line2", "postalCode", "city", "region", "countryCode"})
_COLUMN_KEYS = {c.casefold(): c for c in (*COLUMNS, *LEGACY_ADDRESS_COLUMNS.values())}
DETAIL_COLUMNS = {"First Name": "firstName", "Last Name": "lastName", "Company": "company"}
# A detail is checked under its key, which gives the message its words ("First name is ...").
_COLUMN_OF_DETAIL = {key: column for column, key in DETAIL_COLUMNS.items()}
_LOOKUP_PROJECTION = {
    "email": 1,
    "emailKey": 1,
    "detailsLocked": 1,
    "labelKeys": 1,
    "firstName": 1,
    "lastName": 1,
    "phone": 1,
    "company": 1,
    "shippingAddress": 1,
    "billingAddress": 1,
    "consent.history.at": 1,
}


@dataclass(frozen=True)
class RowProblem:
    """Why a row (the header is row 1; None: the whole file) cannot be imported."""

    row: int | None
    column: str | None
    message: str
    code: str

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        if self.column:
            where += f", {self.column}"
        return f"{where}: {self.message} ({self.code})"


@dataclass
class ImportRow:
    row: int
    email: str
    email_key: str
    details: dict[str, Any]  # only what the row fills in
    labels: list[str]
    marketing_state: str | None


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    locked: int = 0  # existing contacts whose locked details the row would have changed
    skipped: int = 0  # bad rows left out (--skip-bad-rows)
    problems: list[RowProblem] = field(default_factory=list)
    written: bool = False

    @property
    def bad_rows(self) -> int:
        return len({p.row for p in self.problems if p.row is not None})


Opener = Callable[[], TextIO]
"""Opens the CSV text afresh (the file is read once to check and once to write)."""


class _BadFile(Exception):
    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def _header(cells: list[str]) -> dict[str, int]:
    if cells and cells[0].startswith("\ufeff"):
        cells = [cells[0][1:], *cells[1:]]
    positions: dict[str, int] = {}
    problems = []
    for index, raw in enumerate(cells):
        name = _COLUMN_KEYS.get(raw.strip().casefold())
        if name is None:
            problems.append(
                RowProblem(1, raw.strip() or f"column {index + 1}", "Unknown column.", "INVALID")
            )
        elif name in positions:
            problems.append(RowProblem(1, name, "Column appears twice.", "INVALID"))
        else:
            positions[name] = index
    if "Email" not in positions and not problems:
        problems.append(RowProblem(1, "Email", "The file needs an Email column.", "REQUIRED"))
    for key, prefix in ADDRESSES:
        legacy = LEGACY_ADDRESS_COLUMNS[key]
        parts = [f"{prefix} {suffix}" for part, suffix in ADDRESS_PARTS if part in _LEGACY_PARTS]
        if legacy in positions and any(column in positions for column in parts):
            problems.append(
                RowProblem(
                    1,
                    legacy,
                    f"Give the address either as {legacy} or in its part columns "
                    f"({parts[0]}, {prefix} City, ...), not both.",
                    "INVALID",
                )
            )
    if problems:
        raise _BadFile(problems)
    return positions


def _records(stream: TextIO) -> Iterator[tuple[int, dict[str, int], list[str]]]:
    """(row number, header positions, cells) for every non-empty record."""
    reader = csv.reader(stream, strict=True)
    try:
        first = next(reader, None)
        if first is None:
            raise _BadFile([RowProblem(None, None, "The file is empty.", "REQUIRED")])
        positions = _header(first)
        for number, cells in enumerate(reader, start=2):
            if cells:
                yield number, positions, cells
    except csv.Error as err:
        raise _BadFile(
            [RowProblem(None, None, f"Not a readable CSV file: {err}.", "INVALID")]
        ) from None
    except UnicodeDecodeError:
        raise _BadFile([RowProblem(None, None, "The file is not UTF-8 text.", "INVALID")]) from None


def check_row(
    number: int, positions: dict[str, int], cells: list[str]
) -> ImportRow | list[RowProblem]:
    if len(cells) != len(positions):
        return [
            RowProblem(
                number,
                None,
                f"The row has {len(cells)} cells; the header has {len(positions)}.",
                "INVALID",
            )
        ]

    def cell(column: str) -> str | None:
        at = positions.get(column)
        value = restore(cells[at]).strip() if at is not None else ""
        return value or None

    check = Checker()
    email = check.email(("Email",), cell("Email"), required=True)
    details: dict[str, Any] = {}
    for column, key in DETAIL_COLUMNS.items():
        limit = COMPANY_MAX if key == "company" else NAME_MAX
        value = check.text((key,), cell(column), limit)
        if value is not None:
            details[key] = value
    for key, prefix in ADDRESSES:
        columns = {part: f"{prefix} {suffix}" for part, suffix in ADDRESS_PARTS}
        given: dict[str, str | None] = {part: cell(column) for part, column in columns.items()}
        legacy = cell(LEGACY_ADDRESS_COLUMNS[key])
        if legacy:
            given.update(parse_address_text(legacy))
            columns.update(dict.fromkeys(_LEGACY_PARTS, LEGACY_ADDRESS_COLUMNS[key]))
        if any(given.values()):
            before = len(check.problems)
            address = check.address((key,), given)
            # Report address problems under the column the person sees.
            for i in range(before, len(check.problems)):
                problem = check.problems[i]
                part = str(problem.field[-1]) if problem.field else ""
                column = columns.get(part, LEGACY_ADDRESS_COLUMNS[key])
                check.problems[i] = Problem((column,), problem.message, problem.code)
            if address:
                details[key] = address
    # As when a contact is created: the shipping country, else the billing country.
    region = (details.get("shippingAddress") or {}).get("countryCode") or (
        details.get("billingAddress") or {}
    ).get("countryCode")
    phone = check.phone(("Phone",), cell("Phone"), region)
    if phone is not None:
        details["phone"] = phone
    labels_text = cell("Labels")
    labels = (
        normalize_labels(check, ("Labels",), parse_labels_text(labels_text)) if labels_text else []
    )
    state = cell("Marketing State")
    if state is not None and state.upper() not in STATES:
        check.add(
            ("Marketing State",), f"Marketing State must be one of {', '.join(STATES)}.", "INVALID"
        )
    if not check.ok or email is None:
        return [RowProblem(number, _problem_column(p), p.message, p.code) for p in check.problems]
    return ImportRow(number, email[0], email[1], details, labels, state.upper() if state else None)


def _problem_column(problem: Problem) -> str | None:
    if not problem.field:
        return None
    name = str(problem.field[0])
    return _COLUMN_OF_DETAIL.get(name, name)


@dataclass
class _Checked:
    report: ImportReport
    labels: dict[str, str]  # key -> first spelling, over the rows to import
    bad: set[int]


async def _check_file(database: Database, shop_id: str, open_stream: Opener) -> _Checked:
    report = ImportReport()
    labels: dict[str, str] = {}
    bad: set[int] = set()
    first_row: dict[str, int] = {}
    try:
        with open_stream() as stream:
            for number, positions, cells in _records(stream):
                report.rows += 1
                checked = check_row(number, positions, cells)
                if isinstance(checked, list):
                    report.problems.extend(checked)
                    bad.add(number)
                    continue
                seen = first_row.setdefault(checked.email_key, number)
                if seen != number:
                    report.problems.append(
                        RowProblem(number, "Email", f"The same email is on row {seen}.", "INVALID")
                    )
                    bad.add(number)
                    continue
                for name in checked.labels:
                    labels.setdefault(label_key(name), name)
    except _BadFile as err:
        report.problems.extend(err.problems)
        return _Checked(report, labels, bad)
    if labels:
        existing = await database.labels.count_documents(
            {"shopId": shop_id, "key": {"$in": list(labels)}}
        )
        shop = await database.shops.find_one({"_id": shop_id}, {"labelCount": 1}) or {}
        if (shop.get("labelCount") or 0) + len(labels) - existing > SHOP_LABEL_LIMIT:
            report.problems.append(
                RowProblem(
                    None,
                    "Labels",
                    f"A shop can have at most {SHOP_LABEL_LIMIT} distinct labels.",
                    "LIMIT_EXCEEDED",
                )
            )
    return _Checked(report, labels, bad)


def _consent_from_import(state: str, author: str, at: dt.datetime) -> tuple[Doc, Doc]:
    """(consent as stored, its CONSENT_CHANGED entry) for a state read from the file."""
    event = {
        "state": state,
        "optInLevel": "UNKNOWN",
        "at": at,
        "source": "IMPORT",
        "actor": author,
        "evidence": IMPORT_TEXT,
    }
    consent = {k: event[k] for k in ("state", "optInLevel", "at", "source")} | {"history": [event]}
    text = f"Marketing consent: {state} (IMPORT)"
    return consent, activity.entry("CONSENT_CHANGED", author=author, text=text, at=at)


def _consent_to_record(row: ImportRow) -> str | None:
    state = row.marketing_state
    return state if state and state != "NOT_SUBSCRIBED" else None


def _new_doc(shop_id: str, row: ImportRow, author: str) -> Doc:
    at = now()
    entries = [activity.entry("CONTACT_CREATED", author=author, text=IMPORT_TEXT, at=at)]
    doc = new_contact(shop_id, row.email, row.email_key, "LEAD", row.details, at, labels=row.labels)
    state = _consent_to_record(row)
    if state:
        doc["consent"], logged = _consent_from_import(state, author, at)
        entries.append(logged)
    doc["activity"] = sorted(entries, key=activity.sort_key, reverse=True)
    doc["activityCount"] = doc["activityEmbedded"] = len(entries)
    return doc


class _Writer:
    """Writes checked rows a batch at a time; with `dry_run`, only decides what it would do."""

    def __init__(
        self, database: Database, shop_id: str, author: str, report: ImportReport, dry_run: bool
    ) -> None:
        self.database = database
        self.shop_id = shop_id
        self.author = author
        self.report = report
        self.dry_run = dry_run
        self.label_counts: Counter[str] = Counter()

    async def batch(self, rows: list[ImportRow]) -> None:
        found = await self.database.contacts.find(
            {"shopId": self.shop_id, "emailKey": {"$in": [r.email_key for r in rows]}},
            _LOOKUP_PROJECTION,
        ).to_list()
        existing = {doc["emailKey"]: doc for doc in found}
        fresh = [r for r in rows if r.email_key not in existing]
        raced = await self._create(fresh)
        if raced:
            # Created by someone else since the look-up: update them like the others.
            again = await self.database.contacts.find(
                {"shopId": self.shop_id, "emailKey": {"$in": [r.email_key for r in raced]}},
                _LOOKUP_PROJECTION,
            ).to_list()
            existing.update({doc["emailKey"]: doc for doc in again})
        for row in rows:
            if row.email_key in existing:
                await self._update(row, existing[row.email_key])

    async def _create(self, rows: list[ImportRow]) -> list[ImportRow]:
        if not rows:
            return []
        if self.dry_run:
            self.report.created += len(rows)
            return []
        docs = [_new_doc(self.shop_id, row, self.author) for row in rows]
        shop_id = self.shop_id

        async def work(session: Any) -> list[Doc]:
            # The batch, its counters and its events in one transaction: an
            # e-mail taken since the look-up is left out, as of this snapshot.
            taken = {
                doc["emailKey"]
                for doc in await self.database.contacts.find(
                    {"shopId": shop_id, "emailKey": {"$in": [d["emailKey"] for d in docs]}},
                    {"emailKey": 1},
                    session=session,
                ).to_list()
            }
            fresh = [doc for doc in docs if doc["emailKey"] not in taken]
            if fresh:
                await self.database.contacts.insert_many(fresh, session=session)
                await contacts_created(self.database, shop_id, fresh, session=session)
            return fresh

        for attempt in range(CREATE_ATTEMPTS):
            try:
                created = await activity.in_transaction(self.database, work)
                break
            except (BulkWriteError, DuplicateKeyError) as err:
                # Committed by another writer after this snapshot: the next one sees it.
                errors = (
                    err.details.get("writeErrors", []) if isinstance(err, BulkWriteError) else []
                )
                if any(e.get("code") != 11000 for e in errors) or attempt == CREATE_ATTEMPTS - 1:
                    raise
        made = {doc["_id"] for doc in created}
        for doc in created:
            self.report.created += 1
            self.label_counts.update(doc["labelKeys"])
        return [row for row, doc in zip(rows, docs, strict=True) if doc["_id"] not in made]

    async def _update(self, row: ImportRow, current: Doc) -> None:
        changes = {k: v for k, v in row.details.items() if current.get(k) != v}
        new_labels = [
            n for n in row.labels if label_key(n) not in set(current.get("labelKeys") or [])
        ]
        applied = False
        locked = bool(changes) and bool(current.get("detailsLocked"))
        if changes and not locked and not self.dry_run:
            log = activity.push(
                [activity.entry("DETAILS_UPDATED", author=self.author, text=IMPORT_TEXT)]
            )

            async def edit(session: Any, log: Doc = log) -> Doc | None:
                # The details with their CONTACT_UPDATED (what really changed), together.
                before = await self.database.contacts.find_one(
                    {"_id": current["_id"], "shopId": self.shop_id},
                    UPDATED_PROJECTION,
                    session=session,
                )
                doc = await update_details(
                    self.database,
                    self.shop_id,
                    current["_id"],
                    changes,
                    log,
                    only_if_unlocked=True,
                    session=session,
                )
                if doc is not None and before is not None:
                    await contact_updated(self.database, self.shop_id, before, doc, session=session)
                return doc

            doc = await activity.in_transaction(self.database, edit)
            if doc is None:
                locked = True  # locked (or deleted) since the look-up
            else:
                applied = True
                await activity.spill_overflow(self.database, self.shop_id, doc)
        elif changes and not locked:
            applied = True
        state = _consent_to_record(row)
        if state and not (current.get("consent") or {}).get("history"):
            if self.dry_run:
                applied = True
            else:
                consent, logged = _consent_from_import(state, self.author, now())

                async def record(
                    session: Any, consent: Doc = consent, logged: Doc = logged
                ) -> Doc | None:
                    # Only while the person was never asked: the condition makes that atomic.
                    doc = await self.database.contacts.find_one_and_update(
                        {
                            "shopId": self.shop_id,
                            "_id": current["_id"],
                            "consent.history.0": {"$exists": False},
                        },
                        activity.merge_updates(
                            {"$set": {"consent": consent, "updatedAt": consent["at"]}},
                            activity.push([logged]),
                        ),
                        projection={"activity": 0},
                        return_document=ReturnDocument.AFTER,
                        session=session,
                    )
                    if doc is not None:  # never asked before: NOT_SUBSCRIBED until now
                        event = ConsentEvent(
                            state=consent["state"],
                            at=consent["at"],
                            source=consent["source"],
                            opt_in_level=consent["optInLevel"],
                        )
                        await consent_changed(
                            self.database, self.shop_id, doc["_id"], None, event, session=session
                        )
                    return doc

                doc = await activity.in_transaction(self.database, record)
                if doc is not None:
                    applied = True
                    await activity.spill_overflow(self.database, self.shop_id, doc)
        if new_labels and self.dry_run:
            applied = True
        elif new_labels:

            async def label(session: Any) -> list[str]:
                added = []
                for name in new_labels:
                    key = label_key(name)
                    # Conditional on the label being absent, so a racing labelsAdd cannot count it twice.
                    result = await self.database.contacts.update_one(
                        {"shopId": self.shop_id, "_id": current["_id"], "labelKeys": {"$ne": key}},
                        {"$push": {"labels": name, "labelKeys": key}, "$set": {"updatedAt": now()}},
                        session=session,
                    )
                    if result.modified_count:
                        added.append(name)
                if added:
                    # LABELS_CHANGED with the contact's labels after, in the same transaction.
                    after = await self.database.contacts.find_one(
                        {"_id": current["_id"], "shopId": self.shop_id},
                        {"labels": 1},
                        session=session,
                    )
                    data = {
                        "id": contact_gid(current["_id"]),
                        "labels": (after or {}).get("labels") or [],
                        "added": added,
                        "removed": [],
                    }
                    await emit(
                        self.database,
                        self.shop_id,
                        "LABELS_CHANGED",
                        data,
                        session=session,
                        contact_id=current["_id"],
                    )
                return added

            for name in await activity.in_transaction(self.database, label):
                applied = True
                self.label_counts[label_key(name)] += 1
        if locked:
            self.report.locked += 1
        elif applied:
            self.report.updated += 1
        else:
            self.report.unchanged += 1

    async def finish(self) -> None:
        for key, count in self.label_counts.items():
            await add_label_counts(self.database, self.shop_id, [key], count)


async def import_contacts(
    database: Database,
    shop_id: str,
    open_stream: Opener,
    *,
    author: str = IMPORT_TEXT,
    dry_run: bool = False,
    skip_bad_rows: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Check every row, then (unless refused or a dry run) write them; the report says what happened.

    `progress(rows, total)` is called after each batch with the rows just
    handled and the number of rows to handle in all.
    """
    checked = await _check_file(database, shop_id, open_stream)
    report = checked.report
    file_problems = [p for p in report.problems if p.row is None or p.row == 1]
    if file_problems or (report.problems and not skip_bad_rows):
        return report
    report.skipped = len(checked.bad)
    spellings: dict[str, str] = {}
    if not dry_run:
        try:
            reserved = await reserve_labels(database, shop_id, list(checked.labels.values()))
        except Refused as refusal:
            report.problems.extend(
                RowProblem(None, "Labels", p.message, p.code) for p in refusal.problems
            )
            return report
        # A contact shows a label as the shop spells it, whatever the file's spelling.
        spellings = reserved.names
    writer = _Writer(database, shop_id, author, report, dry_run)
    total = report.rows - len(checked.bad)
    batch: list[ImportRow] = []
    with open_stream() as stream:
        for number, positions, cells in _records(stream):
            if number in checked.bad:
                continue
            row = check_row(number, positions, cells)
            assert isinstance(row, ImportRow)  # checked in the first pass
            row.labels = [spellings.get(label_key(name), name) for name in row.labels]
            batch.append(row)
            if len(batch) >= IMPORT_BATCH:
                await writer.batch(batch)
                if progress:
                    progress(len(batch), total)
                batch = []
        if batch:
            await writer.batch(batch)
            if progress:
                progress(len(batch), total)
    await writer.finish()
    report.written = not dry_run
    return report
