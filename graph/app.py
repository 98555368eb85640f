"""The Starlette application: routes, limits, auth, and the MongoDB client's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse

from graph.auth import KeyCache, bearer_token
from graph.context import Context
from graph.errors import format_error
from graph.schema import build_schema
from graph.settings import Settings
from loaders.container import Loaders
from loaders.mongo import Database, connect, ensure_indexes

log = logging.getLogger("contactgraph")


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(status: int, message: str, code: str) -> JSONBody:
    return JSONBody({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


class BodyLimit:
    """Refuses request bodies over the limit before anything reads them whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, f"Request body is larger than {self.max_bytes} bytes.", "PAYLOAD_TOO_LARGE")
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class ContactgraphGraphQL(GraphQL):
    """Strawberry's ASGI view with our context, error format and a faster JSON encoder."""

    def __init__(self, schema: Any, settings: Settings) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.settings = settings

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:  # type: ignore[override]
        key, shop = request.state.auth
        database: Database = request.app.state.database
        return Context(
            request=request,
            response=response,
            database=database,
            settings=self.settings,
            key=key,
            shop=shop,
            loaders=Loaders(database, shop.id),
        )

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:  # type: ignore[override]
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(e) for e in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)


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
            if not _wants_ide(request):
                found = await authenticate(request)
                if found is None:
                    await unauthorized()(scope, receive, send)
                    return
                request.state.auth = found
        await self.view(scope, receive, send)


async def authenticate(request: Request) -> Any:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        return None
    cache: KeyCache = request.app.state.key_cache
    return await cache.lookup(request.app.state.database, token)


def unauthorized() -> JSONBody:
    response = problem(401, "A valid API key is required: Authorization: Bearer <key>.", "UNAUTHENTICATED")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def healthz(request: Request) -> Response:
    database: Database = request.app.state.database
    try:
        await asyncio.wait_for(database.db.command("ping"), timeout=2)
    except Exception as err:  # any failure to answer means "not healthy"
        log.warning("health check failed: %s", err)
        return JSONResponse({"status": "unavailable", "reason": "MongoDB is not reachable."}, status_code=503)
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings) -> Starlette:
    if not settings.mongodb_uri:
        raise ValueError("create_app needs settings.mongodb_uri (the CLI starts the embedded server)")
    schema = build_schema(settings)
    view = ContactgraphGraphQL(schema, settings)
    endpoint = GraphQLEndpoint(view)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = connect(settings.mongodb_uri or "", serverSelectionTimeoutMS=5000)
        database = Database(client[settings.database])
        await ensure_indexes(database)
        app.state.database = database
        app.state.settings = settings
        app.state.key_cache = KeyCache(settings.key_cache_seconds)
        try:
            yield
        finally:
            await client.close()

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoint),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> Starlette:
    """The app as uvicorn's workers build it: settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings.from_env())
