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

    @property
    def shop_id(self) -> str:
        return self.shop.id

    @property
    def currency(self) -> str | None:
        return self.shop.currency


Info = strawberry.Info[Context, None]
