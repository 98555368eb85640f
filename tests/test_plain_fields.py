"""Plain fields read directly give exactly the answers and errors of Strawberry's own path."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry.schema.config import StrawberryConfig

from graph.attribute_resolvers import PlainFieldsExecutor, use_attribute_resolvers
from graph.field_rights import RightsExecutor
from graph.types.scalars import SCALARS


@strawberry.enum
class Color(Enum):
    RED = "red"
    GREEN = "green"


@strawberry.type
class Thing:
    name: str
    nickname: str | None
    count: int
    color: Color
    shade: Color | None
    colors: list[Color]
    at: dt.datetime | None
    price: Decimal | None

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


def thing(**changes: object) -> Thing:
    made = Thing(
        name="ann",
        nickname="a",
        count=3,
        color=Color.RED,
        shade=None,
        colors=[Color.GREEN, Color.RED],
        at=dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        price=Decimal("19.90"),
    )
    for name, value in changes.items():
        if value is _MISSING:
            delattr(made, name)
        else:
            setattr(made, name, value)
    return made


_MISSING = object()

# Each row: one source; together every way a plain value can be right or wrong.
SOURCES = [
    thing(),
    thing(nickname=None, shade=Color.GREEN, at=None, price=None),
    thing(name=None),  # null for a non-null field
    thing(count=1.5),  # a value the Int type refuses
    thing(count="7"),  # one it accepts as it is
    thing(count=True),
    thing(color="green"),  # the value, not the member
    thing(color="blue"),  # no such value
    thing(shade=7),
    thing(at=dt.datetime(2026, 1, 2, 3, 4, 5)),  # naive: read as UTC
    thing(at="yesterday"),  # the scalar's serializer fails
    thing(price=Decimal("1E+3")),
    thing(nickname=_MISSING),  # the attribute is not there at all
    thing(name=ValueError("a value that is an error")),
]

QUERY = """
{ things { name nickname count color shade colors at price shout __typename } }
"""


def build(fast: bool, sources: list[Thing] = SOURCES) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def things(self) -> list[Thing | None]:
            return list(sources)

    schema = strawberry.Schema(
        query=Query,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=PlainFieldsExecutor if fast else None,
    )
    if fast:
        use_attribute_resolvers(schema)
    return schema


def answer(schema: strawberry.Schema) -> tuple[object, list[tuple[str, list]]]:
    result = schema.execute_sync(QUERY)
    errors = sorted((e.message, e.path) for e in result.errors or [])
    return result.data, errors


def test_every_value_and_every_error_is_what_strawberry_answers():
    plain, fast = answer(build(fast=False)), answer(build(fast=True))

    assert fast == plain
    data, errors = fast
    # The comparison covers the cases it claims to: good rows, nulls, refusals.
    assert data["things"][0] == {
        "name": "ann",
        "nickname": "a",
        "count": 3,
        "color": "RED",
        "shade": None,
        "colors": ["GREEN", "RED"],
        "at": "2026-01-02T03:04:05.678+00:00",
        "price": "19.90",
        "shout": "ANN",
        "__typename": "Thing",
    }
    assert data["things"][2] is None and data["things"][6]["color"] == "GREEN"
    assert {path[1] for _, path in errors} == {2, 3, 7, 8, 10, 12, 13}


def test_plain_leaves_are_answered_without_a_resolve_info(monkeypatch):
    built: list[str] = []
    original = PlainFieldsExecutor.build_resolve_info

    def counting(self, field_def, field_nodes, parent_type, path):  # type: ignore[no-untyped-def]
        built.append(field_nodes[0].name.value)
        return original(self, field_def, field_nodes, parent_type, path)

    monkeypatch.setattr(PlainFieldsExecutor, "build_resolve_info", counting)
    good = SOURCES[:2]

    result = build(fast=True, sources=good).execute_sync(QUERY)

    assert result.errors is None and len(result.data["things"]) == 2
    # Only the resolver fields and the list of enums need one; not even __typename.
    assert sorted(built) == sorted(["things"] + ["shout", "colors"] * len(good))


def test_no_middleware_manager_wraps_resolvers_when_no_extension_resolves():
    managers = []

    class Probe(PlainFieldsExecutor):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            managers.append(self.middleware_manager)

    schema = build(fast=True)
    schema.execution_context_class = Probe

    assert schema.execute_sync("{ things { shout } }").data is not None
    assert managers == [None]


def test_the_api_executor_reads_plain_fields_directly_after_checking_rights():
    assert issubclass(RightsExecutor, PlainFieldsExecutor)
