"""The DataLoaders of one request: built fresh in every request's context, never shared."""

from __future__ import annotations

from loaders.contacts import ContactByEmailKeyLoader, ContactByIdLoader
from loaders.mongo import Database


class Loaders:
    def __init__(self, database: Database, shop_id: str) -> None:
        self.contact_by_id = ContactByIdLoader(database, shop_id)
        self.contact_by_email_key = ContactByEmailKeyLoader(database, shop_id)
