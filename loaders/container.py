"""The DataLoaders of one request: built fresh in every request's context, never shared."""

from __future__ import annotations

from loaders.activity import ActivityEntryByIdLoader, ActivityPageByQueryLoader
from loaders.contact_records import (
    CountByContactIdLoader,
    PagesByContactIdLoader,
    RecordByIdLoader,
)
from loaders.contacts import ContactByEmailKeyLoader, ContactByIdLoader
from loaders.mongo import Database
from loaders.orders import ORDERS
from loaders.segments import ContactCountByMatchLoader
from loaders.subscription_contracts import CONTRACTS


class Loaders:
    def __init__(self, database: Database, shop_id: str) -> None:
        self.contact_by_id = ContactByIdLoader(database, shop_id)
        self.contact_by_email_key = ContactByEmailKeyLoader(database, shop_id)
        self.contact_count_by_match = ContactCountByMatchLoader(database)
        self.order_by_id = RecordByIdLoader(database, shop_id, ORDERS)
        self.orders_by_contact_id = PagesByContactIdLoader(database, shop_id, ORDERS)
        self.order_count_by_contact_id = CountByContactIdLoader(database, shop_id, ORDERS)
        self.activity_page = ActivityPageByQueryLoader(database, shop_id)
        self.activity_entry_by_id = ActivityEntryByIdLoader(database, shop_id)
        self.subscription_contract_by_id = RecordByIdLoader(database, shop_id, CONTRACTS)
        self.subscription_contracts_by_contact_id = PagesByContactIdLoader(
            database, shop_id, CONTRACTS
        )
        self.subscription_contract_count_by_contact_id = CountByContactIdLoader(
            database, shop_id, CONTRACTS
        )
