"""What each MongoDB command tells operators: the request's tally, the latency metric, a span.

tests/test_metrics.py and tests/test_tracing.py read these through a running
app; these feed the listener one command event at a time and check exactly
what it records.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from loaders.observability import MAX_COMMAND_NAMES, CommandMonitor, CommandTally, current_tally

METRIC = "contactgraph_mongodb_command_duration_seconds"


def event(name: str = "find", micros: int = 1_500, request: int = 7, connection: Any = ("h", 1)):
    return SimpleNamespace(
        command_name=name, duration_micros=micros, request_id=request, connection_id=connection
    )


def sample(suffix: str, command: str, outcome: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(
        METRIC + suffix, {"command": command, "outcome": outcome, **labels}
    )
    return value or 0.0


@pytest.fixture
def tally() -> Any:
    mine = CommandTally()
    token = current_tally.set(mine)
    yield mine
    current_tally.reset(token)


def test_a_request_s_tally_counts_its_commands_and_adds_their_seconds(tally):
    monitor = CommandMonitor()

    monitor.succeeded(event(micros=1_500))
    monitor.failed(event(micros=250_000))

    assert tally == CommandTally(count=2, seconds=0.2515)


def test_a_command_outside_any_request_is_only_measured():
    monitor = CommandMonitor()
    before = sample("_count", "ping", "ok")

    monitor.succeeded(event("ping"))

    assert current_tally.get() is None
    assert sample("_count", "ping", "ok") == before + 1


@pytest.mark.parametrize(("finish", "outcome"), [("succeeded", "ok"), ("failed", "error")])
def test_each_command_s_latency_is_observed_by_name_and_outcome(finish, outcome):
    monitor = CommandMonitor()
    name = f"aggregate_{outcome}"
    count, total = sample("_count", name, outcome), sample("_sum", name, outcome)
    at_most = (
        sample("_bucket", name, outcome, le="0.005"),
        sample("_bucket", name, outcome, le="0.0025"),
    )

    getattr(monitor, finish)(event(name, micros=3_000))

    assert sample("_count", name, outcome) == count + 1
    assert sample("_sum", name, outcome) == pytest.approx(total + 0.003)
    # 3 ms falls in the 5 ms bucket and not in the 2.5 ms one.
    assert (
        sample("_bucket", name, outcome, le="0.005"),
        sample("_bucket", name, outcome, le="0.0025"),
    ) == (at_most[0] + 1, at_most[1])


def test_past_fifty_command_names_the_new_ones_are_counted_as_other():
    monitor = CommandMonitor()
    names = [f"cmd{n}" for n in range(MAX_COMMAND_NAMES)]

    assert [monitor._label(n) for n in names] == names
    assert monitor._label("cmd_late") == "other"
    assert monitor._label("cmd0") == "cmd0"  # a known name stays itself
    assert monitor._label(f"cmd{MAX_COMMAND_NAMES - 1}") == f"cmd{MAX_COMMAND_NAMES - 1}"


def test_the_fifty_first_name_is_measured_as_other():
    monitor = CommandMonitor()
    for n in range(MAX_COMMAND_NAMES):
        monitor.succeeded(event(f"name{n}"))
    before = sample("_count", "other", "ok")

    monitor.succeeded(event("one_too_many"))

    assert sample("_count", "other", "ok") == before + 1
    assert sample("_count", "one_too_many", "ok") == 0


class Tracer:
    def __init__(self) -> None:
        self.finished: list[tuple[Any, Any, str]] = []

    def command_started(self, started: Any) -> Any:
        return ("span", started.request_id)

    def command_finished(self, span: Any, finished: Any, outcome: str) -> None:
        self.finished.append((span, finished, outcome))


@pytest.mark.parametrize(("finish", "outcome"), [("succeeded", "ok"), ("failed", "error")])
def test_with_a_tracer_each_command_is_a_span_ended_by_its_own_reply(finish, outcome):
    tracer = Tracer()
    monitor = CommandMonitor(tracer)
    monitor.started(event(request=1, connection="a"))
    monitor.started(event(request=1, connection="b"))  # same request id, other connection

    reply = event(request=1, connection="b")
    getattr(monitor, finish)(reply)

    assert tracer.finished == [(("span", 1), reply, outcome)]
    assert list(monitor._spans) == [("a", 1)]


def test_a_reply_without_a_started_span_ends_nothing():
    tracer = Tracer()
    monitor = CommandMonitor(tracer)

    monitor.succeeded(event(request=9))

    assert tracer.finished == []


def test_without_a_tracer_no_span_is_kept():
    monitor = CommandMonitor()

    monitor.started(event())
    monitor.succeeded(event())

    assert monitor._spans == {}
