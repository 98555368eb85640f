"""Strawberry's view with our context, error format, key handling and transport answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.websocket_origin import normalize_allowed_origins
from strawberry.types.unset import UNSET

from graph.context import Context
from graph.errors import format_error
from graph.http.auth import authenticate, authenticate_token, bearer_token, unauthorized
from graph.http.playground import playground_page
from graph.http.request_log import ObservedGraphQLOverHTTP
from graph.settings import Settings
from loaders.container import Loaders
from loaders.mongo import Database


@dataclass
class SocketContext(Context):
    """A WebSocket's context: the key arrives later, in the connection_init payload."""

    connection_params: dict[str, Any] = field(default_factory=dict)


def _socket_token(params: dict[str, Any]) -> str | None:
    """The key from `{"authorization": "Bearer <key>"}` (any letter case), or `{"apiKey": "<key>"}`."""
    for name, value in params.items():
        if isinstance(value, str) and name.lower() == "authorization":
            return bearer_token(value)
    key = params.get("apiKey")
    return bearer_token(f"Bearer {key}") if isinstance(key, str) else None


class ContactgraphGraphQL(GraphQL):
    """Strawberry's ASGI view with our context, error format and a faster JSON encoder."""

    def __init__(self, schema: Any, settings: Settings) -> None:
        # Browsers get our own playground (graph/http/playground.py), never a CDN-loaded page.
        super().__init__(schema, graphql_ide=None)
        self.settings = settings
        # Pages on the CORS origins may open subscriptions too.
        self.allowed_origins = normalize_allowed_origins(settings.cors_origins)
        # Each operation's name, cost and error codes go to the request's log line.
        self.http = ObservedGraphQLOverHTTP(schema, self.get_context, settings.max_batch)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        database: Database = request.app.state.database
        if isinstance(request, WebSocket):
            # Filled in by on_ws_connect; nothing executes before it accepts.
            return SocketContext(request, response, database, self.settings, None, None, None)  # type: ignore[arg-type]
        key, shop = request.state.auth
        return Context(
            request=request,
            response=response,
            database=database,
            settings=self.settings,
            key=key,
            shop=shop,
            loaders=Loaders(database, shop.id),
        )

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        """Authenticates a WebSocket by the key in its connection_init payload (close 4403 if bad)."""
        params = getattr(context, "connection_params", None) or {}
        token = _socket_token(params) if isinstance(params, dict) else None
        request = context.request
        found = await authenticate_token(request, token) if token else None
        if found is None:
            raise ConnectionRejectionError(
                {"message": "A valid API key is required in the connection_init payload."}
            )
        request.state.auth = found
        context.key, context.shop = found
        context.loaders = Loaders(context.database, context.shop.id)
        return UNSET  # acknowledged, without a payload

    async def process_result(  # type: ignore[override]
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(e) for e in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    def encode_json(self, data: object) -> str:
        # A str, not bytes: Strawberry sends bytes as binary WebSocket frames,
        # which graphql-transport-ws forbids and every standard client rejects.
        return orjson.dumps(data).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # HTTP is answered by graph/http/graphql_http.py (GraphQL over HTTP,
        # persisted queries, batches); Strawberry serves the WebSocket.
        response = await self.http.answer(Request(scope, receive))
        await response(scope, receive, send)


def _wants_ide(request: Request) -> bool:
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


class GraphQLEndpoint:
    """Authenticates HTTP requests before the GraphQL view sees them (401 as plain HTTP)."""

    def __init__(self, view: ContactgraphGraphQL) -> None:
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            if _wants_ide(request):
                # The page needs no key and builds no GraphQL context.
                await playground_page()(scope, receive, send)
                return
            found = await authenticate(request)
            if found is None:
                await unauthorized()(scope, receive, send)
                return
            request.state.auth = found
        await self.view(scope, receive, send)
