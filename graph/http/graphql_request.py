"""Reading a GraphQL-over-HTTP request: a GET's parameters or a POST's JSON body.

A POST body is one operation (an object) or a batch (an array of them). Each
operation's parameters are checked here; a bad one is a `RequestProblem`
(HTTP 4xx with a code), and nothing runs for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

PARAMETERS = ("query", "operationName", "variables", "extensions")


class RequestProblem(Exception):
    """The request is not a well-formed GraphQL-over-HTTP request."""

    def __init__(self, status: int, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class OperationRequest:
    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None


def _is_json_media_type(content_type: str | None) -> bool:
    """`application/json`, in UTF-8 (the default) when a charset is named."""
    if not content_type:
        return False
    media_type, *params = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


async def read_payload(request: Request) -> Any:
    """A GET's parameters as a dict, or a POST's decoded JSON body (an object or an array)."""
    if request.method == "GET":
        params = request.query_params
        return {name: params[name] for name in PARAMETERS if name in params}
    if not _is_json_media_type(request.headers.get("content-type")):
        raise RequestProblem(
            415,
            "Send the operation as a JSON body with Content-Type: application/json.",
            "UNSUPPORTED_MEDIA_TYPE",
        )
    body = await request.body()
    if not body.strip():
        raise RequestProblem(400, "The request body is empty; send a JSON object with a query.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestProblem(400, "The request body is not valid JSON.") from None
    if not isinstance(payload, dict | list):
        raise RequestProblem(
            400, "The request body must be a JSON object (or an array of them, for a batch)."
        )
    return payload


def _get_json_parameter(name: str, value: Any) -> Any:
    """GET carries `variables` and `extensions` as JSON text."""
    if not isinstance(value, str):
        return value
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise RequestProblem(400, f"The {name} parameter is not valid JSON.") from None


def operation_request(raw: Any, *, from_query_string: bool = False) -> OperationRequest:
    """One operation's parameters, each of the type GraphQL over HTTP prescribes."""
    if not isinstance(raw, dict):
        raise RequestProblem(400, "Each operation must be a JSON object with a query.")
    query = raw.get("query")
    operation_name = raw.get("operationName")
    variables = raw.get("variables")
    extensions = raw.get("extensions")
    if from_query_string:
        variables = _get_json_parameter("variables", variables)
        extensions = _get_json_parameter("extensions", extensions)
        # An empty parameter in a URL means none was given.
        query = query or None
        operation_name = operation_name or None
    if query is not None and not isinstance(query, str):
        raise RequestProblem(400, "`query` must be a string holding a GraphQL document.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestProblem(400, "`operationName` must be a string or null.")
    if variables is not None and not isinstance(variables, dict):
        raise RequestProblem(400, "`variables` must be an object (a map of names to values).")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestProblem(400, "`extensions` must be an object.")
    return OperationRequest(query, operation_name, variables, extensions)
