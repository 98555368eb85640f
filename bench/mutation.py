"""Mutation score of one module against its focused tests (mutmut), as one JSON document.

    .venv/bin/python bench/mutation.py resolvers/contact_filters.py [--tests tests/test_x.py ...]

The tree (the code packages, the tests, pyproject.toml) is copied into
`.mutation/<module>/`, where mutmut makes its `mutants/` copy; nothing in the
working tree is changed. Everything runs under `nice -n 19`, one mutant at a
time (`--jobs` for more), each in a fresh process against one embedded
database server shared by all (or `MONGODB_URI`). A mutant runs the focused
tests that reach the mutated function (mutmut's own selection; functions the
module's import calls get all of them), or with `--every-test` all of them;
a mutant whose tests run longer than (their clean time + 20 s) x 3 is a
timeout. The surviving mutants' diffs are written to
`.mutation/<module>.survivors.diff` (or `--survivors FILE`). Mutants listed
as equivalent in `bench/mutation-equivalents.md` are reported apart and do
not count against the score.

`--functions NAME ...` runs only the mutants of the module's functions so
named (a fresh copy all the same): how a long run is finished in parts. The
score is then over the mutants run ("not_checked" counts the others).

After adding tests for the survivors, `--again` runs only the last run's
survivors once more, with the focused test files as they are now (the
module itself must be unchanged since that run; otherwise run it afresh):
mutmut records which functions the new tests call and runs them too.

Slow (seconds per mutant): not part of CI. Run it before you stop when you
changed a module's rules.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENTS = ROOT / "bench" / "mutation-equivalents.md"
PACKAGES = ("graph", "resolvers", "loaders")

# The tests that exercise each module's rules; a module not listed needs --tests.
FOCUSED_TESTS: dict[str, list[str]] = {
    "resolvers/contact_filters.py": [
        "tests/test_filter_rules.py",
        "tests/test_contacts_filters.py",
        "tests/test_segments.py",
    ],
    "resolvers/validation.py": [
        "tests/test_validation_rules.py",
        "tests/test_validation.py",
        "tests/test_contacts_create.py",
    ],
    "resolvers/consent.py": ["tests/test_consent_rules.py"],
    "loaders/keyset.py": ["tests/test_keyset_paging.py", "tests/test_contacts_paging.py"],
    # The rule files alone: with the API tests a run of either took hours.
    "resolvers/labels.py": ["tests/test_label_rules.py"],
    "resolvers/segments.py": ["tests/test_segment_rules.py"],
    "graph/field_rights.py": ["tests/test_field_rights_rules.py", "tests/test_field_rights.py"],
    # graph/cost.py is a table, which mutmut leaves alone: bench/cost_table_mutation.py changes it.
    # The walk and the refusals, then the extension that applies them to requests.
    "graph/limits.py": [
        "tests/test_limit_rules.py",
        "tests/test_cost.py",
        "tests/test_limits.py",
        "tests/test_http_protocol.py",
        "tests/test_throttle.py",
        "tests/test_subscriptions.py",
    ],
    # Only the functions are mutated; the tables are checked against the schema in test_field_rights.
    "graph/permissions.py": ["tests/test_field_rights_rules.py"],
    "resolvers/order_input.py": ["tests/test_order_input_rules.py"],
    "resolvers/subscription_input.py": ["tests/test_subscription_input_rules.py"],
    "resolvers/webhook_endpoints.py": ["tests/test_webhook_endpoint_rules.py"],
    "resolvers/csv_rows.py": ["tests/test_csv_rows_rules.py"],
    "loaders/contact_search.py": ["tests/test_contact_search_rules.py"],
    "resolvers/duplicates.py": ["tests/test_duplicate_rules.py", "tests/test_duplicates.py"],
    # These rule files call the module's writes directly, on the embedded server, without HTTP.
    "resolvers/forms.py": ["tests/test_form_rules.py"],
    "resolvers/notes.py": ["tests/test_note_rules.py"],
    "resolvers/shops.py": ["tests/test_shop_rules.py"],
    "resolvers/clock.py": ["tests/test_clock_rules.py"],
    "resolvers/errors.py": ["tests/test_error_rules.py"],
    "resolvers/events.py": ["tests/test_event_rules.py"],
    "resolvers/throttle.py": ["tests/test_throttle_rules.py"],
    "resolvers/contact_counts.py": ["tests/test_contact_count_rules.py"],
    "resolvers/contact_events.py": ["tests/test_contact_event_rules.py"],
    "resolvers/order_cancel.py": ["tests/test_order_cancel_rules.py"],
    "resolvers/privacy.py": ["tests/test_privacy_rules.py"],
    "loaders/observability.py": ["tests/test_observability_rules.py"],
    "resolvers/webhook_receipts.py": ["tests/test_webhook_receipt_rules.py"],
    "resolvers/subscription_cancel.py": ["tests/test_subscription_cancel_rules.py"],
    "resolvers/order_stats.py": ["tests/test_order_stats_rules.py"],
    "resolvers/drafts.py": ["tests/test_draft_rules.py"],
    "resolvers/order_docs.py": ["tests/test_order_docs_rules.py"],
    "loaders/contact_records.py": ["tests/test_contact_records_rules.py"],
    "loaders/orders.py": ["tests/test_contact_records_rules.py"],
    "loaders/contact_stream.py": ["tests/test_contact_stream_rules.py"],
    "loaders/segments.py": ["tests/test_segment_loader_rules.py"],
    "resolvers/order_seed.py": ["tests/test_order_seed_rules.py"],
    "loaders/stats.py": ["tests/test_stats_loader_rules.py"],
    "loaders/container.py": ["tests/test_loader_container_rules.py"],
    "loaders/mongo.py": ["tests/test_mongo_rules.py"],
    "resolvers/messages.py": ["tests/test_messages_rules.py"],
    "loaders/activity_feed.py": ["tests/test_activity_feed_rules.py"],
    "resolvers/migrations.py": ["tests/test_migration_rules.py", "tests/test_migrations.py"],
    "resolvers/activity.py": ["tests/test_activity_rules.py"],
    "loaders/contacts.py": ["tests/test_contacts_loader_rules.py"],
    "resolvers/order_record.py": ["tests/test_order_record_rules.py"],
    "loaders/activity.py": ["tests/test_activity_loader_rules.py"],
    "resolvers/outbox.py": ["tests/test_outbox_rules.py"],
    "resolvers/merge.py": ["tests/test_merge_rules.py"],
    "resolvers/contacts.py": ["tests/test_contacts_rules.py"],
    "resolvers/subscription_record.py": ["tests/test_subscription_record_rules.py"],
    "resolvers/event_delivery.py": ["tests/test_event_delivery_rules.py"],
    "resolvers/imports.py": ["tests/test_imports_rules.py"],
}

# A mutant the tests noticed, by mutmut's status names (mutmut.stats).
DETECTED = ("killed", "timeout", "segfault", "caught by type check")


def copy_tree(target: Path) -> None:
    """The working tree's files (tracked or not, but not ignored) of the packages and the tests."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", *PACKAGES, "tests", "pyproject.toml"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    if target.exists():
        shutil.rmtree(target)
    for name in listed:
        source = ROOT / name
        if name.startswith("tests/clients/") or not source.is_file():
            continue
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


