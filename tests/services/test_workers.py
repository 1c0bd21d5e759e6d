"""Tasks on real workers: a redis-server, `python -m bot worker` subprocesses and a shared
SQLite database; the bot's side is a `TaskiqRunner`, as the bot builds it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.services.speech import audio
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.job import Job, new_job_id
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.remote import TaskiqRunner, make_broker
from tests.redis_server import RedisServer
from tests.worker_process import Worker

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
IDLE_TIMEOUT = 3
NAMESPACE = "1100000000000000001"


@pytest.fixture
def worker_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.update(
        TASK_BROKER_URL=redis_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}",
        DATA_DIR=str(tmp_path / "worker-data"),
        STT_ENGINES="whisper",
        WORKER_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT),
        LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture
def worker(worker_env: dict[str, str]) -> Iterator[Worker]:
    started = Worker(worker_env)
    yield started
    started.stop()


@pytest.fixture
async def runner(worker_env: dict[str, str], tmp_path: Path) -> AsyncIterator[TaskiqRunner]:
    storage = Storage(tmp_path / "shared.db")
    await storage.open()
    broker = make_broker(worker_env["TASK_BROKER_URL"], idle_timeout_seconds=IDLE_TIMEOUT)
    tasks = TaskiqRunner(broker, DatabaseBlobs(storage), JobStore(storage), poll_seconds=0.1)
    yield tasks
    await tasks.close()
    await storage.close()


def a_job(kind: str = "transcribe") -> Job:
    return Job(new_job_id(), kind, "", namespace=NAMESPACE, subject="test")


async def test_a_worker_transcribes_audio_from_the_blob_store(
    worker: Worker, runner: TaskiqRunner
) -> None:
    progress: list[dict] = []

    async def seen(meta: dict) -> None:
        progress.append(meta)

    result = await runner.run(
        "transcribe", {"language": "en-US"}, a_job(),
        inputs={"audio": (FIXTURES / "hello.wav").read_bytes()}, on_progress=seen,
    )  # fmt: skip
    assert result.ok, result.value
    assert "hello" in result.value["transcript"]["text"].lower()
    assert result.value["transcript"]["engine"] == "whisper"


async def test_a_worker_transcribes_audio_by_url(worker: Worker, runner: TaskiqRunner) -> None:
    app = web.Application()
    app.router.add_get("/hello.wav", lambda _: web.FileResponse(FIXTURES / "hello.wav"))
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        url = f"http://127.0.0.1:{port}/hello.wav"
        result = await runner.run("transcribe", {"url": url, "filename": "hello.wav"}, a_job())
    finally:
        await server.cleanup()
    assert result.ok, result.value
    assert "hello" in result.value["transcript"]["text"].lower()


async def test_corrupt_audio_gets_one_clear_error(worker: Worker, runner: TaskiqRunner) -> None:
    job = a_job()
    result = await runner.run("transcribe", {"filename": "x.ogg"}, job, inputs={"audio": b"junk"})
    assert not result.ok
    assert "Traceback" not in result.value["error"] and result.value["error"]
    assert job.status == "failed"
    stored = await runner.jobstore.get(job.id)  # type: ignore[union-attr]
    assert stored is not None and stored.status == "failed"


async def test_an_unknown_job_id_gets_one_clear_error(worker: Worker, runner: TaskiqRunner) -> None:
    await runner.start()
    await runner.kick("feedfeed", "transcribe", {"job_id": "feedfeed", "namespace": NAMESPACE})
    value = await asyncio.wait_for(runner.wait("feedfeed"), 60)
    assert value == {
        "ok": False,
        "error": "Job 'feedfeed' is unknown.",
        "type": "NotFoundError",
        "refused": True,  # the user's to fix, not the worker's failure
    }


async def test_a_worker_trains_a_model_from_a_dataset_blob(
    worker: Worker, runner: TaskiqRunner
) -> None:
    data = (FIXTURES / "three_labels.csv").read_bytes()
    payload = {"dataset": "three_labels", "files": ["three_labels.csv"],
               "max_bytes": 5_000_000, "max_rows": 200_000}  # fmt: skip
    job = a_job("train")
    result = await runner.run("train", payload, job, inputs={"three_labels.csv": data})
    assert result.ok, result.value
    assert result.outputs["model"][:2] == b"PK"  # an .npz of arrays
    assert result.value["result"]["labels"] == 3
    assert (await runner.jobstore.get(job.id)).status == "done"  # type: ignore[union-attr]
    # Its blobs are gone soon after the bot has the result.
    for _ in range(200):
        if await runner.blobs.list(NAMESPACE, f"jobs/{job.id}/") == []:
            break
        await asyncio.sleep(0.05)
    assert await runner.blobs.list(NAMESPACE, f"jobs/{job.id}/") == []


async def test_a_killed_worker_s_task_goes_to_another_and_one_answer_comes(
    worker_env: dict[str, str], runner: TaskiqRunner
) -> None:
    hello = audio.decode((FIXTURES / "hello.wav").read_bytes(), "hello.wav")
    long_audio = audio.to_wav(hello * 12)
    first = Worker(worker_env)
    job = a_job()
    answer = asyncio.create_task(runner.run("transcribe", {}, job, inputs={"audio": long_audio}))
    try:
        while (found := await runner.jobstore.get(job.id)) is None or found.status != "running":  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        second = await asyncio.to_thread(Worker, worker_env)  # the loop goes on meanwhile
        try:
            result = await asyncio.wait_for(answer, 300)
        finally:
            second.stop()
    finally:
        first.stop()
    assert result.ok, result.value
    assert "hello" in result.value["transcript"]["text"].lower()
    assert (await runner.jobstore.get(job.id)).status == "done"  # type: ignore[union-attr]


async def test_a_worker_waits_while_redis_is_down_and_works_again_when_it_is_back(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    own = RedisServer.start()  # this test stops its Redis: not the session's
    port = int(own.base_url.rsplit(":", 1)[1])
    env = {**worker_env, "TASK_BROKER_URL": own.url()}
    worker = Worker(env)
    try:
        own.stop()
        await asyncio.sleep(6)
        retries = worker.log().count("the task queue is unreachable; listening again in")
        failures = worker.log().count("Exception found while listening to the broker")
        assert 1 <= retries <= 4, worker.log()[-3000:]  # 1 s, 2 s, 4 s: not hundreds a second
        assert failures <= retries + 1
        own = RedisServer.start(port)
        storage = Storage(tmp_path / "shared.db")
        await storage.open()
        broker = make_broker(own.url(), idle_timeout_seconds=IDLE_TIMEOUT)
        tasks = TaskiqRunner(broker, DatabaseBlobs(storage), JobStore(storage), poll_seconds=0.1)
        try:
            wav = (FIXTURES / "hello.wav").read_bytes()
            result = await tasks.run("transcribe", {}, a_job(), inputs={"audio": wav})
        finally:
            await tasks.close()
            await storage.close()
        assert result.ok, result.value
        assert "hello" in result.value["transcript"]["text"].lower()
    finally:
        worker.stop()
        own.stop()
