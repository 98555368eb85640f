"""The DataLoaders of one request: built fresh in every request's context, never shared."""

from __future__ import annotations

from loaders.activity import ActivityEntryByIdLoader, ActivityPageByQueryLoader
from loaders.contacts import ContactByEmailKeyLoader, ContactByIdLoader
from loaders.mongo import Database
from loaders.orders import OrderByIdLoader, OrderCountByContactIdLoader, OrdersByContactIdLoader
from loaders.segments import ContactCountByMatchLoader
from loaders.subscription_contracts import (
    SubscriptionContractByIdLoader,
    SubscriptionContractCountByContactIdLoader,
    SubscriptionContractsByContactIdLoader,
)


class Loaders:
    def __init__(self, database: Database, shop_id: str) -> None:
        self.contact_by_id = ContactByIdLoader(database, shop_id)
        self.contact_by_email_key = ContactByEmailKeyLoader(database, shop_id)
        self.contact_count_by_match = ContactCountByMatchLoader(database)
        self.order_by_id = OrderByIdLoader(database, shop_id)
        self.orders_by_contact_id = OrdersByContactIdLoader(database, shop_id)
        self.order_count_by_contact_id = OrderCountByContactIdLoader(database, shop_id)
        self.activity_page = ActivityPageByQueryLoader(database, shop_id)
        self.activity_entry_by_id = ActivityEntryByIdLoader(database, shop_id)
        self.subscription_contract_by_id = SubscriptionContractByIdLoader(database, shop_id)
        self.subscription_contracts_by_contact_id = SubscriptionContractsByContactIdLoader(
            database, shop_id
        )
        self.subscription_contract_count_by_contact_id = SubscriptionContractCountByContactIdLoader(
            database, shop_id
        )