# Imported once by mutmut's fork server, so each mutant's fresh process only
# imports our own packages (which must be imported afresh: see write_config).
PRELOAD = (
    "pytest",
    "_pytest.assertion.rewrite",
    "pytest_asyncio",
    "hypothesis",
    "httpx",
    "asgi_lifespan",
    "pymongo",
    "pymongo.asynchronous.mongo_client",
    "bson",
    "strawberry",
    "strawberry.federation",
    "graphql",
    "starlette.applications",
    "email_validator",
    "phonenumbers",
)


def write_config(target: Path, module: str, tests: list[str], args: argparse.Namespace) -> None:
    (target / "preload.txt").write_text("\n".join(PRELOAD) + "\n")
    # setup.cfg, because the copied pyproject.toml has no [tool.mutmut] section.
    lines = [
        "[mutmut]",
        "source_paths =",
        *(f"    {p}" for p in PACKAGES),
        f"only_mutate = {module}",
        "pytest_add_cli_args_test_selection =",
        *(f"    {t}" for t in tests),
        # Code run while modules are imported (FIELDS built by _choice, say)
        # must run as the mutant too: every mutant gets a process that
        # imports our packages afresh, forked from one that holds only
        # third-party code.
        "process_isolation = forkserver",
        "forkserver_warmup = import",
        "preload_modules_file = preload.txt",
        # Preloaded plugins (anyio, hypothesis) cannot have their asserts
        # rewritten; pytest's warning about that is no test failure.
        "pytest_add_cli_args =",
        "    -W",
        "    ignore::pytest.PytestAssertRewriteWarning",
        # A mutant's tests may take (their clean time + constant) * multiplier
        # seconds of wall time; the constant covers importing our packages and
        # starting the embedded database in that fresh process.
        f"timeout_constant = {args.timeout_constant}",
        f"timeout_multiplier = {args.timeout_multiplier}",
        "use_git_change_detection = false",
        "track_dependencies = false",
        "",
    ]
    (target / "setup.cfg").write_text("\n".join(lines))


