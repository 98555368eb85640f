"""GraphQL over HTTP: one operation or a batch, persisted queries, media types and status codes.

Every operation, alone or in a batch, runs the same way: its parameters are
checked, a persisted query is looked up or verified, then it executes with a
context of its own (its own loaders), under the schema's limits and the
key's permissions. One operation's failure never stops the others in a batch.

Status codes follow the media type the client accepts
(graph/http/negotiation.py): with `application/json` every GraphQL result is
200, as it always was; with `application/graphql-response+json` a request
that fails before execution (parse, validation, variable coercion, a refused
operation) has no `data` entry and a 4xx status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from graph.errors import format_error
from graph.http.graphql_request import RequestProblem, operation_request, read_payload
from graph.http.negotiation import GRAPHQL_RESPONSE_JSON, JSON, response_media_type
from graph.http.persisted_queries import (
    PersistedQueries,
    PersistedQueryNotFound,
    PersistedQueryProblem,
    requested_hash,
)
from graph.http.responses import JSONBody

# GET may only read: a mutation over GET could be repeated by any cache or crawler.
ALLOWED_OPERATIONS = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}
# Status of a request error (no `data`) under application/graphql-response+json, by code.
REQUEST_ERROR_STATUS = {"FORBIDDEN": 403, "INTERNAL_SERVER_ERROR": 500}

ContextFactory = Callable[[Request, Response], Awaitable[Any]]


@dataclass
class Outcome:
    """What one operation answers: its body, and the status it would have alone."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def _problem(status: int, message: str, code: str) -> Outcome:
    return Outcome({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


class GraphQLOverHTTP:
    """Answers the HTTP requests to /graphql (after authentication)."""

    def __init__(
        self,
        schema: BaseSchema,
        get_context: ContextFactory,
        max_batch: int,
        persisted_queries: PersistedQueries | None = None,
    ) -> None:
        self.schema = schema
        self.get_context = get_context
        self.max_batch = max_batch
        self.persisted_queries = persisted_queries or PersistedQueries()

    async def answer(self, request: Request) -> Response:
        if request.method not in ALLOWED_OPERATIONS:
            # HEAD, which routing lets through with GET: there is no GraphQL answer without a body.
            outcome = _problem(405, "GraphQL is served over GET and POST.", "METHOD_NOT_ALLOWED")
            outcome.headers["Allow"] = "GET, POST"
            return self._respond(outcome, JSON)
        media_type = response_media_type(request.headers.get("accept"))
        if media_type is None:
            outcome = _problem(
                406,
                f"GraphQL answers in {GRAPHQL_RESPONSE_JSON} or {JSON}; the Accept header allows neither.",
                "NOT_ACCEPTABLE",
            )
            return self._respond(outcome, JSON)
        try:
            payload = await read_payload(request)
        except RequestProblem as problem:
            return self._respond(
                _problem(problem.status, problem.message, problem.code), media_type
            )
        if isinstance(payload, list):
            return await self._answer_batch(request, payload, media_type)
        outcome = await self.run_operation(request, payload, media_type)
        return self._respond(outcome, media_type)

    async def _answer_batch(self, request: Request, batch: list[Any], media_type: str) -> Response:
        if not batch:
            outcome = _problem(
                400, "The batch is empty; send at least one operation.", "BATCH_EMPTY"
            )
            return self._respond(outcome, media_type)
        if len(batch) > self.max_batch:
            outcome = _problem(
                400,
                f"A batch may hold at most {self.max_batch} operations; this one holds {len(batch)}.",
                "BATCH_TOO_LARGE",
            )
            return self._respond(outcome, media_type)
        outcomes = await asyncio.gather(
            *(self.run_operation(request, raw, media_type) for raw in batch)
        )
        # Each entry carries its own errors; the batch as a whole succeeded.
        headers: dict[str, str] = {}
        for outcome in outcomes:
            headers.update(outcome.headers)
        return JSONBody(
            [outcome.body for outcome in outcomes], headers=headers or None, media_type=media_type
        )

    async def run_operation(self, request: Request, raw: Any, media_type: str) -> Outcome:
        method = request.method
        shop_id = request.state.auth[1].id
        try:
            operation = operation_request(raw, from_query_string=method == "GET")
            query = operation.query
            digest = requested_hash(operation.extensions)
            if digest is not None:
                query = self.persisted_queries.resolve(shop_id, query, digest)
            elif not query:
                raise RequestProblem(
                    400,
                    "No GraphQL query found: send `query` "
                    "(or a known hash in extensions.persistedQuery).",
                )
        except PersistedQueryNotFound as missing:
            # A request error like any other: application/json answers 200, so
            # Apollo's link reads it as a GraphQL error and resends the query.
            error = {"message": missing.message, "extensions": {"code": missing.code}}
            return self._request_error([error], media_type)
        except (PersistedQueryProblem, RequestProblem) as problem:
            return _problem(problem.status, problem.message, problem.code)

        # Where resolvers may set headers or a status; both unset until one does.
        sub_response = Response()
        sub_response.status_code = None  # type: ignore[assignment]
        del sub_response.headers["content-length"]
        context = await self.get_context(request, sub_response)
        try:
            result = await self.schema.execute(
                query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
                allowed_operation_types=ALLOWED_OPERATIONS[method],
                operation_extensions=operation.extensions,
            )
        except InvalidOperationTypeError as err:
            return _refused_operation_type(err.operation_type, method)
        except CannotGetOperationTypeError as err:
            name = err.operation_name
            message = (
                f'The document has no operation named "{name}".'
                if name is not None
                else "The document holds several operations (or none): "
                "name the one to run in operationName."
            )
            return _problem(400, message, "BAD_REQUEST")

        if digest is not None and not isinstance(result, PreExecutionError):
            # Remembered once it parsed and validated: junk never takes a place.
            self.persisted_queries.remember(shop_id, digest, query)
        errors = result.errors
        if errors and result.data is None and all(e.path is None for e in errors):
            # Nothing executed: parse, validation, variable coercion or a refused operation.
            return self._request_error([format_error(e) for e in errors], media_type, result)
        body: dict[str, Any] = {"data": result.data}
        if errors:
            body["errors"] = [format_error(e) for e in errors]
        if result.extensions:
            body["extensions"] = result.extensions
        outcome = Outcome(body, sub_response.status_code or 200)
        outcome.headers.update(sub_response.headers)
        return outcome

    @staticmethod
    def _request_error(
        errors: list[dict[str, Any]], media_type: str, result: Any = None
    ) -> Outcome:
        body: dict[str, Any] = {}
        status = 200
        if media_type == GRAPHQL_RESPONSE_JSON:
            code = errors[0].get("extensions", {}).get("code")
            status = REQUEST_ERROR_STATUS.get(code, 400)
        else:
            # application/json keeps its historical shape: `"data": null`, 200.
            body["data"] = None
        body["errors"] = errors
        if result is not None and result.extensions:
            body["extensions"] = result.extensions
        retry_after = errors[0].get("extensions", {}).get("retryAfter")
        if errors[0].get("extensions", {}).get("code") == "THROTTLED" and retry_after:
            # Over the key's cost budget (graph/limits.py), whatever the media type.
            return Outcome(body, 429, {"Retry-After": str(retry_after)})
        return Outcome(body, status)

    @staticmethod
    def _respond(outcome: Outcome, media_type: str) -> Response:
        return JSONBody(
            outcome.body,
            status_code=outcome.status,
            headers=outcome.headers or None,
            media_type=media_type,
        )


def _refused_operation_type(operation_type: OperationType, method: str) -> Outcome:
    if operation_type == OperationType.SUBSCRIPTION:
        return _problem(
            400,
            "Subscriptions run over WebSocket at /graphql (graphql-transport-ws), not over HTTP.",
            "BAD_REQUEST",
        )
    # A mutation over GET: 405, so no cache or crawler ever repeats one.
    outcome = _problem(405, "Mutations must be sent with POST.", "METHOD_NOT_ALLOWED")
    outcome.headers["Allow"] = "POST"
    return outcome
