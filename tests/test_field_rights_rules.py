"""Field rights to the edge: the kept answers' bound, the refusal's exact words, what the walk skips.

tests/test_field_rights.py checks the rules over the whole schema and
through the API; these pin the details a client or the server's memory
sees: a refusal naming every root field it refuses (sorted), a request
without a key refused before anything is looked at, and at most 1024
answers kept, the least recently used going first.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from graphql import OperationDefinitionNode, OperationType, get_operation_ast, parse

from graph import field_rights
from graph.field_rights import FieldGuardExecutor, RightsExecutor, check_document, rights_for
from graph.permissions import ReadRule, allowed_roles, may_read, may_read_notes
from graph.schema import build_schema
from resolvers.shops import Role

SCHEMA = build_schema()._schema


def operation_of(document, name: str | None = None) -> OperationDefinitionNode:
    operation = get_operation_ast(document, name)
    assert operation is not None
    return operation


def build(query: str, role: Role | None, operation_name: str | None = None) -> object:
    context = SimpleNamespace(key=None if role is None else SimpleNamespace(role=role))
    return RightsExecutor.build(SCHEMA, parse(query), None, context, None, operation_name)


def test_a_refusal_names_every_root_field_it_refuses_in_order():
    [denied] = build("{ segments { id } contacts { nodes { id } } labels { name } }", Role.INGEST)

    assert denied.message == "An INGEST key may not use contacts, labels, segments."
    assert denied.extensions == {"code": "FORBIDDEN"}


def test_a_refusal_speaks_of_a_or_an_key_as_the_role_sounds():
    [public] = build("{ labels { name } }", Role.PUBLIC)
    [ingest] = build("{ labels { name } }", Role.INGEST)

    assert public.message == "A PUBLIC key may not use labels."
    assert ingest.message == "An INGEST key may not use labels."


def test_without_a_key_nothing_is_looked_at():
    for role in (None, "ADMIN"):
        context = SimpleNamespace(key=SimpleNamespace(role=role))
        [error] = RightsExecutor.build(SCHEMA, parse("{ __typename }"), None, context)
        assert (error.message, error.extensions) == (
            "A valid API key is required.",
            {"code": "UNAUTHENTICATED"},
        )


def test_a_request_without_a_key_or_without_a_context_is_refused_alike():
    for context in (SimpleNamespace(key=None), SimpleNamespace(), None):
        [error] = RightsExecutor.build(SCHEMA, parse("{ __typename }"), None, context)
        assert error.extensions == {"code": "UNAUTHENTICATED"}


async def test_what_the_server_adds_to_an_execution_still_runs_under_the_rights():
    # Resolver middleware (tracing, say) reaches the executor as a keyword argument.
    seen: list[str] = []

    def middleware(resolve, source, info, **arguments):
        seen.append(info.field_name)
        return resolve(source, info, **arguments)

    context = SimpleNamespace(key=SimpleNamespace(role=Role.READER))
    executor = RightsExecutor.build(
        SCHEMA, parse('{ node(id: "not an id") { id } }'), None, context, middleware=[middleware]
    )
    assert isinstance(executor, RightsExecutor)

    assert (await executor.execute_operation()).data == {"node": None}
    assert seen == ["node"]


def test_an_operation_not_in_the_document_is_left_to_graphql_to_name():
    [error] = build("query A { __typename } query B { __typename }", Role.ADMIN, "C")

    assert error.message == "Unknown operation named 'C'."


def test_the_named_operation_is_the_one_checked():
    query = "query A { contacts { nodes { id } } } query B { __typename }"

    assert type(build(query, Role.INGEST, "B")) is RightsExecutor
    [denied] = build(query, Role.INGEST, "A")
    assert denied.message == "An INGEST key may not use contacts."


def test_typename_and_introspection_are_open_to_every_key():
    document = parse("{ __typename __schema { queryType { name } } }")

    for role in Role:
        rights = check_document(SCHEMA, document, operation_of(document), role)
        assert (rights.denied_roots, rights.refused) == ((), frozenset())


def test_a_refused_field_is_found_inside_inline_fragments_and_spreads():
    query = """
    query { contacts { nodes { ... on Contact { ...Inner } } } }
    fragment Inner on Contact { id ... { notes { id } } }
    """
    document = parse(query)

    rights = check_document(SCHEMA, document, operation_of(document), Role.READER)

    assert rights.refused == {("Contact", "notes")}
    assert rights.denied_roots == ()


def test_an_unknown_field_or_fragment_is_left_to_validation():
    document = parse("{ contacts { nodes { nope { id } ...Missing } } nothing }")

    rights = check_document(SCHEMA, document, operation_of(document), Role.READER)

    assert (rights.denied_roots, rights.refused) == ((), frozenset())
    # What follows an unknown field is still checked.
    document = parse("{ nothing contacts { nodes { nope notes { id } } } }")
    rights = check_document(SCHEMA, document, operation_of(document), Role.READER)
    assert rights.refused == {("Contact", "notes")}


def test_a_mutation_root_is_checked_against_the_mutations_rights():
    [denied] = build('mutation { contactsDelete(ids: ["x"]) { deletedIds } }', Role.READER)

    assert denied.message == "A READER key may not use contactsDelete."


@pytest.fixture
def fresh_answers(monkeypatch):
    monkeypatch.setattr(field_rights, "_answers", type(field_rights._answers)())
    monkeypatch.setattr(field_rights, "CACHE_SIZE", 3)
    return field_rights._answers


def kept(query: str) -> tuple:
    document = parse(query)
    return document, operation_of(document)


def test_at_most_the_cache_size_answers_are_kept_least_recently_used_first(fresh_answers):
    documents = [kept(f"{{ contacts(first: {n}) {{ nodes {{ id }} }} }}") for n in range(1, 5)]
    answers = [rights_for(SCHEMA, d, o, Role.READER) for d, o in documents[:3]]
    assert len(fresh_answers) == 3

    # The first is used again, so the second is the least recent when a fourth comes.
    assert rights_for(SCHEMA, *documents[0], Role.READER) is answers[0]
    rights_for(SCHEMA, *documents[3], Role.READER)

    assert len(fresh_answers) == 3
    assert rights_for(SCHEMA, *documents[0], Role.READER) is answers[0]
    assert rights_for(SCHEMA, *documents[2], Role.READER) is answers[2]
    assert rights_for(SCHEMA, *documents[1], Role.READER) is not answers[1]


def test_an_answer_is_kept_per_role(fresh_answers):
    document, operation = kept("{ contacts { nodes { notes { id } } } }")

    reader = rights_for(SCHEMA, document, operation, Role.READER)
    staff = rights_for(SCHEMA, document, operation, Role.STAFF)

    assert reader.refused == {("Contact", "notes")} and staff.refused == frozenset()
    assert len(fresh_answers) == 2
    assert rights_for(SCHEMA, document, operation, Role.READER) is reader


def test_a_guarded_executor_knows_its_role_and_what_it_refuses():
    guarded = build("{ contacts { nodes { id notes { id } } } }", Role.READER)

    assert isinstance(guarded, FieldGuardExecutor)
    assert guarded.role is Role.READER
    assert guarded.refused == {("Contact", "notes")}


# --- the rules themselves (graph/permissions.py) -------------------------------------


def test_each_operation_type_has_its_default_roles():
    assert allowed_roles(OperationType.QUERY, "contacts") == {Role.ADMIN, Role.STAFF, Role.READER}
    assert allowed_roles(OperationType.SUBSCRIPTION, "contactActivity") == {
        Role.ADMIN,
        Role.STAFF,
        Role.READER,
    }
    assert allowed_roles(OperationType.MUTATION, "contactCreate") == {Role.ADMIN, Role.STAFF}


def test_a_root_field_named_in_the_rules_has_its_own_roles_whatever_the_operation():
    assert allowed_roles(OperationType.MUTATION, "orderRecord") == {
        Role.ADMIN,
        Role.STAFF,
        Role.INGEST,
    }
    assert allowed_roles(OperationType.QUERY, "contactDataExport") == {Role.ADMIN}


def test_introspection_at_the_root_is_open_to_every_role():
    for operation in OperationType:
        assert allowed_roles(operation, "__schema") == frozenset(Role)
        assert allowed_roles(operation, "__typename") == frozenset(Role)


def test_a_role_with_denied_fields_reads_everything_else():
    assert may_read(Role.READER, "Contact", "email")
    assert not may_read(Role.READER, "Contact", "notes")
    assert may_read(Role.READER, "Note", "text")  # a type is not closed by one of its fields
    assert may_read(Role.STAFF, "Contact", "notes")
    assert may_read_notes(Role.STAFF) and may_read_notes(Role.ADMIN)
    assert not may_read_notes(Role.READER)


def test_an_outside_key_reads_only_the_types_and_fields_it_is_given():
    for role in (Role.INGEST, Role.PUBLIC):
        assert may_read(role, "Contact", "id")
        assert not may_read(role, "Contact", "email")
        assert may_read(role, "Order", "total")
        assert not may_read(role, "Order", "email")
        # A type given whole: every field, one not named: none.
        assert may_read(role, "LineItem", "title")
        assert not may_read(role, "Note", "id")
        assert not may_read_notes(role)


def test_typename_is_readable_on_every_type_even_a_closed_one():
    for role in Role:
        assert may_read(role, "Note", "__typename")
        assert ReadRule(only={}).may_read("Anything", "__typename")
    assert not ReadRule(only={}).may_read("Anything", "id")
    assert ReadRule().may_read("Anything", "id")
