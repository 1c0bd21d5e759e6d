"""Workers (issue 11): `python -m bench workers`.

(a) Transcription throughput through the broker: a batch of clips of 10-30 s, submitted at
    once through `TaskiqRunner` to a real redis-server, with 1 worker and then 2 workers
    (`python -m bot worker`, one task at a time each): audio minutes per wall minute.
(b) The latency the broker path adds to a 10 s clip: p50 of `TaskiqRunner` (queue, a
    worker downloads the clip by URL, decodes, recognizes; the bot polls the result) minus
    p50 of the in-process path (`LocalRunner`: the same task body in this process).

The clips are served over loopback HTTP (as the sandbox serves attachments) and go by URL.
Both paths use whisper tiny.en int8; the workers load it at start (WARM_UP on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import median, table
from bot.services.speech import audio
from bot.services.speech.service import SpeechService
from bot.services.speech.whisper import WhisperEngine
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.job import Job, new_job_id
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.remote import TaskiqRunner, make_broker
from bot.services.tasks.work import WorkServices
from tests.fixtures import speech as samples
from tests.redis_server import RedisServer
from tests.worker_process import Worker

log = logging.getLogger(__name__)

NAMESPACE = "1100000000000000001"
BATCH_SECONDS = (10, 14, 18, 22, 26, 30, 12, 20)  # 8 clips, 152 s of audio
LATENCY_CLIP_SECONDS = 10
LATENCY_RUNS = 7
EXTRA_LATENCY_TARGET_MS = 150.0
SPEEDUP_TARGET = 1.3  # 2 workers vs 1 on this machine


class Clips:
    """WAV clips served over loopback HTTP: url(name)."""

    def __init__(self, clips: dict[str, bytes]) -> None:
        self.clips = clips
        self.base = ""

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Clips]:
        app = web.Application()
        app.router.add_get("/{name}", self._get)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()

    async def _get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.clips[request.match_info["name"]], content_type="audio/wav")

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def make_clips() -> tuple[dict[str, bytes], float]:
    clips = {}
    total = 0.0
    for index, seconds in enumerate(BATCH_SECONDS):
        clip, _said = samples.sentences_for(seconds)
        clips[f"batch{index}.wav"] = audio.to_wav(clip)
        total += clip.duration_seconds
    latency, _said = samples.sentences_for(LATENCY_CLIP_SECONDS)
    clips["latency.wav"] = audio.to_wav(latency)
    return clips, total


def a_job() -> Job:
    return Job(new_job_id(), "transcribe", "", namespace=NAMESPACE, subject="bench")


def payload(clips: Clips, name: str) -> dict[str, Any]:
    return {"url": clips.url(name), "filename": name, "language": "en-US"}


@asynccontextmanager
async def workers(env: dict[str, str], count: int) -> AsyncIterator[list[Worker]]:
    """`count` worker processes, started in threads: the loop must go on (a transaction
    of this process left waiting would lock the database the workers open)."""
    started = [await asyncio.to_thread(Worker, env) for _ in range(count)]
    try:
        yield started
    finally:
        for worker in started:
            await asyncio.to_thread(worker.stop)


async def batch_throughput(runner: TaskiqRunner, clips: Clips, audio_seconds: float) -> float:
    """Audio minutes per wall minute for the whole batch, submitted at once."""
    names = [n for n in clips.clips if n.startswith("batch")]
    start = time.perf_counter()
    results = await asyncio.gather(*(runner.run("transcribe", payload(clips, n), a_job())
                                     for n in names))  # fmt: skip
    wall = time.perf_counter() - start
    assert all(r.ok for r in results), [r.value for r in results if not r.ok]
    log.info("batch of %d clips (%.0f s of audio) in %.1f s", len(names), audio_seconds, wall)
    return audio_seconds / wall


async def latencies(runner: Any, clips: Clips) -> list[float]:
    found = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        result = await runner.run("transcribe", payload(clips, "latency.wav"), a_job())
        found.append(time.perf_counter() - start)
        assert result.ok, result.value
    return found


async def _run() -> str:
    clips_data, audio_seconds = await asyncio.to_thread(make_clips)
    with (
        tempfile.TemporaryDirectory(prefix="bench-workers-") as scratch,
        RedisServer.start() as redis,
    ):
        url = redis.url()
        folder = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
        env.update(
            TASK_BROKER_URL=url, DATABASE_URL=f"sqlite:///{folder / 'shared.db'}",
            DATA_DIR=str(folder / "worker"), STT_ENGINES="whisper", WARM_UP="on",
            WORKER_CONCURRENCY="1", LOG_LEVEL="WARNING",
        )  # fmt: skip
        storage = Storage(folder / "shared.db")
        await storage.open()
        jobstore = JobStore(storage)
        remote = TaskiqRunner(make_broker(url), DatabaseBlobs(storage), jobstore)
        pool = JobRunner(max_workers=1)
        whisper = WhisperEngine()
        await asyncio.to_thread(whisper.load)
        local = LocalRunner(WorkServices(SpeechService([whisper], jobs=pool), pool), jobstore)
        try:
            async with Clips(clips_data).serving() as clips:
                local_s = await latencies(local, clips)
                async with workers(env, 1):
                    broker_s = await latencies(remote, clips)
                    one = await batch_throughput(remote, clips, audio_seconds)
                async with workers(env, 2):
                    two = await batch_throughput(remote, clips, audio_seconds)
        finally:
            await remote.close()
            await pool.close()
            await jobstore.close()
            await storage.close()
    extra_ms = (median(broker_s) - median(local_s)) * 1000
    rows = [
        ("(a) throughput, 1 worker", "—", f"{one:.1f} audio min / min", None),
        (
            "(a) throughput, 2 workers",
            f"≥ {SPEEDUP_TARGET:.1f}× 1 worker",
            f"{two:.1f} audio min / min ({two / one:.2f}×)",
            two / one >= SPEEDUP_TARGET,
        ),
        ("(b) 10 s clip, in-process (baseline), p50", "—", f"{median(local_s):.2f} s", None),
        ("(b) 10 s clip, through a worker, p50", "—", f"{median(broker_s):.2f} s", None),
        (
            "(b) latency the broker adds, p50",
            f"≤ {EXTRA_LATENCY_TARGET_MS:.0f} ms",
            f"{extra_ms:.0f} ms",
            extra_ms <= EXTRA_LATENCY_TARGET_MS,
        ),
    ]
    return "\n".join(
        [
            "## Workers (issue 11)",
            "",
            f"A real redis-server and `python -m bot worker` processes (WORKER_CONCURRENCY 1) on "
            f"{os.cpu_count()} CPU cores, a shared SQLite database, whisper tiny.en int8. Batch: "
            f"{len(BATCH_SECONDS)} clips of 10-30 s ({audio_seconds:.0f} s of audio) submitted "
            f"at once through `TaskiqRunner`; latency: {LATENCY_RUNS} runs of a "
            f"{LATENCY_CLIP_SECONDS} s clip, one at a time. Clips go by URL over loopback HTTP. "
            "Baselines measured in the same run.",
            "",
            table(rows),
        ]
    )


def run() -> str:
    return asyncio.run(_run())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(run())
