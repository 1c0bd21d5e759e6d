"""The runner interface without Redis: `LocalRunner`, and `TaskiqRunner` over taskiq's
`InMemoryBroker` with the worker's own handler; both give the same results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from taskiq import InMemoryBroker

from bot.errors import NotFoundError, TooLargeError, UserFacingError, crosses_processes
from bot.services.speech.errors import (
    NoSpeechError,
    PartialTranscriptError,
    SpeechUnavailableError,
)
from bot.services.speech.service import SpeechService
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.base import TaskFailedError, TaskResult
from bot.services.tasks.client import raise_failure
from bot.services.tasks.job import Job
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.remote import TaskiqRunner, register, worker_handler
from bot.services.tasks.work import WorkServices, failure, train_files

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
    register(broker, worker_handler(broker, DatabaseBlobs(storage), services))
    tasks = TaskiqRunner(broker, DatabaseBlobs(storage), jobstore, poll_seconds=0.01)
    yield tasks
    await tasks.close()


def a_job() -> Job:
    return Job("ab12cd34", "transcribe", "", namespace="1100000000000000001", subject="hello")


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
    assert (await later.list(namespace=job.namespace))[0].status == "interrupted"
    assert await later.list(namespace="another-server") == []


@pytest.fixture(scope="module")
def three_labels_model() -> tuple[bytes, str]:
    """(model bytes, sha256) trained from the three-label fixture."""
    model, _entry, _fields = train_files(
        {"three_labels.csv": (FIXTURES / "three_labels.csv").read_bytes()},
        "three_labels", 5_000_000, 200_000,
    )  # fmt: skip
    return model, hashlib.sha256(model).hexdigest()


async def test_test_items_are_scored_on_either_runner(runner, three_labels_model) -> None:  # type: ignore[no-untyped-def]
    model, sha256 = three_labels_model
    items = [["hello there", "greeting"], ["goodbye", "goodbye"], ["is it raining", None]]
    result = await runner.run(
        "evaluate", {"sha256": sha256, "min_confidence": 0.3}, a_job(),
        inputs={"model": model, "items.json": json.dumps(items).encode()},
    )  # fmt: skip
    assert result.ok, result.value
    assert [p["label"] for p in result.value["predictions"]] == ["greeting", "goodbye", "weather"]
    assert result.value["labeled"] == 2 and result.value["accuracy"] == 1.0
    assert "precision" in result.value["report"]
    assert result.outputs["confusion.png"].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("sha256", "items", "error"),
    [
        ("0" * 64, [["hi", None]], "The model sent for the test does not match its record."),
        (None, b"[[", "The test items are not valid JSON."),
        (None, [["hi"]], "The test items must be [text, label] pairs."),
    ],
)
async def test_bad_test_inputs_get_one_clear_error(  # type: ignore[no-untyped-def]
    runner, three_labels_model, sha256, items, error
) -> None:
    model, good = three_labels_model
    rows = items if isinstance(items, bytes) else json.dumps(items).encode()
    result = await runner.run(
        "evaluate", {"sha256": sha256 or good, "min_confidence": 0.3}, a_job(),
        inputs={"model": model, "items.json": rows},
    )  # fmt: skip
    assert result.value["error"] == error


@pytest.mark.parametrize(
    "error",
    [
        NoSpeechError("nothing heard"),
        SpeechUnavailableError("down"),
        PartialTranscriptError("so far so good", 50.0, 120.0),
        NotFoundError("Job 'x' is unknown."),
        TooLargeError("too big"),
    ],
)
def test_a_registered_error_crosses_the_process_boundary_as_itself(error: Exception) -> None:
    result = TaskResult(json.loads(json.dumps(failure(error))))  # as a worker sends it
    with pytest.raises(type(error)) as raised:
        raise_failure(result)
    assert raised.value.message == error.message  # type: ignore[attr-defined]
    assert getattr(raised.value, "__dict__", {}) == error.__dict__


def test_any_other_error_comes_back_as_a_task_failure_with_a_safe_reason() -> None:
    result = TaskResult(failure(RuntimeError("boom at /srv/bot/secret/path.py")))
    with pytest.raises(TaskFailedError) as raised:
        raise_failure(result)
    assert "/srv" not in raised.value.message and "RuntimeError" in raised.value.message


def test_two_error_types_may_not_cross_under_one_name() -> None:
    class NoSpeechError(UserFacingError):  # the same name as speech's
        pass

    with pytest.raises(TypeError, match="two error types"):
        crosses_processes(NoSpeechError)


# ----- the bot's own runner and what the bot calls -------------------------------------------


async def test_a_refusal_by_the_caller_stops_the_task_and_ends_its_job(
    runner,  # type: ignore[no-untyped-def]
) -> None:
    """A caller that refuses once it learns the length (over its limit) gets its own error
    back on either runner; the job ends failed with that reason, never left running."""
    job = a_job()
    reports: list[dict] = []

    async def refuse(meta: dict) -> None:
        reports.append(meta)
        raise TooLargeError("That is more audio than you have left this hour.")

    with pytest.raises(TooLargeError, match="more audio than you have left"):
        await runner.run(
            "transcribe", {"language": "en-US"}, job,
            inputs={"audio": (FIXTURES / "hello.wav").read_bytes()}, on_progress=refuse,
        )  # fmt: skip
    assert reports and reports[0]["done_seconds"] == 0.0 and reports[0]["total_seconds"] > 1
    stored = await runner.jobstore.get(job.id)
    assert (stored.status, stored.error) == (
        "failed",
        "That is more audio than you have left this hour.",
    )
    assert job.id not in runner.jobstore._alive  # no heartbeat keeps it "running"


async def test_a_job_nobody_sees_has_no_row_on_the_bots_runner(
    storage: Storage, services: WorkServices
) -> None:
    jobstore = JobStore(storage)
    runner = LocalRunner(services, jobstore)
    hidden = Job("ab12cd35", "transcribe", "", namespace="1100000000000000001", shown=False)
    result = await runner.run("mine_bitcoin", {}, hidden)
    assert not result.ok and hidden.status == "failed"
    assert await jobstore.get(hidden.id) is None
    shown = a_job()
    await runner.run("mine_bitcoin", {}, shown)
    assert (await jobstore.get(shown.id)).status == "failed"


async def test_a_task_cancelled_when_the_bot_stops_is_interrupted(
    storage: Storage, services: WorkServices
) -> None:
    import asyncio

    started = asyncio.Event()

    async def forever(payload: dict, ctx: object) -> dict:
        started.set()
        await asyncio.sleep(3600)
        return {"ok": True}

    jobstore = JobStore(storage)
    runner = LocalRunner(services, jobstore, bodies={"train": forever})
    job = a_job()
    running = asyncio.create_task(runner.run("train", {}, job))
    await started.wait()
    assert (await jobstore.get(job.id)).status == "running"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    stored = await jobstore.get(job.id)
    assert stored.status == "interrupted" and stored.error.startswith("Interrupted")


async def test_the_transcriber_hears_audio_by_url_and_decoded_audio_alike(
    runner,  # type: ignore[no-untyped-def]
) -> None:
    """What the cogs and listening call, on either runner: a voice message by its URL (the
    process that runs the task downloads it), and audio the bot decoded itself."""
    from aiohttp import web

    from bot.services.speech import audio
    from bot.services.speech.transcriber import Transcriber
    from bot.services.speech.transcript import AudioSource, Hearing

    data = (FIXTURES / "hello.ogg").read_bytes()
    app = web.Application()
    app.router.add_get("/hello.ogg", lambda _request: web.Response(body=data))
    site_runner = web.AppRunner(app)
    await site_runner.setup()
    site = web.TCPSite(site_runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    transcriber = Transcriber(runner)
    namespace = "1100000000000000001"
    try:
        lengths: list[float] = []

        async def on_length(seconds: float) -> None:
            lengths.append(seconds)

        source = AudioSource(f"http://127.0.0.1:{port}/hello.ogg", "hello.ogg")
        by_url = await transcriber.transcribe_source(
            source, Hearing("en-US"), on_length=on_length, namespace=namespace
        )
        segment = audio.decode(data, "hello.ogg")
        decoded = await transcriber.recognize(segment, "en-US", namespace=namespace)
    finally:
        await site_runner.cleanup()
    assert "hello" in by_url.text.lower() and decoded.text == by_url.text
    assert lengths == [pytest.approx(segment.duration_seconds)]
    with pytest.raises(ValueError, match="namespace"):
        await transcriber.recognize(segment, "en-US")