def mutmut(
    target: Path, *args: str, database: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if database:
        # The tests then use a database of their own on this server (and drop it).
        env["MONGODB_URI"] = database
    return subprocess.run(command, cwd=target, env=env, capture_output=True, text=True)


def import_time_functions(source: str) -> set[str]:
    """The module's own top-level functions that its import calls (`_choice` building FIELDS)."""
    tree = ast.parse(source)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    run_at_import: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            run_at_import += [*node.decorator_list, *node.args.defaults]
            run_at_import += [d for d in node.args.kw_defaults if d is not None]
        elif isinstance(node, ast.ClassDef):
            run_at_import += [*node.decorator_list, *node.bases]
            run_at_import += [n for n in node.body if not isinstance(n, ast.FunctionDef)]
        else:
            run_at_import.append(node)
    return {
        call.func.id
        for root in run_at_import
        for call in ast.walk(root)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in defined
    }


def widen_test_selection(target: Path, module: str, every_test: bool) -> list[str]:
    """Give all focused tests to the functions whose mutants mutmut would judge by too few.

    mutmut runs a mutant with the tests it saw call the mutated function. A
    function called while the module is imported (and the closures it
    returns) is seen only by the first test, so its mutants get every
    focused test instead; with `every_test`, all mutants do. Returns the
    functions widened.
    """
    stats_file = target / "mutants" / "mutmut-stats.json"
    stats = json.loads(stats_file.read_text())
    all_tests = sorted(stats["duration_by_test"])
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    meta = target / "mutants" / (module + ".meta")
    functions = {
        key.partition("__mutmut_")[0] for key in json.loads(meta.read_text())["exit_code_by_key"]
    }
    if not every_test:
        at_import = import_time_functions((target / module).read_text())
        functions = {f for f in functions if f.removeprefix(prefix + "x_") in at_import}
    for name in functions:
        stats["tests_by_mangled_function_name"][name] = all_tests
    stats_file.write_text(json.dumps(stats, indent=4))
    return sorted(functions)


def results(target: Path) -> dict[str, str]:
    """mutant name -> status, from mutmut's own record of the run."""
    from mutmut.stats import status_by_exit_code

    found: dict[str, str] = {}
    for meta in (target / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            found[name] = status_by_exit_code[code]
    return found


def known_equivalents(module: str) -> dict[str, str]:
    """This module's entries of the equivalents list: mutant name -> the code it puts in.

    An entry reads ``- `name` ``code``: reason``; the code is checked against
    the mutant's diff, so an entry left behind by a change of the function
    (mutmut numbers mutants per function) counts as stale, not equivalent.
    """
    if not EQUIVALENTS.exists():
        return {}
    stem = module.removesuffix(".py").replace("/", ".")
    entries = re.findall(r"^- `([^`]+)` ``(.+?)``: ", EQUIVALENTS.read_text(), flags=re.MULTILINE)
    return {name: code for name, code in entries if name.startswith(stem + ".")}


def puts_in(diff: str, code: str) -> bool:
    """Whether the mutant adds a line holding `code`; written "removes: code", whether it drops one."""
    sign, code = (
        ("-", code.removeprefix("removes: ")) if code.startswith("removes: ") else ("+", code)
    )
    changed = [line[1:] for line in diff.splitlines() if line[:1] == sign and line[:3] != sign * 3]
    return any(code in line for line in changed)


def survivors_again(target: Path, module: str, tests: list[str]) -> list[str] | str:
    """The last run's survivors, with the focused test files brought up to date; or why not."""
    if not (target / "mutants").is_dir():
        return f"no earlier run of {module} in {target}"
    if (ROOT / module).read_bytes() != (target / module).read_bytes():
        return f"{module} changed since its last run: run it afresh (without --again)"
    for name in tests:
        test_file = name.split("::")[0]
        destination = target / test_file
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / test_file, destination)
    return sorted(n for n, s in results(target).items() if s == "survived")


def run_mutants(
    target: Path, module: str, tests: list[str], args: argparse.Namespace
) -> list[str] | str:
    """Run mutmut on the module in a fresh copy; the functions given every test, or what failed.

    With `args.again`, only the last run's survivors, in that copy.
    """
    again: list[str] = []
    if args.again:
        found = survivors_again(target, module, tests)
        if isinstance(found, str):
            return found
        if not found:
            return []
        again = found
    else:
        copy_tree(target)
        stem = module.removesuffix(".py").replace("/", ".")
        again = [f"{stem}.x_{name}__mutmut_*" for name in args.functions or []]
    write_config(target, module, tests, args)
    with ExitStack() as stack:
        database = os.environ.get("MONGODB_URI")
        if not database:
            # One embedded server for every mutant: starting and stopping one
            # per mutant would cost more than most mutants' tests.
            from graph.embedded import EmbeddedServer

            database = stack.enter_context(EmbeddedServer(":memory:")).uri
        # First pass: make the mutants and record each test's time; the name
        # matches no mutant, so mutmut stops there (with an assertion).
        first = mutmut(target, "run", "--max-children", "1", "no-such-mutant", database=database)
        if not (target / "mutants" / "mutmut-stats.json").exists():
            return first.stdout[-3000:] + first.stderr[-3000:]
        widened = widen_test_selection(target, module, args.every_test)
        run = mutmut(target, "run", "--max-children", str(args.jobs), *again, database=database)
    log = first.stdout + first.stderr + run.stdout + run.stderr
    with (target / "mutmut-run.log").open("a" if again else "w") as file:
        file.write(log)
    if run.returncode != 0:
        return run.stdout[-3000:] + run.stderr[-3000:]
    return widened


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="a module file, e.g. resolvers/contact_filters.py")
    parser.add_argument("--tests", nargs="+", help="the focused tests (default: the module's list)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument(
        "--timeout-constant",
        type=float,
        default=20.0,
        help="seconds added to a mutant's clean test time before the multiplier (default 20)",
    )
    parser.add_argument(
        "--timeout-multiplier",
        type=float,
        default=3.0,
        help="a mutant that runs longer than (clean time + constant) x this is a timeout (default 3)",
    )
    parser.add_argument("--survivors", type=Path, help="where the surviving mutants' diffs go")
    parser.add_argument(
        "--last-run",
        action="store_true",
        help="report the last run of this module again (after editing the equivalents list)",
    )
    parser.add_argument(
        "--again",
        action="store_true",
        help="run the last run's survivors once more, with the focused tests as they are now",
    )
    parser.add_argument(
        "--functions",
        nargs="+",
        metavar="NAME",
        help="run only the mutants of these top-level functions of the module",
    )
    parser.add_argument(
        "--every-test",
        action="store_true",
        help="run every mutant against all the focused tests, not only those that reach it",
    )
    args = parser.parse_args()

    module = args.module.removeprefix("./")
    if not (ROOT / module).is_file():
        parser.error(f"no module {module}")
    tests = args.tests or FOCUSED_TESTS.get(module)
    if not tests:
        parser.error(f"no focused tests known for {module}: pass --tests")
    tests = [t for t in tests if (ROOT / t.split("::")[0]).exists()]

    # Everything below, the database server and every mutant, runs at the lowest priority.
    os.nice(19)
    target = WORK / module.removesuffix(".py").replace("/", ".")
    widened: list[str] | str = "as in the last run"
    if not args.last_run:
        ran = run_mutants(target, module, tests, args)
        if isinstance(ran, str):
            print(ran, file=sys.stderr)
            return 1
        widened = ran
    statuses = results(target)
    if not statuses:
        print(f"no results in {target}", file=sys.stderr)
        return 1

    listed = known_equivalents(module)
    survived = sorted(n for n, s in statuses.items() if s == "survived")
    diffs = {name: mutmut(target, "show", name).stdout for name in survived}
    equivalent = {n for n in survived if n in listed and puts_in(diffs[n], listed[n])}
    survivors = [n for n in survived if n not in equivalent]
    survivors_file = (args.survivors or WORK / f"{target.name}.survivors.diff").absolute()
    survivors_file.write_text("".join(diffs[n] for n in survivors))

    # Not run at all (a run by --functions, or one stopped part-way): no verdict either way.
    not_checked = sum(1 for s in statuses.values() if s == "not checked")
    counted = [s for n, s in statuses.items() if n not in equivalent and s != "not checked"]
    detected = sum(counted.count(s) for s in DETECTED)
    report = {
        "module": module,
        "tests": tests,
        "mutants": len(statuses),
        "killed": detected - counted.count("timeout"),
        "survived": len(survivors),
        "timeout": counted.count("timeout"),
        "equivalent": len(equivalent),
        "not_checked": not_checked,
        # Listed as equivalent but killed, or no longer the listed change: update the list.
        "stale_equivalents": sorted(
            n for n in set(listed) - equivalent if statuses.get(n) != "not checked"
        ),
        "other": {s: counted.count(s) for s in sorted(set(counted) - {*DETECTED, "survived"})},
        "score": round(100 * detected / len(counted), 1) if counted else None,
        "every_test_for": "every mutant" if args.every_test else widened,
        "survivors_file": str(
            survivors_file.relative_to(ROOT)
            if survivors_file.is_relative_to(ROOT)
            else survivors_file
        ),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
