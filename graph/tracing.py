"""OpenTelemetry traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the `otel` extra).

Three kinds of spans, nested as the work is: the HTTP request (a server
span, continuing the caller's trace from its `traceparent` header), the
GraphQL operation inside it, and each MongoDB command (client spans) inside
that. The exporter is configured by the standard variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, ...).

Spans carry names, routes, codes and durations, never the shop's data: no
query text, no variables or arguments, no MongoDB command documents, no
error messages (a duplicate-key error quotes the e-mail address it
collided on).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span


class TracingUnavailable(RuntimeError):
    pass


def wanted(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ if env is None else env)
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ) and (env.get("OTEL_SDK_DISABLED", "").lower() != "true")


class Tracing:
    """The spans of one process, made by `provider`'s tracer."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import propagate, trace

        self.provider = provider
        self.tracer = provider.get_tracer("contactgraph")
        self._extract = propagate.extract
        self._trace = trace

    @classmethod
    def from_env(cls) -> Tracing | None:
        """Spans exported over OTLP/HTTP when the standard variables ask for it; None otherwise."""
        if not wanted():
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise TracingUnavailable(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                "pip install 'contactgraph[otel]'"
            ) from None
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "contactgraph"}
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def shutdown(self) -> None:
        """Sends what is still buffered."""
        self.provider.shutdown()

    @contextlib.contextmanager
    def request_span(self, scope: dict[str, Any], record: Any) -> Iterator[None]:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers") or []
        }
        kind = self._trace.SpanKind.SERVER
        attributes = {
            "http.request.method": record.method,
            "http.route": record.route,
            "contactgraph.request_id": record.request_id,
        }
        name = f"{record.method} {record.route}"
        with self.tracer.start_as_current_span(
            name, context=self._extract(carrier), kind=kind, attributes=attributes
        ) as span:
            record.tracing = self
            try:
                yield
            finally:
                status = record.status or 500
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
                codes = record.all_codes
                if codes:
                    span.set_attribute("contactgraph.error_codes", codes)

    @contextlib.contextmanager
    def operation_span(self) -> Iterator[Span]:
        with self.tracer.start_as_current_span("graphql") as span:
            yield span

    @staticmethod
    def name_operation(span: Span, name: str | None, kind: str | None) -> None:
        span.update_name(" ".join(part for part in (kind, name) if part) or "graphql")
        if name:
            span.set_attribute("graphql.operation.name", name)
        if kind:
            span.set_attribute("graphql.operation.type", kind)

    def command_started(self, event: Any) -> Span:
        name = event.command_name
        collection = event.command.get(name)
        if name == "getMore":
            collection = event.command.get("collection")
        attributes: dict[str, Any] = {
            "db.system.name": "mongodb",
            "db.namespace": event.database_name,
            "db.operation.name": name,
        }
        if isinstance(collection, str):
            attributes["db.collection.name"] = collection
        address = event.connection_id
        if isinstance(address, tuple) and len(address) == 2:
            attributes["server.address"], attributes["server.port"] = address
        label = f"{name} {collection}" if isinstance(collection, str) else name
        return self.tracer.start_span(
            label, kind=self._trace.SpanKind.CLIENT, attributes=attributes
        )

    def command_finished(self, span: Span, event: Any, outcome: str) -> None:
        if outcome != "ok":
            # The code, never the message: it may quote the data it failed on.
            failure = getattr(event, "failure", None)
            code = failure.get("code") if isinstance(failure, dict) else None
            if code is not None:
                span.set_attribute("db.response.status_code", str(code))
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        span.end()
