"""OpenTelemetry spans: HTTP, the GraphQL operation, MongoDB commands, nested, with no data in them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from graph.http.app import create_app
from graph.tracing import Tracing, wanted

EMAIL = "traced.person@span-probe.example"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
async def traced(settings, exporter) -> AsyncIterator[httpx.AsyncClient]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(dataclasses.replace(settings), tracing=Tracing(provider))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def spans(exporter: InMemorySpanExporter):
    exporter.clear()
    return exporter.get_finished_spans


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_a_request_is_a_server_span_continuing_the_callers_trace(traced, keys, spans):
    create = (
        "mutation Create($email: String!) "
        "{ contactCreate(input: {email: $email}) { contact { id } } }"
    )
    response = await traced.post(
        "/graphql",
        json={"query": create, "variables": {"email": EMAIL}},
        headers={
            "Authorization": f"Bearer {keys['ADMIN']}",
            "traceparent": TRACEPARENT,
            "X-Request-Id": "traced-1",
        },
    )
    assert response.status_code == 200
    done = spans()
    [server] = [s for s in done if s.kind == SpanKind.SERVER]
    assert server.name == "POST /graphql"
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.attributes["http.route"] == "/graphql"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["contactgraph.request_id"] == "traced-1"
    [operation] = [s for s in done if s.name == "mutation Create"]
    assert operation.parent.span_id == server.context.span_id
    assert operation.attributes["graphql.operation.name"] == "Create"
    assert operation.attributes["graphql.operation.type"] == "mutation"
    writes = [s for s in children(done, operation) if s.kind == SpanKind.CLIENT]
    assert "insert contacts" in [s.name for s in writes]
    insert = next(s for s in writes if s.name == "insert contacts")
    assert insert.attributes["db.system.name"] == "mongodb"
    assert insert.attributes["db.operation.name"] == "insert"
    assert insert.attributes["db.collection.name"] == "contacts"
    # The key's look-up happens before the operation: a command of the request itself.
    assert any(s.name == "find api_keys" for s in children(done, server))
    # Every span of the request belongs to the caller's trace.
    assert {format(s.context.trace_id, "032x") for s in done} == {CALLER_TRACE}


async def test_spans_hold_no_query_text_variables_or_data(traced, keys, spans):
    await traced.post(
        "/graphql",
        json={"query": f'{{ contactByEmail(email: "{EMAIL}") {{ id email }} }}'},
        headers={"Authorization": f"Bearer {keys['ADMIN']}"},
    )
    await traced.post(
        "/graphql",
        json={
            "query": "query Q($e: String!) { contactByEmail(email: $e) { id } }",
            "variables": {"e": {"x": EMAIL}},
        },
        headers={"Authorization": f"Bearer {keys['ADMIN']}"},
    )
    done = spans()
    assert len(done) > 4
    everything = json.dumps(
        [
            {"name": s.name, "attributes": dict(s.attributes), "events": [e.name for e in s.events]}
            for s in done
        ],
        default=str,
    )
    assert EMAIL not in everything
    assert "span-probe" not in everything
    assert "contactByEmail" not in everything  # no query text


async def test_a_failed_request_is_an_error_span_with_its_codes(traced, spans):
    response = await traced.post("/graphql", json={"query": "{ contacts { totalCount } }"})
    assert response.status_code == 401
    [server] = spans()
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["contactgraph.error_codes"] == ("UNAUTHENTICATED",)
    assert server.status.status_code != StatusCode.ERROR  # the client's fault, not the server's


def test_tracing_is_on_only_with_an_otlp_endpoint():
    assert not wanted({})
    assert wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})


def test_from_the_standard_environment(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert Tracing.from_env() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "contactgraph-eu")
    tracing = Tracing.from_env()
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == "contactgraph-eu"
        [processor] = tracing.provider._active_span_processor._span_processors
        assert type(processor.span_exporter).__name__ == "OTLPSpanExporter"
        assert processor.span_exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    finally:
        tracing.shutdown()  # no span was made: nothing is sent
