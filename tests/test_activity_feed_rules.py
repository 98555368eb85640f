"""What the activity feed delivers, and how its one change stream behaves when it breaks.

The subscription tests watch the feed end to end over WebSocket; these call
it directly. The change stream is a scripted stand-in (each step a change,
a resume token or a failure) so that every reopening, resume point, pause
and ending can be checked exactly; the contacts are read from the real
database, and the server-side filter runs on the real server.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect, OperationFailure

from loaders import activity_feed
from loaders.activity_feed import (
    _END,
    GRACE,
    STREAM_PIPELINE,
    ActivityFeed,
    _Listener,
    _written_entries,
)
from loaders.observability import CHANGE_STREAM_RESTARTS

SHOP = "acme"
OTHER_SHOP = "globex"
T1 = dt.datetime(2126, 3, 1, 10, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2126, 3, 1, 11, 0, tzinfo=dt.UTC)
WAIT = 5.0
REQUEST = contextvars.ContextVar("request", default="none")


def entry(at: dt.datetime = T1, oid: ObjectId | None = None, **rest: Any) -> dict[str, Any]:
    return {"_id": oid or ObjectId(), "kind": "NOTE", "at": at, **rest}


def drained(listener: _Listener) -> list[Any]:
    """What is waiting in a listener's queue, `_END` as the string "END"."""
    out: list[Any] = []
    while not listener.queue.empty():
        item = listener.queue.get_nowait()
        out.append("END" if item is _END else item)
    return out


def restarts(reason: str) -> float:
    return CHANGE_STREAM_RESTARTS.labels(reason)._value.get()


# --- the entries an event shows as written ---------------------------------


def test_an_appended_entry_is_written() -> None:
    new = entry()
    change = {
        "operationType": "update",
        "updateDescription": {"updatedFields": {"activity.3": new}},
    }
    assert _written_entries(change) == [new]


def test_a_whole_log_written_gives_all_its_entries_oldest_first() -> None:
    late, early = entry(T2), entry(T1)
    change = {
        "operationType": "update",
        "updateDescription": {"updatedFields": {"activity": [late, early]}},
    }
    assert _written_entries(change) == [early, late]


def test_entries_written_at_the_same_moment_come_in_id_order() -> None:
    first, second, third = ObjectId(), ObjectId(), ObjectId()
    # Array order, time order and id order all differ.
    log = [entry(T2, first), entry(T1, third), entry(T1, second)]
    change = {"operationType": "update", "updateDescription": {"updatedFields": {"activity": log}}}
    assert [e["_id"] for e in _written_entries(change)] == [second, third, first]


def test_positions_and_the_whole_log_of_one_update_are_all_written() -> None:
    a, b, c = entry(T1), entry(T2), entry(T1)
    change = {
        "operationType": "update",
        "updateDescription": {
            "updatedFields": {"activity.7": b, "activity": [a], "activity.12": c}
        },
    }
    assert {e["_id"] for e in _written_entries(change)} == {a["_id"], b["_id"], c["_id"]}


def test_a_replaced_contact_shows_its_whole_log() -> None:
    late, early = entry(T2), entry(T1)
    change = {
        "operationType": "replace",
        "fullDocument": {"activity": [late, early]},
        # A replacement's update description (there is none) is not read.
        "updateDescription": {"updatedFields": {"activity.0": entry()}},
    }
    assert _written_entries(change) == [early, late]


@pytest.mark.parametrize(
    "change",
    [
        {"operationType": "replace"},
        {"operationType": "replace", "fullDocument": None},
        {"operationType": "replace", "fullDocument": {"email": "a@example.com"}},
        {"operationType": "replace", "fullDocument": {"activity": None}},
        {"operationType": "update"},
        {"operationType": "update", "updateDescription": None},
        {"operationType": "update", "updateDescription": {}},
        {"operationType": "update", "updateDescription": {"updatedFields": None}},
        {},
    ],
)
def test_an_event_without_a_log_writes_nothing(change: dict[str, Any]) -> None:
    assert _written_entries(change) == []


