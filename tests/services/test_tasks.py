"""The runner interface without Redis: `LocalRunner`, and `TaskiqRunner` over taskiq's
`InMemoryBroker` with the worker's own handler; both give the same results."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from taskiq import InMemoryBroker

from bot.services.jobs import Job, JobRunner
from bot.services.speech import SpeechService
from bot.services.storage import Storage
from bot.services.tasks.client import raise_failure
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.remote import TaskiqRunner, register, worker_handler
from bot.services.tasks.work import WorkServices

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as opened:
        yield opened


@pytest.fixture
async def services() -> AsyncIterator[WorkServices]:
    pool = JobRunner(max_workers=1)
    yield WorkServices(SpeechService(["whisper"], jobs=pool), pool)
    await pool.close()


@pytest.fixture(params=["local", "taskiq"])
async def runner(request, storage: Storage, services: WorkServices):  # type: ignore[no-untyped-def]
    jobstore = JobStore(storage)
    if request.param == "local":
        yield LocalRunner(services, jobstore)
        return
    broker = InMemoryBroker()
    register(broker, worker_handler(broker, storage.blobs, services))
    tasks = TaskiqRunner(broker, storage.blobs, jobstore, poll_seconds=0.01)
    yield tasks
    await tasks.close()


def a_job() -> Job:
    return Job("ab12cd34", "transcribe", "", owner="1100000000000000001", subject="hello")


async def test_transcription_runs_on_either_runner(runner) -> None:  # type: ignore[no-untyped-def]
    job = a_job()
    result = await runner.run(
        "transcribe", {"language": "en-US"}, job,
        inputs={"audio": (FIXTURES / "hello.wav").read_bytes()},
    )  # fmt: skip
    assert result.ok, result.value
    assert "hello" in result.value["transcript"]["text"].lower()
    assert job.status == "done"
    assert (await runner.jobstore.get(job.id)).status == "done"


async def test_a_bad_input_is_one_clear_error_on_either_runner(runner) -> None:  # type: ignore[no-untyped-def]
    result = await runner.run("transcribe", {}, a_job(), inputs={"audio": b"not audio"})
    assert not result.ok
    with pytest.raises(Exception) as raised:
        raise_failure(result)
    assert "Traceback" not in str(raised.value) and str(raised.value)


async def test_an_unknown_task_is_refused(runner) -> None:  # type: ignore[no-untyped-def]
    result = await runner.run("mine_bitcoin", {}, a_job())
    assert result.value["error"] == "Unknown task 'mine_bitcoin'."


async def test_a_job_whose_bot_stopped_shows_as_interrupted(storage: Storage) -> None:
    job = a_job()
    await JobStore(storage).record(job)  # queued by a bot that then stopped
    later = JobStore(storage, stale_seconds=0.0)  # another bot process, later
    found = await later.get(job.id)
    assert found is not None and found.status == "interrupted"
    assert (await later.list(owner=job.owner))[0].status == "interrupted"
    assert await later.list(owner="another-server") == []
