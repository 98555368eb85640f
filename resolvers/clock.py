"""The one place that reads the time."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """UTC now, to the millisecond: what MongoDB stores is what the API returns."""
    moment = dt.datetime.now(dt.UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