@pytest.mark.parametrize(
    "fields",
    [
        # A note edited, the counters beside the log, other fields.
        {"activity.3.text": "edited"},
        {"activity.3.text": entry()},
        {"activityCount": 4},
        {"xactivity.3": entry()},
        {"activity.": entry()},
        {"activity.x": entry()},
        {"activity.3x": entry()},
        {"email": "a@example.com"},
        # A log position that is not an entry, a whole log that is not a list.
        {"activity.3": "text"},
        {"activity.3": [entry()]},
        {"activity": entry()},
        {"activity": "text"},
        {"Activity": [entry()]},
    ],
)
def test_fields_that_hold_no_entry_write_nothing(fields: dict[str, Any]) -> None:
    change = {"operationType": "update", "updateDescription": {"updatedFields": fields}}
    assert _written_entries(change) == []


def test_only_entries_with_an_object_id_and_a_time_count() -> None:
    good = entry(T2)
    log = [
        "text",
        None,
        {"_id": "64b7f0000000000000000000", "at": T1},
        {"_id": ObjectId(), "kind": "NOTE"},
        {"at": T1},
        good,
    ]
    change = {"operationType": "update", "updateDescription": {"updatedFields": {"activity": log}}}
    assert _written_entries(change) == [good]
    change = {"operationType": "replace", "fullDocument": {"activity": log}}
    assert _written_entries(change) == [good]


# --- one subscriber ---------------------------------------------------------


def listener(since: dt.datetime | None = None, size: int = 100) -> _Listener:
    return _Listener(
        ObjectId(), since or dt.datetime(2000, 1, 1, tzinfo=dt.UTC), asyncio.Queue(size)
    )


async def test_an_entry_is_delivered_once_however_often_it_is_written() -> None:
    one = listener()
    a, b = entry(), entry()
    one.offer([a])
    one.offer([a, b])
    one.offer([b, a])
    assert drained(one) == [a, b]


async def test_an_entry_already_in_the_log_is_skipped_and_the_next_one_still_delivered() -> None:
    one = listener()
    old, new = entry(), entry()
    one.seen[old["_id"]] = None
    one.offer([old, new])
    assert drained(one) == [new]


async def test_entries_made_before_the_subscription_are_history_and_the_boundary_is_news() -> None:
    since = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    one = listener(since)
    at_start = entry(oid=ObjectId.from_datetime(since))
    before = entry(oid=ObjectId.from_datetime(since - dt.timedelta(seconds=1)))
    after = entry(oid=ObjectId.from_datetime(since + dt.timedelta(seconds=1)))
    one.offer([before, at_start, after])
    assert drained(one) == [at_start, after]


async def test_the_oldest_remembered_entries_are_forgotten_first(monkeypatch) -> None:
    monkeypatch.setattr(activity_feed, "SEEN_MAX", 3)
    one = listener()
    a, b, c, d = entry(), entry(), entry(), entry()
    one.offer([a, b, c])
    assert drained(one) == [a, b, c]
    # Three are remembered: none comes again.
    one.offer([a, b, c])
    assert drained(one) == []
    # A fourth pushes out the oldest, which then counts as new once more.
    one.offer([d])
    one.offer([d, c, b, a])
    assert drained(one) == [d, a]


async def test_a_subscriber_too_slow_loses_entries_and_says_so(caplog) -> None:
    one = listener(size=2)
    a, b, c = entry(), entry(), entry()
    with caplog.at_level(logging.WARNING, logger="contactgraph"):
        one.offer([a, b, c])
    assert drained(one) == [a, b]
    assert [r.getMessage() for r in caplog.records] == [
        f"activity subscriber of {one.contact_id} is too slow; entry {c['_id']} dropped"
    ]
    # Ending a full queue is no error either.
    one.offer([entry(), entry()])
    one.end()
    assert len(drained(one)) == 2


async def test_the_entries_stop_at_the_end() -> None:
    one = listener()
    a, b = entry(), entry()
    one.offer([a])
    one.end()
    one.offer([b])

    async def read() -> list[Any]:
        return [e async for e in one.entries()]

    assert await asyncio.wait_for(read(), WAIT) == [a]


# --- passing changes to subscribers ------------------------------------------


def feed_with(*listeners: _Listener, contacts: Any = None) -> ActivityFeed:
    feed = ActivityFeed(cast(Any, SimpleNamespace(contacts=contacts)))
    for one in listeners:
        feed._listeners.setdefault(one.contact_id, set()).add(one)
    return feed


def appended(contact_id: Any, *entries: dict[str, Any], op: str = "update") -> dict[str, Any]:
    fields = {f"activity.{n}": e for n, e in enumerate(entries)}
    return {
        "operationType": op,
        "documentKey": {"_id": contact_id},
        "updateDescription": {"updatedFields": fields},
    }


