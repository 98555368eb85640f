"""What every resolver gets: the request, the database, the caller's key and shop, and loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry

from graph.settings import Settings
from loaders.container import Loaders
from loaders.mongo import Database
from resolvers.shops import ApiKey, Shop


@dataclass
class Context:
    request: Any
    response: Any
    database: Database
    settings: Settings
    key: ApiKey
    shop: Shop
    loaders: Loaders
    # Whether operations spend the key's cost budget (graph/limits.py). The
    # signed order webhook does not: its pseudo-key is one for every shop, and
    # a shop's orders must never wait behind anything.
    throttled: bool = True

    @property
    def shop_id(self) -> str:
        return self.shop.id

    @property
    def currency(self) -> str | None:
        return self.shop.currency


Info = strawberry.Info[Context, None]
