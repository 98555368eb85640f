"""Where the API spends its own time on the contact list page (cProfile, in process).

    .venv/bin/python bench/profile_page.py --contacts 500 --requests 200

Runs the page query of contacts_page.py through the real app (httpx ASGI
transport, lifespan running; the database is a separate process, so its
time is not in the profile) and prints JSON: the CPU milliseconds this
process spends per request, and the functions with the most own time and
the most cumulative time. `--sort-key` and `--first` change the page.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from contacts_page import PAGE  # noqa: E402
from harness import SHOP, log  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=500, help="contacts to seed (default 500)")
    parser.add_argument("--requests", type=int, default=200, help="profiled requests (default 200)")
    parser.add_argument("--first", type=int, default=50, help="page size (default 50)")
    parser.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    parser.add_argument("--no-profile", action="store_true", help="only CPU time per request, without cProfile's cost")
    return parser.parse_args(argv)


def top_functions(profile: cProfile.Profile, key: str, count: int, requests: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "calls_per_request": round(calls / requests, 1),
                "own_ms_per_request": round(own / requests * 1000, 4),
                "cumulative_ms_per_request": round(cumulative / requests * 1000, 4),
            }
        )
    rows.sort(key=lambda r: r[key], reverse=True)
    return rows[:count]


def _short(filename: str) -> str:
    for marker in ("site-packages/", str(harness.ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "profile_page", "contacts": args.contacts, "first": args.first}
    with harness.database_server() as server:
        async with harness.open_database(server) as database:
            key = await harness.admin_key(database)
            log(f"seeding {args.contacts} contacts ...")
            await harness.seed_contacts(database, SHOP, args.contacts)
        async with harness.in_process_api(server, key_cache_seconds=3600) as client:
            headers = {"Authorization": f"Bearer {key}"}
            body = {"query": PAGE, "variables": {"first": args.first}}

            async def page() -> None:
                response = await client.post("/graphql", json=body, headers=headers)
                harness.check_graphql(response.status_code, response.content)

            for _ in range(10):
                await page()
            profile = None if args.no_profile else cProfile.Profile()
            cpu = time.process_time()
            wall = time.perf_counter()
            if profile:
                profile.enable()
            for _ in range(args.requests):
                await page()
            if profile:
                profile.disable()
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
    result["cpu_ms_per_request"] = round(cpu / args.requests * 1000, 3)
    result["wall_ms_per_request"] = round(wall / args.requests * 1000, 3)
    result["note"] = "CPU of this process only: app + httpx client; the database runs elsewhere."
    if profile:
        result["profiled"] = True
        result["by_own_time"] = top_functions(profile, "own_ms_per_request", args.top, args.requests)
        result["by_cumulative_time"] = top_functions(profile, "cumulative_ms_per_request", args.top, args.requests)
    return result


def main(argv: list[str] | None = None) -> int:
    harness.emit(harness.run(main_async(parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