async def test_a_change_reaches_every_subscriber_of_its_contact_only() -> None:
    one, two = listener(), listener()
    two.contact_id = one.contact_id
    elsewhere = listener()
    feed = feed_with(one, two, elsewhere)
    a = entry()
    feed._dispatch(appended(one.contact_id, a))
    assert drained(one) == [a] and drained(two) == [a] and drained(elsewhere) == []


# A contact restored with an `_id` of its own making (a string, a document) is
# no subscribed contact, and no fault of the stream.
@pytest.mark.parametrize(
    "key",
    [None, {}, {"_id": None}, {"_id": "not an id"}, {"_id": {"legacy": 7}}, {"_id": ObjectId()}],
)
async def test_a_change_of_no_subscribed_contact_reaches_no_one(key: Any) -> None:
    one = listener()
    feed = feed_with(one)
    change = {"operationType": "delete", "documentKey": key}
    feed._dispatch(change)
    feed._dispatch(appended(str(one.contact_id), entry()) | {"documentKey": key})
    assert drained(one) == []


async def test_a_deleted_contact_ends_its_subscriptions() -> None:
    one, two = listener(), listener()
    two.contact_id = one.contact_id
    elsewhere = listener()
    feed = feed_with(one, two, elsewhere)
    feed._dispatch({"operationType": "delete", "documentKey": {"_id": one.contact_id}})
    assert drained(one) == ["END"] and drained(two) == ["END"] and drained(elsewhere) == []


async def test_a_subscriber_that_leaves_while_a_change_is_passed_on_breaks_nothing() -> None:
    one, two = listener(), listener()
    two.contact_id = one.contact_id
    feed = feed_with(one, two)
    group = feed._listeners[one.contact_id]

    class Leaving(_Listener):
        def offer(self, entries: list[dict[str, Any]]) -> None:
            group.clear()

    leaving = Leaving(one.contact_id, one.since)
    group.add(leaving)
    feed._dispatch(appended(one.contact_id, entry()))


# --- the one change stream, scripted ------------------------------------------


class Stop(Exception):
    """Not a database error: ends `_run` the way a fault of ours does."""


class Stream:
    """A change stream that plays `steps`: (token, change) pairs, callables making one, or errors."""

    def __init__(self, token: Any, steps: list[Any], hold: bool = False) -> None:
        self.resume_token = token
        self.steps = list(steps)
        self.hold = hold
        self.changes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = False

    @property
    def alive(self) -> bool:
        return bool(self.steps) or self.hold

    async def try_next(self) -> dict[str, Any] | None:
        if not self.steps:
            return await self.changes.get()
        step = self.steps.pop(0)
        if callable(step):
            step = step()
        if isinstance(step, BaseException):
            raise step
        self.resume_token, change = step
        return change

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True


class Contacts:
    """The contacts collection: reads from the real one, streams from the script."""

    def __init__(self, real: Any, outcomes: list[Any], watching: Callable[[], Any] = lambda: None):
        self.real = real
        self.outcomes = list(outcomes)
        self.opened: list[dict[str, Any]] = []
        self.watching = watching

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self.real.find_one(*args, **kwargs)

    async def watch(self, pipeline: Any, resume_after: Any = None) -> Stream:
        self.opened.append(
            {
                "pipeline": pipeline,
                "resume_after": resume_after,
                "request": REQUEST.get(),
                **self.watching(),
            }
        )
        outcome = self.outcomes.pop(0) if self.outcomes else Stream(None, [], hold=True)
        if callable(outcome) and not isinstance(outcome, Stream):
            outcome = await outcome()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Pauses:
    """`asyncio` as the feed sees it, with its pauses recorded instead of waited."""

    def __init__(self) -> None:
        self.taken: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.taken.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def pauses(monkeypatch) -> Pauses:
    pauses = Pauses()
    monkeypatch.setattr(activity_feed, "asyncio", pauses)
    return pauses


def scripted(
    outcomes: list[Any], *listeners: _Listener, real: Any = None
) -> tuple[ActivityFeed, Contacts]:
    contacts = Contacts(
        real,
        outcomes,
        lambda: {"ready": feed._ready.is_set(), "ended": [drained(one) for one in listeners]},
    )
    feed = feed_with(*listeners, contacts=contacts)
    return feed, contacts


