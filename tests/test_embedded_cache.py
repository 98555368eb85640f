"""The embedded server's cache is a setting: CONTACTGRAPH_EMBEDDED_CACHE_MB."""

from __future__ import annotations

import pytest

from graph.embedded import EmbeddedServer, ping
from graph.settings import EMBEDDED_CACHE_MB, Settings, SettingsError, embedded_cache_mb


def test_the_cache_defaults_to_two_gigabytes(monkeypatch):
    monkeypatch.delenv("CONTACTGRAPH_EMBEDDED_CACHE_MB", raising=False)

    assert EMBEDDED_CACHE_MB == 2048
    assert Settings.from_env({}).embedded_cache_mb == 2048
    assert EmbeddedServer(":memory:").cache_size == "2048M"


def test_the_cache_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONTACTGRAPH_EMBEDDED_CACHE_MB", "512")

    assert Settings.from_env().embedded_cache_mb == 512
    assert EmbeddedServer(":memory:").cache_size == "512M"
    # Given outright, the size wins over the environment.
    assert EmbeddedServer(":memory:", cache_size="1G").cache_size == "1G"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("lots", "CONTACTGRAPH_EMBEDDED_CACHE_MB must be a whole number, got 'lots'"),
        ("1.5", "CONTACTGRAPH_EMBEDDED_CACHE_MB must be a whole number, got '1.5'"),
        ("63", "CONTACTGRAPH_EMBEDDED_CACHE_MB must be between 64 and 1048576, got 63"),
        ("-1", "CONTACTGRAPH_EMBEDDED_CACHE_MB must be between 64 and 1048576, got -1"),
    ],
)
def test_a_bad_cache_size_stops_the_start_with_its_reason(raw, message):
    env = {"CONTACTGRAPH_EMBEDDED_CACHE_MB": raw}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == message
    with pytest.raises(SettingsError):
        embedded_cache_mb(env)


def test_the_server_starts_with_the_cache_it_is_given(monkeypatch):
    monkeypatch.setenv("CONTACTGRAPH_EMBEDDED_CACHE_MB", "96")

    with EmbeddedServer(":memory:") as server:
        assert server.process is not None
        command = server.process.args
        assert command[command.index("--cache-size") + 1] == "96M"
        assert ping(server.uri)
