"""Serving the metrics and the health of a process: `/metrics`, `/healthz`, `/readyz` (issue #21).

- `/metrics`: `bot.metrics.REGISTRY` in Prometheus' text format, as prometheus-client writes it.
- `/healthz` (liveness): 200 while the event loop answers. A ticker on the loop wakes every
  100 ms (and tells LOOP_LAG how late it woke); when it has not for a second, 503: the loop is
  stuck, and an orchestrator should restart the process.
- `/readyz` (readiness): 200 when every check passes (the bot's shards are connected, the
  database answers `SELECT 1`, Redis answers PING when there is a broker); else 503 with one
  line per reason. A process that is not ready needs no restart; it comes back by itself.

The server is aiohttp on its own event loop in a thread: served from the bot's loop it could
never see that loop stuck, and a scrape takes no time from the bot. The checks run on the
bot's loop (its database and Redis clients belong there), each within a timeout.

The port is bound when the `Observer` is made, before anything else starts, so a port in use
stops the process at once with one line (`PortInUseError`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.metrics import LOOP_LAG, REGISTRY

log = logging.getLogger(__name__)

TICK_SECONDS = 0.1  # the ticker's period: LOOP_LAG's resolution
STUCK_SECONDS = 1.0  # a loop that has not ticked for this long is stuck (/healthz 503)
CHECK_SECONDS = 2.0  # each readiness check must answer within this
PROBE_SECONDS = 5.0  # `python -m bot health` waits this long for each answer
REASON_CHARS = 200

# A readiness check: returns when ready, raises (NotReady or any error) with the reason.
Check = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """A readiness check's reason, e.g. "shard 0 is disconnected"."""


class PortInUseError(Exception):
    """METRICS_PORT can't be bound; the message is the one line the process prints."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use is known at start."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise PortInUseError(
            f"METRICS_PORT={port}: can't listen on {host}:{port} ({why}); "
            "give each process its own port"
        ) from None


def reason_of(exc: BaseException | str) -> str:
    """One short line for a failed check."""
    text = (str(exc) or type(exc).__name__).strip().splitlines()[0]
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


async def redis_answers(url: str) -> None:
    """A check: Redis at `url` answers PING (a connection of its own, closed after)."""
    client = redis.from_url(url, socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS)
    try:
        await client.ping()
    finally:
        await client.aclose()


class Observer:
    """Serves /metrics, /healthz and /readyz for the process whose loop calls `start()`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        stuck_seconds: float = STUCK_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.host = host
        self.stuck_seconds = stuck_seconds
        self.check_seconds = check_seconds
        self._socket: socket.socket | None = bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self.checks: dict[str, Check] = {}
        self.last_tick = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._server_loop: asyncio.AbstractEventLoop | None = None

    def add_check(self, name: str, check: Check) -> None:
        """`check` runs on the loop that started the observer, at each /readyz."""
        self.checks[name] = check

    # ----- lifecycle (on the process's loop) ----------------------------------------------

    async def start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.last_tick = time.monotonic()
        self._ticker = asyncio.create_task(self._tick(), name="observe-ticker")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="observe-server", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(started)
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        if self._server_loop is not None and self._thread is not None:
            self._server_loop.call_soon_threadsafe(self._server_loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
        self._thread = self._server_loop = None
        if self._socket is not None:  # never served (or served: then already closed)
            self._socket.close()
            self._socket = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            LOOP_LAG.observe(max(0.0, loop.time() - due))
            self.last_tick = time.monotonic()

    # ----- what the endpoints say ---------------------------------------------------------

    def stuck_for(self) -> float | None:
        """Seconds since the loop last ticked when that is too long; None while it answers."""
        age = time.monotonic() - self.last_tick
        return age if age > self.stuck_seconds else None

    async def problems(self) -> list[str]:
        """Why the process is not ready (empty: ready); callable from any loop."""
        stuck = self.stuck_for()
        if stuck is not None:
            return [f"event loop: stuck for {stuck:.1f} s"]
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._run_checks(), self._loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.check_seconds + 1)
        except TimeoutError:
            return ["event loop: the checks got no turn"]

    async def _run_checks(self) -> list[str]:
        names = list(self.checks)
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(self.checks[name](), self.check_seconds) for name in names),
            return_exceptions=True,
        )
        problems = []
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, TimeoutError):
                problems.append(f"{name}: no answer in {self.check_seconds:g} s")
            elif isinstance(outcome, BaseException):
                problems.append(f"{name}: {reason_of(outcome)}")
        return problems

    # ----- the server (its own loop, in a thread) -----------------------------------------

    def _serve(self, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            runner = loop.run_until_complete(self._open())
            self._server_loop = loop
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("the metrics server stopped")
        finally:
            loop.close()

    async def _open(self) -> web.AppRunner:
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
            ]
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock, self._socket = self._socket, None
        await web.SockSite(runner, sock).start()  # type: ignore[arg-type]
        return runner

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        stuck = self.stuck_for()
        if stuck is not None:
            return web.Response(status=503, text=f"event loop: stuck for {stuck:.1f} s\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = await self.problems()
        if problems:
            return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
        return web.Response(text="ready\n")


def probe_host(host: str) -> str:
    """Where to reach a server listening on `host`: a wildcard address means this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_SECONDS) as response:  # noqa: S310
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            return exc.code, exc.read().decode(errors="replace")


def probe(host: str, port: int | None) -> tuple[bool, str]:
    """`python -m bot health`: whether the process on `port` is alive and ready, and one line
    saying so or why not."""
    if port is None:
        return False, "METRICS_PORT is not set, so this process serves no health endpoints."
    address = probe_host(host)
    base = f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"
    try:
        for path, meaning in (("/healthz", "not alive"), ("/readyz", "not ready")):
            status, body = _get(base + path)
            if status != 200:
                reasons = "; ".join(line for line in body.splitlines() if line.strip())
                return False, f"{meaning} ({status}): {reasons or 'no reason given'}"
    except (OSError, ValueError) as exc:
        return False, f"nothing answers at {base}: {reason_of(getattr(exc, 'reason', exc))}"
    return True, f"alive and ready ({base})"