async def test_each_change_is_passed_on_and_a_broken_stream_resumes_after_the_last_one(
    pauses,
) -> None:
    one = listener()
    a, b = entry(), entry()
    first = Stream(
        "t0",
        [
            ("t1", appended(one.contact_id, a)),
            ("t2", None),
            (None, appended(one.contact_id, b)),
            AutoReconnect("connection lost"),
        ],
    )
    # A stream reopened without a token of its own keeps the one it resumed from.
    second = Stream(None, [AutoReconnect("connection lost")])
    feed, contacts = scripted([first, second, Stop()], one)
    before = restarts("interrupted")
    with pytest.raises(Stop):
        await asyncio.wait_for(feed._run(), WAIT)
    assert [o["resume_after"] for o in contacts.opened] == [None, "t2", "t2"]
    assert all(o["pipeline"] is STREAM_PIPELINE for o in contacts.opened)
    assert [o["ready"] for o in contacts.opened] == [False, False, False]
    assert contacts.opened[1]["ended"] == [[a, b]]
    assert first.closed and second.closed
    # Each stream that opened starts the count of failures afresh.
    assert pauses.taken == [1.0, 1.0]
    assert restarts("interrupted") - before == 2
    # The fault of ours ends the subscriptions.
    assert drained(one) == ["END"]


async def test_a_stream_broken_before_any_change_resumes_from_where_it_opened(pauses) -> None:
    one = listener()
    feed, contacts = scripted([Stream("t0", [AutoReconnect("lost")]), Stop()], one)
    with pytest.raises(Stop):
        await feed._run()
    assert [o["resume_after"] for o in contacts.opened] == [None, "t0"]
    assert contacts.opened[1]["ended"] == [[]]


async def test_the_stream_is_ready_while_open_and_not_after_it_broke(pauses) -> None:
    feed, contacts = scripted([])
    ready: list[bool] = []

    def look() -> tuple[str, None]:
        ready.append(feed._ready.is_set())
        return "t1", None

    stream = Stream("t0", [look, AutoReconnect("lost")])
    contacts.outcomes = [stream, Stop()]
    with pytest.raises(Stop):
        await feed._run()
    assert ready == [True]
    assert [o["ready"] for o in contacts.opened] == [False, False]


async def test_pauses_double_with_each_failure_up_to_half_a_minute(pauses, caplog) -> None:
    feed, contacts = scripted([AutoReconnect("down")] * 7 + [Stop()])
    with caplog.at_level(logging.WARNING, logger="contactgraph"), pytest.raises(Stop):
        await feed._run()
    assert pauses.taken == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "activity change stream interrupted; reopening"
    ] * 7
    # Each says what broke the stream, and the fault of ours too.
    assert [str(r.exc_info[1]) for r in warnings if r.exc_info] == ["down"] * 7
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.getMessage() == "activity change stream failed"
    assert failed.exc_info is not None and isinstance(failed.exc_info[1], Stop)


async def test_after_five_failed_resumes_the_stream_starts_afresh_and_subscriptions_end(
    pauses,
) -> None:
    one = listener()
    outcomes = [Stream("t0", [AutoReconnect("lost")])] + [AutoReconnect("down")] * 5 + [Stop()]
    feed, contacts = scripted(outcomes, one)
    with pytest.raises(Stop):
        await feed._run()
    assert [o["resume_after"] for o in contacts.opened] == [None] + ["t0"] * 5 + [None]
    # Five failures in a row still resume; the sixth gives the token up.
    assert [o["ended"] for o in contacts.opened] == [[[]]] * 6 + [[["END"]]]


@pytest.mark.parametrize("code", [286, 260, 280])
async def test_a_resume_point_the_server_has_lost_ends_subscriptions_and_starts_afresh(
    pauses, code: int
) -> None:
    one = listener()
    failure = OperationFailure("resume point lost", code=code)
    feed, contacts = scripted([Stream("t0", [failure]), Stop()], one)
    with pytest.raises(Stop):
        await feed._run()
    assert [o["resume_after"] for o in contacts.opened] == [None, None]
    assert contacts.opened[1]["ended"] == [["END"]]
    assert pauses.taken == [1.0]


