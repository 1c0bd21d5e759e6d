"""The test Prometheus (tests/prometheus_server.py) scrapes what bot/metrics.py serves."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from prometheus_client import start_http_server

from bot.metrics import REGISTRY
from tests.processes import free_port
from tests.prometheus_server import PrometheusServer


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)


def test_prometheus_scrapes_the_registry_and_reports_a_missing_target(
    start_prometheus: Callable[[Mapping[str, str]], PrometheusServer],
) -> None:
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    try:
        nobody = f"127.0.0.1:{free_port()}"
        prometheus = start_prometheus({"this": f"127.0.0.1:{port}", "nobody": nobody})
        # Targets appear a moment after the server is ready, as "unknown" until scraped.
        eventually(lambda: prometheus.health() == {"this": "up", "nobody": "down"})
        assert prometheus.value('up{process="this"}') == 1.0
        rss = prometheus.value('process_resident_memory_bytes{process="this"}')
        assert rss is not None and rss > 10e6, rss
        assert prometheus.values("up", "process") == {"this": 1.0, "nobody": 0.0}
        assert prometheus.value("voicechat_no_such_metric") is None
    finally:
        server.shutdown()
        thread.join(5)
