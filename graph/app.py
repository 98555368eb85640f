"""The Starlette application: routes, limits, auth, and the MongoDB client's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from cross_web import HTTPException  # what Strawberry's views raise for transport problems
from graphql import ExecutionResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types.unset import UNSET

from graph.auth import KeyCache, bearer_token
from graph.context import Context
from graph.csv_export import export_contacts
from graph.errors import MASKED_MESSAGE, format_error
from graph.schema import build_schema
from graph.settings import Settings
from graph.unsubscribe import unsubscribe_endpoint
from graph.webhooks import order_webhook
from loaders.activity_feed import ActivityFeed
from loaders.container import Loaders
from loaders.mongo import Database, connect, ensure_indexes
from resolvers.outbox import Outbox, RetryPolicy, SmtpServer

log = logging.getLogger("contactgraph")


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(status: int, message: str, code: str) -> JSONBody:
    return JSONBody(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status
    )


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
        response = problem(
            413, f"Request body is larger than {self.max_bytes} bytes.", "PAYLOAD_TOO_LARGE"
        )
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    pass


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
        super().__init__(schema, graphql_ide="graphiql")
        self.settings = settings

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

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # Strawberry answers transport problems (a body that is not JSON, no
        # query, a mutation over GET) in plain text; clients get JSON with a code.
        request = Request(scope, receive)
        try:
            response: Response = await self.run(request)
        except HTTPException as err:
            response = transport_problem(request, err.status_code, err.reason)
        await response(scope, receive, send)


def transport_problem(request: Request, status: int, reason: str) -> JSONBody:
    get_mutation = reason.lower().startswith("mutations are not allowed")
    if request.method == "GET" and status == 400 and get_mutation:
        # GraphQL over HTTP: a mutation over GET is 405, so no cache or crawler ever repeats one.
        response = problem(405, "Mutations must be sent with POST.", "METHOD_NOT_ALLOWED")
        response.headers["Allow"] = "POST"
        return response
    return problem(status, reason, "BAD_REQUEST" if status == 400 else f"HTTP_{status}")


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
    return await authenticate_token(request, token)


async def authenticate_token(request: Request | WebSocket, token: str) -> Any:
    cache: KeyCache = request.app.state.key_cache
    return await cache.lookup(request.app.state.database, token)


def unauthorized() -> JSONBody:
    response = problem(
        401, "A valid API key is required: Authorization: Bearer <key>.", "UNAUTHENTICATED"
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def internal_error(request: Request, exc: Exception) -> Response:
    # Outside GraphQL execution (e.g. the key look-up while MongoDB is away).
    # Starlette re-raises after this answer so the server logs the traceback;
    # the client learns nothing of it.
    return problem(500, MASKED_MESSAGE, "INTERNAL_SERVER_ERROR")


async def healthz(request: Request) -> Response:
    database: Database = request.app.state.database
    try:
        await asyncio.wait_for(database.db.command("ping"), timeout=2)
    except Exception as err:  # any failure to answer means "not healthy"
        log.warning("health check failed: %s", err)
        return JSONResponse(
            {"status": "unavailable", "reason": "MongoDB is not reachable."}, status_code=503
        )
    return JSONResponse({"status": "ok"})


def _outbox(database: Database, settings: Settings) -> Outbox:
    policy = RetryPolicy(
        first_delay=settings.outbox_retry_first_seconds,
        max_delay=settings.outbox_retry_max_seconds,
        give_up_after=settings.outbox_give_up_hours * 3600,
    )
    server = SmtpServer.from_url(settings.smtp_url or "")
    return Outbox(database, server, settings.mail_from, policy, settings.outbox_poll_seconds)


def create_app(settings: Settings) -> Starlette:
    if not settings.mongodb_uri:
        raise ValueError(
            "create_app needs settings.mongodb_uri (the CLI starts the embedded server)"
        )
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
        app.state.activity_feed = ActivityFeed(database)
        # Without SMTP_URL messages stay QUEUED: nothing delivers them.
        app.state.outbox = _outbox(database, settings) if settings.smtp_url else None
        if app.state.outbox is not None:
            app.state.outbox.start()
        try:
            yield
        finally:
            if app.state.outbox is not None:
                await app.state.outbox.stop()
            await app.state.activity_feed.close()
            await client.close()

    routes = [
        Route("/graphql", endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", endpoint),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_endpoint, methods=["GET", "POST"]),
        Route("/exports/contacts.csv", export_contacts, methods=["GET"]),
        Route("/webhooks/orders", order_webhook(schema, settings), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={Exception: internal_error}
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> Starlette:
    """The app as uvicorn's workers build it: settings from the environment."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(Settings.from_env())