async def test_other_server_errors_resume(pauses) -> None:
    one = listener()
    failure = OperationFailure("interrupted", code=11601)
    feed, contacts = scripted([Stream("t0", [failure]), Stop()], one)
    with pytest.raises(Stop):
        await feed._run()
    assert [o["resume_after"] for o in contacts.opened] == [None, "t0"]
    assert contacts.opened[1]["ended"] == [[]]


async def test_a_lost_stream_that_never_opened_has_nothing_to_end(pauses) -> None:
    one = listener()
    lost = OperationFailure("resume point lost", code=286)
    feed, contacts = scripted([lost, Stop()], one)
    with pytest.raises(Stop):
        await feed._run()
    assert contacts.opened[1]["ended"] == [[]]


async def test_an_invalidated_stream_ends_subscriptions_and_starts_afresh(pauses, caplog) -> None:
    one = listener()
    a = entry()
    feed, contacts = scripted([Stream("t0", [("t1", appended(one.contact_id, a))]), Stop()], one)
    before = restarts("invalidated")
    with caplog.at_level(logging.WARNING, logger="contactgraph"), pytest.raises(Stop):
        await feed._run()
    assert [o["resume_after"] for o in contacts.opened] == [None, None]
    assert contacts.opened[1]["ready"] is False
    assert contacts.opened[1]["ended"] == [[a, "END"]]
    assert pauses.taken == [0.5]
    assert restarts("invalidated") - before == 1
    assert caplog.records[0].getMessage() == (
        "activity change stream invalidated; subscriptions end, reopening"
    )


async def test_a_fault_of_ours_ends_every_subscription_and_is_raised(pauses) -> None:
    one, two = listener(), listener()
    feed, contacts = scripted([Stream("t0", [Stop()])], one, two)
    with pytest.raises(Stop):
        await feed._run()
    assert drained(one) == ["END"] and drained(two) == ["END"]
    assert pauses.taken == []


# --- subscribing, on the real contacts ------------------------------------------


async def insert_contact(
    database: Any, log: list[dict[str, Any]] | None, shop: str = SHOP
) -> ObjectId:
    email = f"{ObjectId()}@example.com"
    doc: dict[str, Any] = {"_id": ObjectId(), "shopId": shop, "email": email, "emailKey": email}
    if log is not None:
        doc["activity"] = log
    await database.contacts.insert_one(doc)
    return doc["_id"]


def real_feed(database: Any, outcomes: list[Any]) -> tuple[ActivityFeed, Contacts]:
    contacts = Contacts(database.contacts, outcomes, lambda: {"ready": feed._ready.is_set()})
    feed = ActivityFeed(cast(Any, SimpleNamespace(contacts=contacts)))
    return feed, contacts


async def collect(entries: Any, n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(anext(entries), WAIT) for _ in range(n)]


async def to_end(entries: Any) -> list[dict[str, Any]]:
    return await asyncio.wait_for(_all(entries), WAIT)


async def _all(entries: Any) -> list[dict[str, Any]]:
    return [e async for e in entries]


async def test_a_subscriber_gets_what_is_written_while_and_after_it_subscribes(database) -> None:
    old = entry(T1)
    contact_id = await insert_contact(database, [old])
    x_id, z_id, y_id = ObjectId(), ObjectId(), ObjectId()
    x, y, z = entry(T2, x_id), entry(T1, y_id), entry(T1, z_id)
    stream = Stream("t0", [], hold=True)

    async def opening() -> Stream:
        # Written while the stream opens: found in the contact, oldest first.
        await database.contacts.update_one(
            {"_id": contact_id}, {"$push": {"activity": {"$each": [x, y, z]}}}
        )
        return stream

    feed, contacts = real_feed(database, [opening])
    try:
        async with feed.listen(SHOP, contact_id) as entries:
            assert [e["_id"] for e in await collect(entries, 3)] == [z_id, y_id, x_id]
            # The old entry moved (a merge rewrote the log) is not news; a new one is.
            new = entry(T2)
            stream.changes.put_nowait(
                {
                    "operationType": "update",
                    "documentKey": {"_id": contact_id},
                    "updateDescription": {"updatedFields": {"activity": [new, old, x]}},
                }
            )
            assert await collect(entries, 1) == [new]
            stream.changes.put_nowait(
                {"operationType": "delete", "documentKey": {"_id": contact_id}}
            )
            assert await to_end(entries) == []
        assert [(o["pipeline"], o["resume_after"]) for o in contacts.opened] == [
            (STREAM_PIPELINE, None)
        ]
    finally:
        await feed.close()


