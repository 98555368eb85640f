"""JSON answers outside GraphQL execution: transport problems, auth failures, limits."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(status: int, message: str, code: str) -> JSONBody:
    return JSONBody(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status
    )
