"""`contactgraph export` and `contactgraph import`: the CSV file from and into a shop, with progress bars."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from graph.settings import Settings

if TYPE_CHECKING:
    from loaders.mongo import Database
    from resolvers.imports import ImportReport

# The export and import modules load the whole schema (filters are read as
# GraphQL input), and the driver comes with them: imported when one of these
# commands runs, so the others (and --help) start without paying for it.

T = TypeVar("T")
WithDatabase = Callable[[Settings, Callable[["Database"], Awaitable[T]]], T]
# The names of loaders.contacts.SORT_FIELDS (a test keeps them the same).
SORT_KEYS = (
    "CREATED_AT",
    "EMAIL",
    "LAST_ORDER_AT",
    "NAME",
    "ORDER_COUNT",
    "TOTAL_SPENT",
    "UPDATED_AT",
)


def _fail(message: str) -> int:
    print(f"contactgraph: {message}", file=sys.stderr)
    return 2


def add_parsers(commands: Any, default_shop: str, parents: list[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export",
        parents=parents,
        help="write the shop's contacts (or a selection) to a CSV file",
    )
    export.add_argument("--out", required=True, help="the CSV file to write")
    export.add_argument("--shop", default=default_shop)
    export.add_argument("--query", help="free text, as in contacts(query:)")
    export.add_argument("--filter", help='a ContactFilter as JSON, e.g. \'{"kind": "CUSTOMER"}\'')
    export.add_argument(
        "--segment",
        help="a segment id, or FIRST_TIME_CUSTOMERS / REPEAT_CUSTOMERS / SUBSCRIBERS / MEMBERS",
    )
    export.add_argument(
        "--ids", help="comma-separated contact ids (instead of query/filter/segment)"
    )
    export.add_argument("--sort-key", default="CREATED_AT", choices=SORT_KEYS, type=str.upper)
    export.add_argument("--reverse", action="store_true")
    export.add_argument(
        "--bom", action="store_true", help="start with a UTF-8 byte-order mark (for Excel)"
    )

    imp = commands.add_parser(
        "import", parents=parents, help="import leads from a CSV file with the export's columns"
    )
    imp.add_argument("file", help="the CSV file (UTF-8, with a header row)")
    imp.add_argument("--shop", default=default_shop)
    imp.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    imp.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="import the good rows even when some are bad (they are reported)",
    )


def run(settings: Settings, args: argparse.Namespace, with_database: WithDatabase[int]) -> int:
    if args.command == "export":
        return export_file(settings, args, with_database)
    return import_file(settings, args, with_database)


def export_file(
    settings: Settings, args: argparse.Namespace, with_database: WithDatabase[int]
) -> int:
    from tqdm import tqdm

    from graph.http.exports import ExportError, ExportRequest, csv_pieces, export_match
    from resolvers.shops import get_shop

    request = ExportRequest(
        ids=[i.strip() for i in (args.ids or "").split(",") if i.strip()],
        query=args.query,
        filter=args.filter,
        segment=args.segment,
        sort_key=args.sort_key,
        reverse=args.reverse,
        bom=args.bom,
    )
    if args.ids is not None and not request.ids:
        return _fail("--ids names no contact")
    out = Path(args.out)
    # Before the database: a mistyped path is told at once, and nothing is started for it.
    if out.is_dir():
        return _fail(f"{out.absolute()} is a folder: name the CSV file to write")
    if not out.parent.is_dir():
        return _fail(f"there is no folder {out.parent.absolute()} to write {out.name} into")
    # Written beside the target and renamed at the end: a failed export leaves no half file.
    partial = out.with_name(out.name + ".part")

    async def work(database: Database) -> int:
        shop = await get_shop(database, args.shop)
        if shop is None:
            return _fail(f"no shop {args.shop!r}")
        try:
            match = await export_match(database, shop.id, request)
        except ExportError as err:
            return _fail(err.message)
        total = await database.contacts.count_documents(match)
        written = 0
        with (
            partial.open("w", encoding="utf-8", newline="") as file,
            tqdm(total=total, unit="contact", desc="exporting", file=sys.stderr) as bar,
        ):
            async for text, rows in csv_pieces(database, match, request, shop.currency):
                file.write(text)
                written += rows
                bar.update(rows)
        os.replace(partial, out)
        print(f"Wrote {written} contacts to {out}.")
        return 0

    try:
        return with_database(settings, work)
    finally:
        partial.unlink(missing_ok=True)


def import_file(
    settings: Settings, args: argparse.Namespace, with_database: WithDatabase[int]
) -> int:
    from tqdm import tqdm

    from resolvers.imports import import_contacts
    from resolvers.shops import get_shop

    path = Path(args.file)
    if path.is_dir():
        return _fail(f"{path.absolute()} is a folder, not a CSV file")
    if not path.is_file():
        return _fail(f"there is no file {path.absolute()}")
    # Read once before the database is touched: an unreadable file is an
    # OSError the command reports in one line.
    with path.open("rb") as readable:
        readable.read(1)

    def open_stream() -> Any:
        # utf-8-sig: a byte-order mark (as Excel writes) is not part of the first column's name.
        return path.open(encoding="utf-8-sig", newline="")

    async def work(database: Database) -> int:
        if await get_shop(database, args.shop) is None:
            return _fail(f"no shop {args.shop!r}")
        bar: tqdm[Any] | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="row", desc="importing", file=sys.stderr)
            bar.update(done)

        try:
            report = await import_contacts(
                database,
                args.shop,
                open_stream,
                dry_run=args.dry_run,
                skip_bad_rows=args.skip_bad_rows,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
        return _print_report(report, args.dry_run, args.skip_bad_rows)

    return with_database(settings, work)


def _print_report(report: ImportReport, dry_run: bool, skip_bad_rows: bool) -> int:
    for problem in report.problems:
        print(problem, file=sys.stderr)
    refused = not report.written and not dry_run
    if refused:
        hint = "" if skip_bad_rows else " (--skip-bad-rows imports the good ones)"
        print(
            f"Nothing imported: {report.bad_rows} of {report.rows} rows are bad{hint}."
            if report.bad_rows
            else "Nothing imported.",
            file=sys.stderr,
        )
        return 1
    verb = "would be" if dry_run else "were"
    print(
        f"{report.rows} rows: {report.created} {verb} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.locked} kept their locked details, {report.skipped} bad rows skipped."
    )
    return 1 if dry_run and report.problems and not skip_bad_rows else 0