@pytest.mark.parametrize("log", [None, []])
async def test_a_contact_without_a_log_gets_its_first_entries(database, log) -> None:
    contact_id = await insert_contact(database, log)
    stream = Stream("t0", [], hold=True)
    feed, _ = real_feed(database, [stream])
    try:
        async with feed.listen(SHOP, contact_id) as entries:
            a = entry()
            stream.changes.put_nowait(appended(contact_id, a))
            assert await collect(entries, 1) == [a]
    finally:
        await feed.close()


async def test_a_contact_of_another_shop_or_none_at_all_streams_nothing(database) -> None:
    theirs = await insert_contact(database, [entry()], shop=OTHER_SHOP)
    feed, _ = real_feed(database, [])
    try:
        for contact_id in (theirs, ObjectId()):
            async with feed.listen(SHOP, contact_id) as entries:
                assert await to_end(entries) == []
    finally:
        await feed.close()


async def test_a_contact_deleted_while_the_stream_opens_streams_nothing(database) -> None:
    contact_id = await insert_contact(database, [entry()])

    async def opening() -> Stream:
        await database.contacts.delete_one({"_id": contact_id})
        return Stream("t0", [], hold=True)

    feed, _ = real_feed(database, [opening])
    try:
        async with feed.listen(SHOP, contact_id) as entries:
            assert await to_end(entries) == []
    finally:
        await feed.close()


async def test_entries_made_up_to_five_minutes_before_subscribing_are_news(
    database, monkeypatch
) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return start

    monkeypatch.setattr(activity_feed, "dt", SimpleNamespace(datetime=Clock, UTC=dt.UTC))
    contact_id = await insert_contact(database, [])
    stream = Stream("t0", [], hold=True)
    feed, _ = real_feed(database, [stream])
    try:
        async with feed.listen(SHOP, contact_id) as entries:
            history = entry(oid=ObjectId.from_datetime(start - GRACE - dt.timedelta(seconds=1)))
            news = entry(oid=ObjectId.from_datetime(start - GRACE))
            stream.changes.put_nowait(appended(contact_id, history, news))
            assert await collect(entries, 1) == [news]
    finally:
        await feed.close()


async def test_subscribers_share_one_stream_that_closes_after_the_last(database) -> None:
    ann, bob = await insert_contact(database, []), await insert_contact(database, [])
    stream = Stream("t0", [], hold=True)
    feed, contacts = real_feed(database, [stream])
    try:
        async with feed.listen(SHOP, ann) as ann_entries:
            task = feed._task
            assert task is not None
            async with feed.listen(SHOP, ann) as ann_again, feed.listen(SHOP, bob) as bob_entries:
                a, b = entry(), entry()
                stream.changes.put_nowait(appended(ann, a))
                stream.changes.put_nowait(appended(bob, b))
                assert await collect(ann_again, 1) == [a]
                assert await collect(bob_entries, 1) == [b]
            # The others left; this one still gets what is written.
            assert feed._task is task and not task.done()
            assert list(feed._listeners) == [ann]
            c = entry()
            stream.changes.put_nowait(appended(ann, c))
            assert await collect(ann_entries, 2) == [a, c]
        assert len(contacts.opened) == 1
        assert feed._listeners == {} and feed._task is None
        assert task.cancelled() and stream.closed
    finally:
        await feed.close()


async def test_a_stream_that_failed_is_opened_again_by_the_next_subscriber(
    database, pauses
) -> None:
    contact_id = await insert_contact(database, [])
    failing = Stream("t0", [Stop()])
    opened_again = asyncio.Event()

    async def slow() -> Stream:
        await asyncio.sleep(0.2)
        opened_again.set()
        return stream

    stream = Stream("t1", [], hold=True)
    feed, contacts = real_feed(database, [failing, slow])
    try:
        # The subscription ends, and leaving it last is no error.
        async with feed.listen(SHOP, contact_id) as entries:
            assert await to_end(entries) == []
        failed = feed._task
        async with feed.listen(SHOP, contact_id) as entries:
            # The new subscriber waited for the new stream to be open.
            assert opened_again.is_set()
            assert [o["ready"] for o in contacts.opened] == [False, False]
            a = entry()
            stream.changes.put_nowait(appended(contact_id, a))
            assert await collect(entries, 1) == [a]
        assert failed is None or failed.done()
    finally:
        await feed.close()


