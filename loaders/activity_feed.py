"""New activity entries as they are written, from one MongoDB change stream per process.

Every subscriber shares one change stream on `contacts` (opened with the
first subscriber, closed after the last one): a stream per subscriber would
hold a pooled connection each, and a hundred open contact pages would starve
the API's own queries.

A change event carries the entries as written: single positions
(`activity.3`, an append) or the whole `activity` array (a merge, a note
deleted, an archive move). An entry counts as new for a subscriber when it
was not in the log when the subscriber started and was not delivered
before; so entries that only moved are never delivered twice, and an old
event recorded late (an order placed last week, arriving now) still is.
Entries whose ids are older than the subscription by far (moved in from a
merged duplicate) are history, not news.

The server filters the stream (`STREAM_PIPELINE`): only updates that write
log entries, deletions and replacements come through, and of an update only
its log fields. A label renamed across a shop of a million contacts is a
million updates; without the filter each would reach every process as a
full event.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from loaders.mongo import Database, Doc
from loaders.observability import CHANGE_STREAM_RESTARTS

log = logging.getLogger("contactgraph")

_POSITION = re.compile(r"activity\.\d+")
# Ids made this long before a subscriber started can still be news: the
# clocks of the API's processes may differ a little.
GRACE = dt.timedelta(minutes=5)
SEEN_MAX = 10_000
QUEUE_MAX = 1_000
READY_TIMEOUT_SECONDS = 10.0
# Server errors saying a resume token can no longer be used:
# ChangeStreamHistoryLost, InvalidResumeToken, ChangeStreamFatalError.
HISTORY_LOST = frozenset({286, 260, 280})
# Failures in a row after which the token itself is taken to be the problem.
MAX_RESUMES = 5
_END: Doc = {}

# An updated field that holds log entries: the array, or one position of it
# (not `activity.3.text`, a note edited, nor the counters beside the array).
_LOG_PATH = "^activity(\\.[0-9]+)?$"


def _log_fields(fields: Any) -> Doc:
    """The aggregation expression: the (key, value) pairs of `fields` that hold log entries."""
    return {
        "$filter": {
            "input": {"$objectToArray": {"$ifNull": [fields, {}]}},
            "cond": {"$regexMatch": {"input": "$$this.k", "regex": _LOG_PATH}},
        }
    }


STREAM_PIPELINE: list[Doc] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["delete", "replace"]}},
                {
                    "operationType": "update",
                    "$expr": {
                        "$gt": [{"$size": _log_fields("$updateDescription.updatedFields")}, 0]
                    },
                },
            ]
        }
    },
    {
        # The resume token (`_id`) stays as the server made it, as it must.
        "$project": {
            "operationType": 1,
            "documentKey": 1,
            "fullDocument.activity": 1,
            "updateDescription.updatedFields": {
                "$arrayToObject": _log_fields("$updateDescription.updatedFields")
            },
        }
    },
]
# Before a stream replaces an invalidated one: a collection dropped again
# and again must not make the feed spin.
INVALIDATED_PAUSE_SECONDS = 0.5


def _written_entries(change: Doc) -> list[Doc]:
    """The log entries an event shows as written, oldest first."""
    if change.get("operationType") == "replace":
        found = list((change.get("fullDocument") or {}).get("activity") or [])
    else:
        found = []
        for path, value in (
            (change.get("updateDescription") or {}).get("updatedFields") or {}
        ).items():
            if path == "activity" and isinstance(value, list):
                found.extend(value)
            elif _POSITION.fullmatch(path) and isinstance(value, dict):
                found.append(value)
    entries = [
        e for e in found if isinstance(e, dict) and isinstance(e.get("_id"), ObjectId) and "at" in e
    ]
    return sorted(entries, key=lambda e: (e["at"], e["_id"]))


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel the stream and wait until it is gone.

    A stream that failed has logged its fault and ended its subscriptions:
    the last subscriber leaving, or the process shutting down, must not
    fail with it.
    """
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


@dataclass(eq=False)
class _Listener:
    contact_id: ObjectId
    since: dt.datetime
    queue: asyncio.Queue[Doc] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    seen: OrderedDict[ObjectId, None] = field(default_factory=OrderedDict)

    def offer(self, entries: list[Doc]) -> None:
        for entry in entries:
            oid = entry["_id"]
            if oid in self.seen or oid.generation_time < self.since:
                continue
            self.seen[oid] = None
            if len(self.seen) > SEEN_MAX:
                self.seen.popitem(last=False)
            try:
                self.queue.put_nowait(entry)
            except asyncio.QueueFull:
                log.warning(
                    "activity subscriber of %s is too slow; entry %s dropped", self.contact_id, oid
                )

    def end(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_END)

    async def entries(self) -> AsyncIterator[Doc]:
        while True:
            entry = await self.queue.get()
            if entry is _END:
                return
            yield entry


