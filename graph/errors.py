"""How refusals and failures reach a client.

Expected problems with input are `userErrors` in the payload (see
`refusal_errors`); problems with the request itself are GraphQL errors with
`extensions.code`; anything unexpected is logged in full and masked.
"""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from graph.types.common import UserError
from loaders.keyset import BadCursor, BadPageSize
from resolvers.errors import Refused

log = logging.getLogger("contactgraph")

MASKED_MESSAGE = "Unexpected error; it has been logged."


class ClientError(GraphQLError):
    """A request-level problem the client can fix, with a machine-readable code."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": code, **extensions})


def bad_input(message: str) -> ClientError:
    return ClientError(message, "BAD_USER_INPUT")


def forbidden(message: str) -> ClientError:
    return ClientError(message, "FORBIDDEN")


def refusal_errors(refusal: Refused) -> list[UserError]:
    return [UserError.from_problem(p) for p in refusal.problems]


def _code_for(error: GraphQLError) -> tuple[str, str]:
    """(code, message) for an error that carries no code of its own."""
    original = error.original_error
    if isinstance(original, BadCursor | BadPageSize):
        return "BAD_USER_INPUT", str(original)
    if is_unexpected(error):
        return "INTERNAL_SERVER_ERROR", MASKED_MESSAGE
    message = error.message
    if message == "Validation aborted.":
        # graphql-core's own guard against documents too costly to validate
        # (e.g. thousands of overlapping fields): a limit, like tokens and depth.
        return "QUERY_TOO_COMPLEX", "The query is too complex to check; ask for fewer fields."
    if message.startswith("Syntax Error"):
        if "tokens" in message:
            return "QUERY_TOO_COMPLEX", message
        return "GRAPHQL_PARSE_FAILED", message
    if message.startswith("Variable '$") or "got invalid value" in message:
        return "BAD_USER_INPUT", message
    return "GRAPHQL_VALIDATION_FAILED", message


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as the client sees it: always with a code, never with internals."""
    extensions = dict(error.extensions or {})
    message = error.message
    if "code" not in extensions:
        code, message = _code_for(error)
        extensions["code"] = code
    out: dict[str, Any] = {"message": message, "extensions": extensions}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = error.path
    return out


def is_unexpected(error: GraphQLError) -> bool:
    """A failure inside a resolver that no rule foresaw.

    Errors without a path come from parsing, validation or variable
    coercion (our scalars' messages included): they describe the request.
    """
    original = error.original_error
    return (
        error.path is not None
        and original is not None
        and not isinstance(original, GraphQLError | BadCursor | BadPageSize)
    )
