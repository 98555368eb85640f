"""Request ids, one log line per request, and the request metrics.

`RequestLog` is the outermost middleware. For each HTTP request (and each
WebSocket connection) it takes the client's `X-Request-Id` when it is sane
(1–128 of `A–Z a–z 0–9 . _ : -`) or makes one, sends it back in the
response, and puts it in a context variable so every log line written
meanwhile carries it (graph/log_setup.py). When the request ends it writes
one line: method, route, status, duration, shop, key id (never the key),
the GraphQL operations with their cost and error codes, and the MongoDB
commands sent with their time; and it feeds the Prometheus metrics
(graph/http/metrics.py).

The line is built from names, ids, codes and numbers only. It never holds
the query text, variables, error messages (GraphQL errors may echo the
input: an e-mail address that is not one), the raw path (an unsubscribe
token) or the query string (`GET /graphql?query=…`).

Health checks and scrapes (`/healthz`, `/readyz`, `/metrics`) are logged at
DEBUG, so the default INFO log shows the API's traffic only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graph.errors import MASKED_MESSAGE
from graph.http import metrics
from graph.http.graphql_http import GraphQLOverHTTP, Outcome
from graph.http.responses import problem
from graph.log_setup import FIELDS, current_request_id
from loaders.observability import CommandTally, current_tally

log = logging.getLogger("contactgraph.request")
errors_log = logging.getLogger("contactgraph")

REQUEST_ID_HEADER = "x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Routes as their templates: bounded labels, and no token or file name in a log line.
EXACT_ROUTES = frozenset(
    {"/graphql", "/healthz", "/readyz", "/metrics", "/exports/contacts.csv", "/webhooks/orders"}
)
PREFIX_ROUTES = (("/unsubscribe/", "/unsubscribe/{token}"), ("/playground/", "/playground/{path}"))
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
# A refusal's body is read for its error codes; refusals are small.
MAX_PROBLEM_BODY = 64 * 1024


def route_of(path: str) -> str:
    if path in EXACT_ROUTES:
        return path
    for prefix, template in PREFIX_ROUTES:
        if path.startswith(prefix):
            return template
    return "other"


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"x-request-id":
            given = value.decode("latin-1")
            if SANE_REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


@dataclass
class OperationRecord:
    """One GraphQL operation of a request: its name (once the document is valid), cost and codes."""

    name: str | None = None
    type: str | None = None
    cost: int = 0
    codes: list[str] = field(default_factory=list)

    def note_answer(self, body: Mapping[str, Any]) -> None:
        self.codes.extend(_codes(body))
        cost = (body.get("extensions") or {}).get("cost") or {}
        actual = cost.get("actualQueryCost") if isinstance(cost, Mapping) else None
        if isinstance(actual, int):
            self.cost = actual


@dataclass
class RequestRecord:
    request_id: str
    kind: str  # "http" or "websocket"
    method: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    tally: CommandTally = field(default_factory=CommandTally)
    operations: list[OperationRecord] = field(default_factory=list)
    status: int | None = None
    # Codes of a refusal answered before any operation ran (401, 413, a bad batch).
    codes: list[str] = field(default_factory=list)
    close_code: int | None = None
    # graph/tracing.Tracing while the request is traced.
    tracing: Any = None

    @property
    def all_codes(self) -> list[str]:
        return [*self.codes, *(c for op in self.operations for c in op.codes)]

    @property
    def cost(self) -> int:
        return sum(op.cost for op in self.operations)

    def operation_label(self) -> str:
        if not self.operations:
            return ""
        if len(self.operations) > 1:
            return "batch"
        return metrics.operation_label(self.operations[0].name)

    def outcome(self) -> str:
        status = self.status or 500
        codes = self.all_codes
        if status >= 500 or "INTERNAL_SERVER_ERROR" in codes:
            return "server_error"
        if status == 429 or "THROTTLED" in codes:
            return "throttled"
        if status >= 400 or codes:
            return "client_error"
        return "ok"


current_record: ContextVar[RequestRecord | None] = ContextVar("current_record", default=None)
current_operation: ContextVar[OperationRecord | None] = ContextVar(
    "current_operation", default=None
)


def _codes(body: Any) -> list[str]:
    if not isinstance(body, Mapping):
        return []
    found = []
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, Mapping) else None
        found.append(code if isinstance(code, str) else "UNKNOWN")
    return found


class RequestLog:
    """The outermost middleware: request id, request line, request metrics (and the HTTP span)."""

    def __init__(self, app: ASGIApp, tracing: Any = None) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        record = RequestRecord(
            request_id=request_id_from(scope.get("headers") or []),
            kind=scope["type"],
            method=scope.get("method", "WS"),
            route=route_of(scope.get("path", "")),
        )
        tokens = (
            current_request_id.set(record.request_id),
            current_record.set(record),
            current_tally.set(record.tally),
        )
        span = (
            self.tracing.request_span(scope, record) if self.tracing else contextlib.nullcontext()
        )
        try:
            with span:
                if record.kind == "http":
                    await self._http(scope, receive, send, record)
                else:
                    await self._websocket(scope, receive, send, record)
        finally:
            self._finish(record, scope)
            current_tally.reset(tokens[2])
            current_record.reset(tokens[1])
            current_request_id.reset(tokens[0])

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        header = (REQUEST_ID_HEADER.encode(), record.request_id.encode())
        problem_body: list[bytes] | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal problem_body
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append(header)
                message = {**message, "headers": headers}
                if record.status >= 400 and not record.operations and _is_json(headers):
                    problem_body = []
            elif message["type"] == "http.response.body" and problem_body is not None:
                if sum(map(len, problem_body)) < MAX_PROBLEM_BODY:
                    problem_body.append(message.get("body", b""))
            await send(message)

        metrics.REQUESTS_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            errors_log.exception("unhandled error in %s %s", record.method, record.route)
            if record.status is not None:
                raise  # the answer has begun: only the connection can end it
            # The client learns nothing of it, and still gets the request id.
            await problem(500, MASKED_MESSAGE, "INTERNAL_SERVER_ERROR")(
                scope, receive, send_with_id
            )
        finally:
            metrics.REQUESTS_IN_FLIGHT.dec()
        if problem_body:
            with contextlib.suppress(orjson.JSONDecodeError):
                record.codes.extend(_codes(orjson.loads(b"".join(problem_body))))

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        header = (REQUEST_ID_HEADER.encode(), record.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "websocket.accept":
                record.status = 101
                message = {**message, "headers": [*(message.get("headers") or []), header]}
            elif message["type"] == "websocket.close":
                record.close_code = message.get("code", 1000)
                if record.status is None:
                    record.status = 403  # refused before it was accepted
            await send(message)

        async def receive_noting_close() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and record.close_code is None:
                record.close_code = message.get("code", 1005)
            return message

        await self.app(scope, receive_noting_close, send_with_id)

    def _finish(self, record: RequestRecord, scope: Scope) -> None:
        seconds = time.perf_counter() - record.started
        if record.kind == "http":
            metrics.observe_request(
                record.route,
                record.operation_label(),
                record.outcome(),
                seconds,
                record.all_codes,
            )
            for op in record.operations:
                metrics.observe_operation(
                    metrics.operation_label(op.name), op.cost, "THROTTLED" in op.codes
                )
        fields = _line_fields(record, scope, seconds)
        level = logging.DEBUG if record.route in QUIET_ROUTES else logging.INFO
        if (record.status or 500) >= 500:
            level = logging.WARNING
        if log.isEnabledFor(level):
            log.log(level, _plain_line(fields), extra={FIELDS: fields})


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"content-type" and b"json" in value for name, value in headers)


def _line_fields(record: RequestRecord, scope: Scope, seconds: float) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": "request",
        "method": record.method,
        "route": record.route,
        "status": record.status or 500,
        "durationMs": round(seconds * 1000, 1),
    }
    auth = (scope.get("state") or {}).get("auth")
    if isinstance(auth, tuple) and len(auth) == 2:
        key, shop = auth
        fields["shop"] = getattr(shop, "id", None)
        fields["keyId"] = str(getattr(key, "id", ""))
    if record.operations:
        fields["operations"] = [op.name or "-" for op in record.operations]
        fields["cost"] = record.cost
    codes = record.all_codes
    if codes:
        fields["errors"] = codes
    if record.close_code is not None:
        fields["closeCode"] = record.close_code
    fields["mongoCommands"] = record.tally.count
    fields["mongoMs"] = round(record.tally.seconds * 1000, 1)
    return fields


def _plain_line(fields: dict[str, Any]) -> str:
    parts = [
        f"{fields['method']} {fields['route']} {fields['status']} {fields['durationMs']}ms",
    ]
    if "operations" in fields:
        parts.append(f"op={','.join(fields['operations'])} cost={fields['cost']}")
    if "shop" in fields:
        parts.append(f"shop={fields['shop']} key={fields['keyId']}")
    if "errors" in fields:
        parts.append(f"errors={','.join(fields['errors'])}")
    if "closeCode" in fields:
        parts.append(f"close={fields['closeCode']}")
    parts.append(f"mongo={fields['mongoCommands']}/{fields['mongoMs']}ms")
    return " ".join(parts)


class ObservedGraphQLOverHTTP(GraphQLOverHTTP):
    """GraphQL over HTTP that notes each operation's name, cost and error codes in the request's record."""

    async def run_operation(self, request: Request, raw: Any, media_type: str) -> Outcome:
        record = current_record.get()
        if record is None:
            return await super().run_operation(request, raw, media_type)
        operation = OperationRecord()
        record.operations.append(operation)
        token = current_operation.set(operation)
        try:
            outcome = await super().run_operation(request, raw, media_type)
        finally:
            current_operation.reset(token)
        operation.note_answer(outcome.body)
        return outcome


class OperationObserver(SchemaExtension):
    """Names the running operation in its request's record once the document is known to be valid,
    and counts the subscriptions that run."""

    def __init__(self) -> None:
        self.subscription = False
        self.operation: OperationRecord | None = None

    def on_operation(self) -> Iterator[None]:
        record = current_record.get()
        tracing = record.tracing if record is not None else None
        span = tracing.operation_span() if tracing is not None else contextlib.nullcontext()
        try:
            with span as current:
                yield
                if tracing is not None and current is not None and self.operation is not None:
                    tracing.name_operation(current, self.operation.name, self.operation.type)
        finally:
            if self.subscription:
                metrics.subscription_closed()

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        operation = current_operation.get()
        if operation is None:
            record = current_record.get()
            if record is not None and record.kind == "websocket":
                # A subscription of a WebSocket: each is an operation of the connection.
                operation = OperationRecord()
                record.operations.append(operation)
        try:
            kind = context.operation_type
        except Exception:  # no single operation: graphql-core answers that
            kind = None
        if operation is not None:
            operation.name = context.operation_name
            operation.type = kind.value if kind is not None else None
            self.operation = operation
        if kind is OperationType.SUBSCRIPTION:
            self.subscription = True
            metrics.subscription_opened()
        yield