async def test_the_stream_does_not_run_in_the_context_of_the_request_that_opened_it(
    database,
) -> None:
    contact_id = await insert_contact(database, [])
    feed, contacts = real_feed(database, [])
    token = REQUEST.set("req-1")
    try:
        async with feed.listen(SHOP, contact_id):
            pass
    finally:
        REQUEST.reset(token)
        await feed.close()
    assert [o["request"] for o in contacts.opened] == ["none"]


async def test_a_stream_that_does_not_open_in_time_refuses_the_subscriber(
    database, monkeypatch
) -> None:
    monkeypatch.setattr(activity_feed, "READY_TIMEOUT_SECONDS", 0.2)
    contact_id = await insert_contact(database, [])

    async def never() -> Stream:
        await asyncio.Event().wait()
        raise AssertionError

    feed, _ = real_feed(database, [never])
    try:
        with pytest.raises(TimeoutError):
            async with feed.listen(SHOP, contact_id):
                raise AssertionError("subscribed without a stream")
        assert feed._listeners == {} and feed._task is None
    finally:
        await feed.close()


async def test_closing_the_feed_ends_every_subscription_and_the_stream(database) -> None:
    ann, bob = await insert_contact(database, []), await insert_contact(database, [])
    stream = Stream("t0", [], hold=True)
    feed, _ = real_feed(database, [stream])
    async with feed.listen(SHOP, ann) as ann_entries, feed.listen(SHOP, bob) as bob_entries:
        task = feed._task
        assert task is not None
        await feed.close()
        assert await to_end(ann_entries) == [] and await to_end(bob_entries) == []
        assert feed._listeners == {} and feed._task is None
        assert task.cancelled() and stream.closed
    await feed.close()
    assert feed._task is None


async def test_closing_after_the_stream_failed_ends_subscriptions_without_failing(database) -> None:
    contact_id = await insert_contact(database, [])
    feed, _ = real_feed(database, [Stream("t0", [Stop()])])
    async with feed.listen(SHOP, contact_id) as entries:
        assert await to_end(entries) == []
        failed = feed._task
        await feed.close()
    assert failed is not None and isinstance(failed.exception(), Stop)
    assert feed._task is None and feed._listeners == {}


# --- the server's filter ------------------------------------------------------------


async def test_the_server_passes_only_log_writes_and_only_their_log_fields(database) -> None:
    a, b = entry(T1), entry(T2)
    key = {"_id": ObjectId()}
    events = [
        {
            "_id": 1,
            "operationType": "insert",
            "documentKey": key,
            "fullDocument": {"activity": [a]},
        },
        {"_id": 2, "operationType": "delete", "documentKey": key},
        {
            "_id": 3,
            "operationType": "replace",
            "documentKey": key,
            "fullDocument": {"email": "a@example.com", "activity": [a, b]},
        },
        {
            "_id": 4,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {
                "updatedFields": {"activity.3": b, "activityCount": 4, "updatedAt": T2},
                "removedFields": ["x"],
            },
        },
        {
            "_id": 5,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {"updatedFields": {"activity": [a]}},
        },
        {
            "_id": 6,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {
                "updatedFields": {"activity.3.text": "edited", "labels": ["VIP"]}
            },
        },
        {
            "_id": 7,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {"updatedFields": {}},
        },
        {"_id": 8, "operationType": "update", "documentKey": key},
    ]
    scratch = database.db["activity_feed_filter_probe"]
    await scratch.drop()
    try:
        await scratch.insert_many(events)
        passed = await (
            await scratch.aggregate([*STREAM_PIPELINE, {"$sort": {"_id": 1}}])
        ).to_list()
    finally:
        await scratch.drop()
    assert passed == [
        {
            "_id": 2,
            "operationType": "delete",
            "documentKey": key,
            "updateDescription": {"updatedFields": {}},
        },
        {
            "_id": 3,
            "operationType": "replace",
            "documentKey": key,
            "fullDocument": {"activity": [a, b]},
            "updateDescription": {"updatedFields": {}},
        },
        {
            "_id": 4,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {"updatedFields": {"activity.3": b}},
        },
        {
            "_id": 5,
            "operationType": "update",
            "documentKey": key,
            "updateDescription": {"updatedFields": {"activity": [a]}},
        },
    ]
