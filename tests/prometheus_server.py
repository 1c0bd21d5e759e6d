"""A real Prometheus for the tests (a pytest plugin loaded by tests/conftest.py).

`PrometheusServer.start({"bot-0": "127.0.0.1:9101", ...})` runs Debian's `prometheus` on a
free loopback port, scraping every target each second (job `voicechat`, each target labelled
`process="<its name>"`), with its storage in a temporary folder; it returns once the server
answers `/-/ready`, and `stop()` ends it. `query`, `value`, `values` and `targets` read its
HTTP API (`/api/v1/query`, `/api/v1/targets`). The `start_prometheus` fixture starts servers
and stops them after the test. A run that was killed leaves a folder with its pid; the next
start stops such orphans.

Without the program, the tests fail and say how to install it: they never skip Prometheus.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.processes import SERVER_FILE, free_port, server_folder, stop_orphans

HOW_TO_INSTALL = (
    "prometheus was not found. Install it with `apt-get install --no-install-recommends "
    "prometheus` (as root; scripts/bootstrap.sh does this), or name the program in PROMETHEUS."
)
JOB = "voicechat"
SCRAPE_INTERVAL = "1s"
START_SECONDS = 30
FOLDER_PREFIX = "bot-prometheus-"
# Loopback only: proxy variables (set for the package registries) must not reroute the API.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def prometheus_binary() -> Path | None:
    for candidate in (os.environ.get("PROMETHEUS"), shutil.which("prometheus")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    fallback = Path("/usr/bin/prometheus")
    return fallback if fallback.is_file() else None


def scrape_config(targets: Mapping[str, str], job: str = JOB) -> dict[str, Any]:
    """The configuration: every target (name → host:port) scraped each second."""
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,  # may not exceed the interval
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [address], "labels": {"process": name}}
                    for name, address in targets.items()
                ],
            }
        ],
    }


class PrometheusServer:
    """One Prometheus server, a child process of the tests."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], folder: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = process
        self.folder: Path | None = folder

    @classmethod
    def start(cls, targets: Mapping[str, str]) -> PrometheusServer:
        """A server scraping `targets` (process name → host:port), ready when returned."""
        binary = prometheus_binary()
        if binary is None:
            pytest.fail(HOW_TO_INSTALL, pytrace=False)
        stop_orphans(FOLDER_PREFIX)
        folder = server_folder(FOLDER_PREFIX)
        # YAML is a superset of JSON.
        (folder / "prometheus.yml").write_text(json.dumps(scrape_config(targets), indent=2))
        for _attempt in range(3):  # another process may take the free port first
            server = cls._launch(binary, folder, free_port())
            if server.wait_ready():
                return server
            server.process = None
        log = (folder / "server.log").read_text(errors="replace")[-3000:]
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"prometheus did not start; its log ends with:\n{log}")

    @classmethod
    def _launch(cls, binary: Path, folder: Path, port: int) -> PrometheusServer:
        command = [
            str(binary),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with (folder / "server.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        (folder / SERVER_FILE).write_text(str(process.pid))
        return cls(port, process, folder)

    def wait_ready(self) -> bool:
        """Whether the server answers `/-/ready` within START_SECONDS (False: it exited)."""
        assert self.process is not None
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with _DIRECT.open(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self._end_process()
        return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a GET on the HTTP API (`/api/v1/...`); raises on an error status."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with _DIRECT.open(url, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:  # a bad query: 400 with a JSON error
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus answered {path} {params}: {body}")
        return body["data"]

    def targets(self) -> list[dict[str, Any]]:
        """The active targets: `labels`, `health` ("up", "down", "unknown"), `lastError`..."""
        return self.api("/api/v1/targets", state="active")["activeTargets"]

    def health(self) -> dict[str, str]:
        """Process name → its target's health."""
        return {t["labels"].get("process", t["scrapeUrl"]): t["health"] for t in self.targets()}

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: [{"metric": {labels}, "value": [time, "text"]}]."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The one value of `expr` (e.g. a `sum(...)`); None when the result is empty."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} has {len(result)} series: {result}"
        return float(result[0]["value"][1]) if result else None

    def values(self, expr: str, label: str) -> dict[str, float]:
        """`expr`'s values by one label (e.g. `discord_connected` by `shard`)."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def log(self) -> str:
        return (self.folder / "server.log").read_text(errors="replace") if self.folder else ""

    def _end_process(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def stop(self) -> None:
        self._end_process()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def start_prometheus() -> Iterator[Callable[[Mapping[str, str]], PrometheusServer]]:
    """Starts Prometheus servers scraping the given targets; all stop after the test."""
    started: list[PrometheusServer] = []

    def start(targets: Mapping[str, str]) -> PrometheusServer:
        started.append(PrometheusServer.start(targets))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()
