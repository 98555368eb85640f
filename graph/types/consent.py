"""Marketing consent: the current state and its append-only history."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from graph.types.scalars import DateTime


@strawberry.enum(description="Whether a contact may receive marketing e-mail.")
class MarketingState(Enum):
    NOT_SUBSCRIBED = strawberry.enum_value("NOT_SUBSCRIBED", description="Never asked.")
    PENDING = strawberry.enum_value(
        "PENDING", description="Asked, waiting for confirmation (double opt-in)."
    )
    SUBSCRIBED = "SUBSCRIBED"
    UNSUBSCRIBED = "UNSUBSCRIBED"


@strawberry.enum(description="How the consent was given.")
class OptInLevel(Enum):
    SINGLE_OPT_IN = "SINGLE_OPT_IN"
    CONFIRMED_OPT_IN = "CONFIRMED_OPT_IN"
    UNKNOWN = "UNKNOWN"


@strawberry.enum(description="Where a consent event came from.")
class ConsentSource(Enum):
    ADMIN = "ADMIN"
    CHECKOUT = "CHECKOUT"
    CONTACT_FORM = "CONTACT_FORM"
    API = "API"
    IMPORT = "IMPORT"
    UNSUBSCRIBE_LINK = "UNSUBSCRIBE_LINK"


def _enum(cls: type[Enum], value: Any) -> Any:
    return cls(value) if value is not None else None


@strawberry.type(description="One change of marketing consent, as it was recorded.")
class ConsentEvent:
    state: MarketingState
    opt_in_level: OptInLevel | None
    at: DateTime = strawberry.field(description="When the person gave or withdrew consent.")
    source: ConsentSource
    actor: str | None = strawberry.field(
        description="Who recorded it (API key name) when a person did."
    )
    evidence: str | None = strawberry.field(
        description="The wording the person agreed to, the form URL, or the order id."
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ConsentEvent:
        return cls(
            state=MarketingState(doc["state"]),
            opt_in_level=_enum(OptInLevel, doc.get("optInLevel")),
            at=doc["at"],
            source=ConsentSource(doc["source"]),
            actor=doc.get("actor"),
            evidence=doc.get("evidence"),
        )


@strawberry.type(
    description="A contact's marketing consent: the state of the newest event, and every event."
)
class Consent:
    state: MarketingState
    opt_in_level: OptInLevel | None
    updated_at: DateTime | None = strawberry.field(
        description="The time of the event that set the state."
    )
    source: ConsentSource | None
    history: list[ConsentEvent] = strawberry.field(description="Oldest first; append-only.")

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Consent:
        doc = doc or {}
        return cls(
            state=MarketingState(doc.get("state") or "NOT_SUBSCRIBED"),
            opt_in_level=_enum(OptInLevel, doc.get("optInLevel")),
            updated_at=doc.get("at"),
            source=_enum(ConsentSource, doc.get("source")),
            history=[ConsentEvent.from_doc(e) for e in doc.get("history", [])],
        )
