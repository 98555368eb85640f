"""The committed SDL (graph/schema.graphql) is the schema the code builds."""

from __future__ import annotations

import difflib

from graphql import build_schema as build_sdl

from graph.schema import SCHEMA_FILE, printed_schema


def test_committed_schema_matches_the_code():
    committed = SCHEMA_FILE.read_text()
    printed = printed_schema()
    if committed != printed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                printed.splitlines(keepends=True),
                "graph/schema.graphql (committed)",
                "schema from the code",
                n=1,
            )
        )
        raise AssertionError(
            "graph/schema.graphql is out of date; regenerate it with `python -m graph.schema`.\n"
            + diff[:4000]
        )


def test_committed_schema_is_valid_sdl():
    schema = build_sdl(SCHEMA_FILE.read_text())
    query = schema.query_type
    mutation = schema.mutation_type
    assert query is not None and mutation is not None
    for field in ("node", "contact", "contactByEmail", "contacts"):
        assert field in query.fields
    for field in ("contactCreate", "contactUpdate", "contactUnlock", "contactsDelete"):
        assert field in mutation.fields
