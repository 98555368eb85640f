"""Who is calling: the API key in `Authorization: Bearer <key>`, looked up by its hash."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket

from graph.http.responses import JSONBody, problem
from loaders.mongo import Database
from resolvers.shops import ApiKey, Shop, find_key

MAX_KEY_LENGTH = 200


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_LENGTH:
        return None
    return token


class KeyCache:
    """Remembers recent key look-ups for a few seconds.

    Without it every request would cost a key and a shop read before its
    own work; a revoked key stops working within `ttl` seconds.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, tuple[ApiKey, Shop] | None]] = {}

    async def lookup(self, database: Database, raw_key: str) -> tuple[ApiKey, Shop] | None:
        now = time.monotonic()
        hit = self._entries.get(raw_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await find_key(database, raw_key)
        if self.ttl > 0:
            if len(self._entries) > 10_000:
                self._entries.clear()
            # Unknown keys are remembered too, so a flood of bad keys costs no reads.
            self._entries[raw_key] = (now + self.ttl, found)
        return found

    def forget(self) -> None:
        self._entries.clear()


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
