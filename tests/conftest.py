"""Fixtures for every test."""

from __future__ import annotations

import pytest

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests (gTTS, SpeechRecognition) honours proxy variables; local test servers must be
    reached directly."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# Real PostgreSQL, Redis and Prometheus servers for the tests that need them: tests/postgres.py,
# tests/redis_server.py, tests/prometheus_server.py.
pytest_plugins = ["tests.postgres", "tests.redis_server", "tests.prometheus_server"]
