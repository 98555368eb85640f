"""What the server makes of the queries the code really sends: indexes, plans, keys examined.

The embedded server answers `explain`, but it always sorts after its
index scan and plans by the first indexed field, so a plan test there
checks that the expected index serves the command (its keys are the
command's equality fields, then its sort) and that the server accepts and
uses it when hinted. On MongoDB (MONGODB_URI) the same tests ask more:
the planner picks that index by itself, sorts nothing in memory, and
examines no more keys than the page needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from loaders.mongo import Database

# Fields of a sent command that belong to the session or the wire, not the query.
_TRANSPORT = {"lsid", "$db", "$clusterTime", "txnNumber", "$readPreference", "autocommit"}


async def is_embedded(database: Database) -> bool:
    info = await database.db.command("buildInfo")
    return "secantusVersion" in info


def equality_fields(condition: dict[str, Any]) -> set[str]:
    """Fields a filter pins to one value, at its top level or in a top-level `$and`."""
    found: set[str] = set()
    for key, value in condition.items():
        if key == "$and":
            for part in value:
                found |= equality_fields(part)
        elif key.startswith("$"):
            continue
        elif not isinstance(value, dict) or set(value) == {"$eq"}:
            found.add(key)
    return found


def serving_indexes(indexes: dict[str, Any], condition: dict[str, Any], sort: Any) -> list[str]:
    """Indexes whose keys are equality fields of `condition`, then exactly `sort` (or its reverse)."""
    wanted = list((sort or {}).items())
    pinned = equality_fields(condition)
    names = []
    for name, info in indexes.items():
        keys = [(field, int(direction)) for field, direction in info["key"]]
        cut = len(keys) - len(wanted)
        if cut < 0:
            continue
        prefix, suffix = keys[:cut], keys[cut:]
        if not all(field in pinned for field, _ in prefix):
            continue
        if [f for f, _ in suffix] != [f for f, _ in wanted]:
            continue
        same = [d for _, d in suffix] == [int(d) for _, d in wanted]
        reverse = [-d for _, d in suffix] == [int(d) for _, d in wanted]
        if same or reverse:
            names.append(name)
    return names


def query_of(command: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in command.items() if k not in _TRANSPORT}


async def explain(
    database: Database, command: dict[str, Any], hint: str | None = None
) -> dict[str, Any]:
    query = query_of(command)
    if hint is not None:  # find and aggregate both take it at the top level
        query["hint"] = hint
    return await database.db.command({"explain": query, "verbosity": "executionStats"})


def _stages(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "queryPlan" in plan:  # MongoDB's slot-based engine nests the plan
        plan = plan["queryPlan"]
    yield plan
    for child in [plan.get("inputStage"), *(plan.get("inputStages") or [])]:
        if isinstance(child, dict):
            yield from _stages(child)


def winning_plan(explained: dict[str, Any]) -> dict[str, Any]:
    if "queryPlanner" in explained:
        return explained["queryPlanner"]["winningPlan"]
    # An aggregation: the plan of its first stage's cursor.
    for stage in explained.get("stages") or []:
        if "$cursor" in stage:
            return stage["$cursor"]["queryPlanner"]["winningPlan"]
    raise AssertionError(f"no plan in {explained}")


def stage_names(explained: dict[str, Any]) -> list[str]:
    return [stage["stage"] for stage in _stages(winning_plan(explained))]


def index_names(explained: dict[str, Any]) -> list[str]:
    return [s["indexName"] for s in _stages(winning_plan(explained)) if "indexName" in s]


def keys_examined(explained: dict[str, Any]) -> int:
    if "executionStats" in explained:
        return int(explained["executionStats"]["totalKeysExamined"])
    for stage in explained.get("stages") or []:
        if "$cursor" in stage:
            return int(stage["$cursor"]["executionStats"]["totalKeysExamined"])
    raise AssertionError(f"no execution statistics in {explained}")


async def assert_index_walk(
    database: Database, collection: str, command: dict[str, Any], index: str, *, most_keys: int
) -> dict[str, Any]:
    """The command is answered by walking `index` in order: no sort, at most `most_keys` keys."""
    indexes = await database.db[collection].index_information()
    assert index in indexes, f"{index} is missing: {sorted(indexes)}"
    assert index in serving_indexes(indexes, command["filter"], command.get("sort")), (
        f"{index} does not serve {command['filter']} sorted by {command.get('sort')}"
    )
    embedded = await is_embedded(database)
    explained = await explain(database, command, hint=index if embedded else None)
    assert index in index_names(explained), index_names(explained)
    if not embedded:
        assert "SORT" not in stage_names(explained), stage_names(explained)
        assert keys_examined(explained) <= most_keys
    return explained


def or_branches_served(indexes: dict[str, Any], condition: dict[str, Any]) -> list[list[str]]:
    """For each branch of the filter's `$or`: the indexes that start with shopId and its fields.

    A branch is served when an index's leading keys are all pinned by the
    branch and the fields around the `$or`, and include a field of the branch
    itself: MongoDB then answers the `$or` as one narrow index scan per branch.
    """
    outer = {k: v for k, v in condition.items() if k != "$or"}
    served = []
    for branch in condition["$or"]:
        pinned = equality_fields(outer) | equality_fields(branch)
        names = []
        for name, info in indexes.items():
            keys = [field for field, _ in info["key"]]
            lead = 0
            while lead < len(keys) and keys[lead] in pinned:
                lead += 1
            if keys[:1] == ["shopId"] and set(branch) & set(keys[1:lead]):
                names.append(name)
        served.append(names)
    return served


async def assert_or_branches_indexed(
    database: Database, collection: str, command: dict[str, Any], expected: list[str]
) -> None:
    """Each branch of the command's `$or` has its index (`expected`, in branch order)."""
    indexes = await database.db[collection].index_information()
    served = or_branches_served(indexes, command["filter"])
    for index, names in zip(expected, served, strict=True):
        assert index in names, f"{index} does not serve its branch: {served}"
    if not await is_embedded(database):  # the embedded server scans for any `$or`
        explained = await explain(database, command)
        assert "COLLSCAN" not in stage_names(explained), stage_names(explained)
        assert set(expected) <= set(index_names(explained)), index_names(explained)
