"""A real Redis server for the tests (a pytest plugin loaded by tests/conftest.py).

`RedisServer.start()` runs Debian's `redis-server` on a free loopback port (or the one given)
with no persistence (`--save '' --appendonly no`) in a temporary folder, and `stop()` ends it.
`redis_server` (session) is one for the whole run; `redis_url` (per test) is a URL on it,
emptied after the test. A run that was killed leaves a folder with its pid; the next start
stops such orphans.

Set TEST_REDIS_URL to use a server you run instead. With neither, the tests fail and say how
to install one: they never skip Redis.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.processes import SERVER_FILE, free_port, server_folder, stop_orphans

HOW_TO_INSTALL = (
    "redis-server was not found. Install it with `apt-get install redis-server` (as root; "
    "scripts/bootstrap.sh does this), put it on PATH or name it in REDIS_SERVER, or set "
    "TEST_REDIS_URL to the URL of a server."
)
START_SECONDS = 20
FOLDER_PREFIX = "bot-redis-"


def redis_binary() -> Path | None:
    for candidate in (os.environ.get("REDIS_SERVER"), shutil.which("redis-server")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    fallback = Path("/usr/bin/redis-server")
    return fallback if fallback.is_file() else None


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One Redis server: ours (a child process) or the one TEST_REDIS_URL names."""

    def __init__(self, url: str, process: subprocess.Popen[bytes] | None = None,
                 folder: Path | None = None) -> None:  # fmt: skip
        self.base_url = url.rstrip("/")
        self.process = process
        self.folder = folder

    @classmethod
    def start(cls, port: int | None = None) -> RedisServer:
        """A new server on `port` (default: a free one), answering PING when returned."""
        binary = redis_binary()
        if binary is None:
            pytest.fail(HOW_TO_INSTALL, pytrace=False)
        stop_orphans(FOLDER_PREFIX)
        folder = server_folder(FOLDER_PREFIX)
        port = port or free_port()
        command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
                   "--logfile", str(folder / "server.log")]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        (folder / SERVER_FILE).write_text(str(process.pid))
        server = cls(f"redis://127.0.0.1:{port}", process, folder)
        deadline = time.monotonic() + START_SECONDS
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (folder / "server.log").read_text(errors="replace")[-2000:]
                server.stop()
                raise RuntimeError(f"redis-server did not start on port {port}:\n{log}")
            time.sleep(0.05)
        return server

    def url(self, db: int = 0) -> str:
        return f"{self.base_url}/{db}"

    def flush(self) -> None:
        """Empty every database (between tests)."""
        client = redis.Redis.from_url(self.url())
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield RedisServer(external.rsplit("/", 1)[0] if external.count("/") > 2 else external)
        return
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A URL of the test Redis (database 0), emptied after the test."""
    try:
        yield redis_server.url()
    finally:
        redis_server.flush()
