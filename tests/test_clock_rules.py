"""The time the API stores and returns: UTC, to the millisecond, as MongoDB keeps it."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from resolvers import clock


def _frozen_at(moment: dt.datetime) -> SimpleNamespace:
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            assert tz is dt.UTC
            return moment

    return SimpleNamespace(datetime=Frozen, UTC=dt.UTC)


@pytest.mark.parametrize(
    ("microsecond", "stored"),
    [(0, 0), (999, 0), (1000, 1000), (123987, 123000), (999999, 999000)],
)
def test_now_drops_the_microseconds_a_millisecond_cannot_hold(
    monkeypatch: pytest.MonkeyPatch, microsecond: int, stored: int
) -> None:
    moment = dt.datetime(2026, 3, 1, 12, 30, 45, microsecond, tzinfo=dt.UTC)
    monkeypatch.setattr(clock, "dt", _frozen_at(moment))

    assert clock.now() == moment.replace(microsecond=stored)


def test_now_is_the_present_in_utc() -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=1)

    moment = clock.now()

    assert moment.tzinfo is dt.UTC
    assert before <= moment <= dt.datetime.now(dt.UTC)
