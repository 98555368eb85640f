"""Mutation score of graph/cost.py, the price table, which mutmut leaves alone (it mutates functions).

    .venv/bin/python bench/cost_table_mutation.py ["MUTANT" ...]   # all of them, or those named

Each mutant changes one number of the table by one point (a constant, or a
number an entry declares), or drops one entry, then runs the cost tests in a fresh pytest process (this file is
loaded as a plugin that applies the change before any test runs). A mutant
is killed when a test fails. Prints one JSON document: the score and the
survivors. Takes a few minutes; not part of CI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_cost.py", "tests/test_limit_rules.py"]
MUTANT = "COST_TABLE_MUTANT"


def mutants() -> list[str]:
    from graph import cost

    names = [f"{c}+1" for c in ("SCALAR", "OBJECT", "CONNECTION", "MUTATION")]
    names.append("LARGEST_PAGE-1")
    for key, price in cost.FIELD_COSTS.items():
        entry = ".".join(key)
        names.append(f"FIELD_COSTS[{entry}] dropped")
        # Only what the entry declares: a field left at its default is unused there.
        for field in dataclasses.fields(price):
            if getattr(price, field.name) != field.default:
                names.append(f"FIELD_COSTS[{entry}].{field.name}+1")
    for key in cost.ARGUMENT_COSTS:
        entry = ".".join(key)
        names += [f"ARGUMENT_COSTS[{entry}] dropped", f"ARGUMENT_COSTS[{entry}]+1"]
    return names


def apply(name: str) -> None:
    """Changes graph.cost in this process as the mutant says."""
    from graph import cost

    table, _, rest = name.partition("[")
    if not rest:
        constant = name[:-2]
        setattr(cost, constant, getattr(cost, constant) + (1 if name.endswith("+1") else -1))
        return
    entry, _, change = rest.partition("]")
    prices: dict = getattr(cost, table)
    key = next(k for k in prices if ".".join(k) == entry)
    if change == " dropped":
        del prices[key]
    elif table == "ARGUMENT_COSTS":
        prices[key] += 1
    else:
        field = change.strip(".").removesuffix("+1")
        prices[key] = dataclasses.replace(prices[key], **{field: getattr(prices[key], field) + 1})


def pytest_configure(config) -> None:  # noqa: ANN001 - pytest's plugin hook
    name = os.environ.get(MUTANT)
    if name:
        apply(name)


def run_tests(mutant: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nice", "-n", "19", sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly"]
        + ["-p", "cost_table_mutation", *TESTS],
        cwd=ROOT,
        env={**os.environ, MUTANT: mutant, "PYTHONPATH": str(ROOT / "bench")},
        capture_output=True,
        text=True,
    )


def main() -> int:
    sys.path.insert(0, str(ROOT))
    clean = run_tests("")
    if clean.returncode != 0:
        print("the tests fail without a mutant:\n" + clean.stdout[-3000:], file=sys.stderr)
        return 2
    survivors = []
    names = sys.argv[1:] or mutants()
    for name in names:
        run = run_tests(name)
        if run.returncode == 0:
            survivors.append(name)
        elif run.returncode != 1:  # not a test failure: the run itself broke
            print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
            return 2
    killed = len(names) - len(survivors)
    report = {
        "module": "graph/cost.py",
        "tests": TESTS,
        "mutants": len(names),
        "killed": killed,
        "survivors": survivors,
        "score": round(100 * killed / len(names), 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
