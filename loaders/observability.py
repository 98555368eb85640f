"""What the data layer tells operators: MongoDB command times, per request and as metrics.

`CommandMonitor` is a PyMongo command listener. The driver calls it in the
task that sent the command, so the current request's `CommandTally` (a
context variable the HTTP layer sets) receives each command's count and
time, and the `contactgraph_mongodb_command_duration_seconds` histogram
each command's latency by name. Only names and durations are read: the
commands themselves hold the shop's data.

With a tracer (graph/tracing.py, when OpenTelemetry is on), each command
is also a client span, a child of whatever span is current.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from pymongo import monitoring

# The driver's commands are a fixed set; this only guards against a surprise.
MAX_COMMAND_NAMES = 50

MONGODB_COMMAND_SECONDS = Histogram(
    "contactgraph_mongodb_command_duration_seconds",
    "Latency of MongoDB commands, by command name.",
    ["command", "outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
CHANGE_STREAM_RESTARTS = Counter(
    "contactgraph_change_stream_restarts_total",
    "Times the activity change stream was reopened, by reason (interrupted or invalidated).",
    ["reason"],
)


@dataclass
class CommandTally:
    """The MongoDB commands one request sent: how many, and their time in seconds."""

    count: int = 0
    seconds: float = 0.0


current_tally: ContextVar[CommandTally | None] = ContextVar("current_tally", default=None)


class CommandMonitor(monitoring.CommandListener):
    def __init__(self, tracer: Any = None) -> None:
        self.tracer = tracer
        self._names: set[str] = set()
        # Open spans by (connection, request id): a command's events name both.
        self._spans: dict[tuple[Any, int], Any] = {}

    def _label(self, name: str) -> str:
        if name in self._names:
            return name
        if len(self._names) < MAX_COMMAND_NAMES:
            self._names.add(name)
            return name
        return "other"

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.tracer is not None:
            self._spans[(event.connection_id, event.request_id)] = self.tracer.command_started(
                event
            )

    def _finished(self, event: Any, outcome: str) -> None:
        seconds = event.duration_micros / 1_000_000
        tally = current_tally.get()
        if tally is not None:
            tally.count += 1
            tally.seconds += seconds
        MONGODB_COMMAND_SECONDS.labels(self._label(event.command_name), outcome).observe(seconds)
        if self.tracer is not None:
            span = self._spans.pop((event.connection_id, event.request_id), None)
            if span is not None:
                self.tracer.command_finished(span, event, outcome)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._finished(event, "ok")

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._finished(event, "error")
