"""What the rules refuse. The graph layer turns these into `userErrors` in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Field = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One refusal: where (`field`, a path into the input), why, and the ErrorCode name."""

    field: Field | None
    message: str
    code: str


class Refused(Exception):
    """A mutation refused as a whole; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


def refuse(field: Field | None, message: str, code: str) -> Refused:
    return Refused([Problem(field, message, code)])


def not_found(field: Field | None, what: str = "Contact") -> Refused:
    return refuse(field, f"{what} not found.", "NOT_FOUND")


class RateLimited(Exception):
    """Too many calls of one kind from one client; a GraphQL error, not a userError."""
