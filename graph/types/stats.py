"""Reporting: contact counts, revenue and trends over a filtered set of contacts."""

from __future__ import annotations

import strawberry

from graph.types.common import Money
from graph.types.label import Label
from loaders.stats import ContactStatsResult


@strawberry.type(description="How many contacts were created in one calendar month (UTC).")
class CountByMonth:
    month: str = strawberry.field(description="YYYY-MM.")
    count: int


@strawberry.type(
    description="Figures over the contacts a filter selects, computed by the database."
)
class ContactStats:
    contacts: int
    customers: int
    leads: int
    subscribed: int = strawberry.field(
        description="Contacts whose marketing consent is SUBSCRIBED."
    )
    repeat_customers: int = strawberry.field(description="Contacts with two or more orders.")
    total_revenue: Money = strawberry.field(
        description="Sum of the contacts' totalSpent (original order totals; refunds not subtracted)."
    )
    average_order_value: Money | None = strawberry.field(
        description="Total revenue divided by the number of orders, to the cent; null without orders."
    )
    new_contacts_by_month: list[CountByMonth] = strawberry.field(
        description="From the first to the last month with new contacts, oldest first; months without any as 0."
    )
    top_labels: list[Label] = strawberry.field(
        description="The most used labels among these contacts, most used first; "
        "contactCount counts these contacts only."
    )

    @classmethod
    def from_result(cls, result: ContactStatsResult, currency: str | None) -> ContactStats:
        return cls(
            contacts=result.contacts,
            customers=result.customers,
            leads=result.leads,
            subscribed=result.subscribed,
            repeat_customers=result.repeat_customers,
            total_revenue=Money.of(result.total_revenue, currency),
            average_order_value=(
                Money.of(result.average_order_value, currency)
                if result.average_order_value is not None
                else None
            ),
            new_contacts_by_month=[
                CountByMonth(month=m, count=n) for m, n in result.new_contacts_by_month
            ],
            top_labels=[
                Label(name=label.name, contact_count=label.contact_count)
                for label in result.top_labels
            ],
        )