class ActivityFeed:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._listeners: dict[ObjectId, set[_Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def listen(self, shop_id: str, contact_id: ObjectId) -> AsyncIterator[AsyncIterator[Doc]]:
        """New entries of one contact until the contact is deleted (or the caller stops)."""
        listener = _Listener(contact_id, dt.datetime.now(dt.UTC) - GRACE)
        before = await self.database.contacts.find_one(
            {"shopId": shop_id, "_id": contact_id}, {"activity._id": 1}
        )
        for entry in (before or {}).get("activity") or []:
            listener.seen[entry["_id"]] = None
        async with self._lock:
            self._listeners.setdefault(contact_id, set()).add(listener)
            if self._task is None or self._task.done():
                self._ready.clear()
                # A context of its own: the stream outlives the request that
                # opened it, and its log lines must not carry that request's id.
                self._task = asyncio.create_task(self._run(), context=contextvars.Context())
        try:
            await asyncio.wait_for(self._ready.wait(), READY_TIMEOUT_SECONDS)
            # Entries written while the stream was opening are in the document.
            doc = await self.database.contacts.find_one(
                {"shopId": shop_id, "_id": contact_id}, {"activity": 1}
            )
            if doc is None:
                listener.end()
            else:
                listener.offer(sorted(doc.get("activity") or [], key=lambda e: (e["at"], e["_id"])))
            yield listener.entries()
        finally:
            await self._forget(listener)

    async def _forget(self, listener: _Listener) -> None:
        async with self._lock:
            group = self._listeners.get(listener.contact_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[listener.contact_id]
            task = self._task if not self._listeners else None
            if task is not None:
                self._task = None
        if task is not None:
            await _stop(task)

    async def close(self) -> None:
        async with self._lock:
            for group in self._listeners.values():
                for listener in group:
                    listener.end()
            self._listeners.clear()
            task, self._task = self._task, None
        if task is not None:
            await _stop(task)

    def _dispatch(self, change: Doc) -> None:
        contact_id = (change.get("documentKey") or {}).get("_id")
        group = self._listeners.get(contact_id) if isinstance(contact_id, ObjectId) else None
        if not group:
            return
        if change.get("operationType") == "delete":
            for listener in group:
                listener.end()
            return
        entries = _written_entries(change)
        for listener in list(group):
            listener.offer(entries)

    async def _run(self) -> None:
        pipeline: list[Any] = STREAM_PIPELINE
        resume_token: Any = None
        failures = 0
        while True:
            try:
                async with await self.database.contacts.watch(
                    pipeline, resume_after=resume_token
                ) as stream:
                    # The token from the start, and after every (possibly empty)
                    # batch: a quiet stream that breaks resumes where it was.
                    resume_token = stream.resume_token or resume_token
                    self._ready.set()
                    failures = 0
                    # Not `while True`: an invalidated stream (contacts dropped
                    # or renamed, e.g. by `mongorestore --drop`, or the database
                    # dropped) is dead, and `try_next` then answers None at once
                    # without any I/O, so such a loop would never yield and
                    # would starve every other request of the process.
                    while stream.alive:
                        change = await stream.try_next()
                        if change is not None:
                            self._dispatch(change)
                        # After the dispatch: a change is passed on before it
                        # counts as seen (listeners drop repeats).
                        resume_token = stream.resume_token or resume_token
                # Invalidated: an invalidate token cannot be resumed after, and
                # whatever follows is another collection's history. Every
                # subscription ends (clients subscribe again and reread) and
                # the stream starts afresh from now.
                self._ready.clear()
                log.warning("activity change stream invalidated; subscriptions end, reopening")
                CHANGE_STREAM_RESTARTS.labels("invalidated").inc()
                resume_token = None
                self._end_all()
                await asyncio.sleep(INVALIDATED_PAUSE_SECONDS)
            except PyMongoError as error:
                failures += 1
                self._ready.clear()  # new subscribers wait for the stream to be back
                log.warning("activity change stream interrupted; reopening", exc_info=True)
                CHANGE_STREAM_RESTARTS.labels("interrupted").inc()
                lost = getattr(error, "code", None) in HISTORY_LOST or failures > MAX_RESUMES
                if lost and resume_token is not None:
                    # Where the stream was is gone: start afresh. What was
                    # written meanwhile will never be seen, so every
                    # subscription ends; clients subscribe again and reread.
                    resume_token = None
                    self._end_all()
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
            except Exception:
                # A fault of ours: end every subscription (clients see them
                # complete and can subscribe again) rather than leave them waiting.
                log.exception("activity change stream failed")
                self._end_all()
                raise

    def _end_all(self) -> None:
        for group in self._listeners.values():
            for listener in group:
                listener.end()
