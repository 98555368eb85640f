"""Cross-origin access for browser apps on the origins in CONTACTGRAPH_CORS_ORIGINS.

Keys are bearer tokens sent by the app itself, never cookies, so no
credentials mode is needed (or offered). Only the endpoints a browser app
calls answer other origins; a preflight from an origin not listed gets no
Access-Control-Allow-Origin, so the browser stops the request.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# The endpoints a browser app on another origin calls.
BROWSER_PATHS = frozenset({"/graphql", "/exports/contacts.csv"})
ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Request-Id",
    # Sent by Apollo Client (CSRF prevention, client awareness).
    "Apollo-Require-Preflight",
    "Apollographql-Client-Name",
    "Apollographql-Client-Version",
)
# Readable by the app: the CSV's file name, when to retry, and the request's
# id (to quote when reporting a problem, and to find its log lines).
EXPOSED_HEADERS = ("Content-Disposition", "Retry-After", "X-Request-Id")
PREFLIGHT_MAX_AGE_SECONDS = 600


class BrowserOrigins:
    """CORS for BROWSER_PATHS; every other path is passed through untouched."""

    def __init__(self, app: ASGIApp, origins: Collection[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=tuple(origins),
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) in BROWSER_PATHS:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
