"""The domain metrics are counted where the work happens (issue #21): each test does real work
through a service and reads the change in `bot.metrics.REGISTRY`."""

from __future__ import annotations

import asyncio
import gc
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from taskiq import InMemoryBroker

from bot.errors import EngineUnavailableError, NotFoundError
from bot.metrics import REGISTRY
from bot.services.hearing.listening.service import Callbacks, ListeningService
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.service import ModelService
from bot.services.speech import audio
from bot.services.speech.errors import NoSpeechError, SpeechUnavailableError
from bot.services.speech.service import SpeechService
from bot.services.speech.transcript import Progress
from bot.services.speech.whisper import WhisperEngine
from bot.services.storage import Storage
from bot.services.storage.blobs import DatabaseBlobs
from bot.services.tasks.base import job_key
from bot.services.tasks.job import Job
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.jobstore import JobStore
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.remote import TaskiqRunner, register, worker_handler
from bot.services.tasks.work import BODIES, WorkServices
from bot.services.tenancy.tenants import TenantLimits, Tenants
from bot.services.voice.player import PlaybackQueue
from bot.services.voice.synthesis import SpokenAudio
from tests.services.listening.audio import Clock, silence, tone
from tests.services.listening.test_service import FakeSpeech, Heard, speak, until

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "bot" / "samples" / "smalltalk.csv"
HELLO = ROOT / "tests" / "fixtures" / "hello.wav"
NAMESPACE = "1100000000000000001"


def value(name: str, **labels: str) -> float:
    """A sample's value now (0 when never counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """The change of one sample since it was made: `Delta(name, **labels)()`."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name, self.labels = name, labels
        self.before = value(name, **labels)

    def __call__(self) -> float:
        return value(self.name, **self.labels) - self.before


class DownEngine:
    name = "google"
    holds_gil = False

    def transcribe(self, wav: bytes, language: str) -> str:
        raise EngineUnavailableError("not reachable")


def transcriptions(engine: str, language: str, outcome: str) -> Delta:
    labels = {"engine": engine, "language": language, "outcome": outcome}
    return Delta("voicechat_transcriptions_total", **labels)


# ----- speech ---------------------------------------------------------------------------------


async def test_a_real_transcription_counts_ok_with_its_seconds(
    whisper_engine: WhisperEngine, hello: audio.AudioSegment
) -> None:
    ok = transcriptions("whisper", "en-US", "ok")
    audio_seconds = Delta("voicechat_audio_transcribed_seconds_total")
    took = Delta("voicechat_recognition_duration_seconds_count", engine="whisper")
    took_sum = Delta("voicechat_recognition_duration_seconds_sum", engine="whisper")
    rtf = Delta("voicechat_recognition_real_time_factor_count", engine="whisper")
    first_text = Delta("voicechat_transcript_first_text_seconds_count")
    shown: list[Progress] = []

    async def progress(report: Progress) -> None:
        shown.append(report)

    service = SpeechService([whisper_engine])
    transcript = await service.recognize(hello, "en-US", on_progress=progress)
    assert "hello" in transcript.text.lower() and shown
    assert ok() == 1 and took() == 1 and rtf() == 1 and first_text() == 1
    assert audio_seconds() == pytest.approx(hello.duration_seconds)
    assert 0 < took_sum() < 120
    await service.transcribe(HELLO.read_bytes(), "hello.wav", "en-US")  # not streamed
    assert ok() == 2 and first_text() == 1


async def test_silence_counts_no_speech_and_engines_down_unavailable(
    whisper_engine: WhisperEngine,
) -> None:
    silent = audio.to_wav(audio.AudioSegment.silent(duration=2000, frame_rate=16_000))
    no_speech = transcriptions("none", "fr", "no_speech")
    with pytest.raises(NoSpeechError):
        await SpeechService([whisper_engine]).transcribe(silent, "silence.wav", "fr")
    assert no_speech() == 1
    unavailable = transcriptions("none", "en-US", "unavailable")
    service = SpeechService([DownEngine()])
    with pytest.raises(SpeechUnavailableError):
        await service.transcribe(HELLO.read_bytes(), "hello.wav", "en-US")
    assert unavailable() == 1


async def test_a_language_label_stays_a_language(whisper_engine: WhisperEngine) -> None:
    silent = audio.to_wav(audio.AudioSegment.silent(duration=1000, frame_rate=16_000))
    other = transcriptions("none", "other", "no_speech")
    with pytest.raises(NoSpeechError):
        await SpeechService([whisper_engine]).transcribe(silent, "s.wav", "no such tag at all")
    assert other() == 1


# ----- tasks ----------------------------------------------------------------------------------


@pytest.fixture
async def local_storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as opened:
        yield opened


@pytest.fixture
async def work(whisper_engine: WhisperEngine) -> AsyncIterator[WorkServices]:
    pool = JobRunner(max_workers=1)
    yield WorkServices(SpeechService([whisper_engine], jobs=pool), pool)
    await pool.close()


def a_job(job_id: str = "ab12cd34") -> Job:
    return Job(job_id, "transcribe", "", namespace=NAMESPACE, subject="hello")


async def test_a_task_counts_ok_where_it_runs_and_the_recording_once(
    local_storage: Storage, work: WorkServices
) -> None:
    """The worker side over taskiq's in-memory broker: the handler counts the task and its
    recording; the bot's side counts it queued until a worker takes it."""
    broker = InMemoryBroker()
    register(broker, worker_handler(broker, DatabaseBlobs(local_storage), work))
    blobs = DatabaseBlobs(local_storage)
    runner = TaskiqRunner(broker, blobs, JobStore(local_storage), poll_seconds=0.01)
    ok = Delta("voicechat_tasks_total", task="transcribe", outcome="ok")
    failed = Delta("voicechat_tasks_total", task="unknown", outcome="failed")
    recognized = transcriptions("whisper", "en-US", "ok")
    queued = Delta("voicechat_tasks_queued", task="transcribe")
    running = Delta("voicechat_tasks_running", task="transcribe")
    seen_queued: list[float] = []
    wait = runner.wait

    async def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen_queued.append(queued())
        return await wait(*args, **kwargs)

    runner.wait = watched  # type: ignore[method-assign]
    try:
        result = await runner.run(
            "transcribe", {"language": "en-US"}, a_job(), inputs={"audio": HELLO.read_bytes()}
        )
        assert result.ok, result.value
        assert ok() == 1 and recognized() == 1
        assert seen_queued == [1] and queued() == 0 and running() == 0
        await runner.run("mine_bitcoin", {}, a_job("ef56ab78"))
        assert failed() == 1
    finally:
        await runner.close()


async def test_a_local_task_counts_ok_and_failed(
    local_storage: Storage, work: WorkServices
) -> None:
    runner = LocalRunner(work, JobStore(local_storage))
    ok = Delta("voicechat_tasks_total", task="transcribe", outcome="ok")
    failed = Delta("voicechat_tasks_total", task="transcribe", outcome="failed")
    await runner.run("transcribe", {}, a_job(), inputs={"audio": HELLO.read_bytes()})
    await runner.run("transcribe", {}, a_job("ef56ab78"), inputs={"audio": b"not audio"})
    assert (ok(), failed()) == (1, 1)
    assert value("voicechat_tasks_running", task="transcribe") == 0


async def test_a_task_taken_over_from_a_dead_worker_counts_redelivered(
    local_storage: Storage, work: WorkServices
) -> None:
    broker = InMemoryBroker()
    jobstore = JobStore(local_storage)
    handle = worker_handler(broker, DatabaseBlobs(local_storage), work)
    redelivered = Delta("voicechat_tasks_redelivered_total", task="transcribe")
    started = a_job()
    await jobstore.record(started)
    blobs = DatabaseBlobs(local_storage)
    await blobs.put(NAMESPACE, job_key(started.id, "audio"), HELLO.read_bytes())
    message = {"language": "en-US", "job_id": started.id, "namespace": NAMESPACE}
    assert (await handle("transcribe", message))["ok"]
    assert redelivered() == 0  # a first delivery
    # A worker took this one and died before its end (its row says running).
    taken = a_job("ef56ab78")
    await jobstore.record(taken)
    await jobstore.running(taken.id)
    blobs = DatabaseBlobs(local_storage)
    await blobs.put(NAMESPACE, job_key(taken.id, "audio"), HELLO.read_bytes())
    assert (await handle("transcribe", {**message, "job_id": taken.id}))["ok"]
    assert redelivered() == 1
    # And one that finished its work but died before acknowledging: its result stands.
    assert (await handle("transcribe", {**message, "job_id": taken.id}))["ok"]
    assert redelivered() == 2
    await jobstore.close()


# ----- the chat model ---------------------------------------------------------------------------


@pytest.fixture
async def jobs() -> AsyncIterator[JobRunner]:
    runner = JobRunner(max_workers=1)
    yield runner
    await runner.close(timeout=10)


def model_service(data_dir: Path, jobs: JobRunner) -> ModelService:
    (data_dir / "datasets").mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, data_dir / "datasets" / "smalltalk.csv")
    store = DatasetStore(data_dir, max_bytes=5 * 1024 * 1024, max_rows=200_000)
    return ModelService(data_dir, store, jobs, 0.35, namespace=NAMESPACE)


async def test_trainings_predictions_and_loaded_models_are_counted(
    jobs: JobRunner, tmp_path: Path
) -> None:
    service = model_service(tmp_path, jobs)
    ok = Delta("voicechat_trainings_total", outcome="ok")
    took = Delta("voicechat_training_duration_seconds_count")
    took_sum = Delta("voicechat_training_duration_seconds_sum")
    job = await service.wait(await service.start_training("smalltalk"))
    assert job.status == "done", job.error
    assert ok() == 1 and took() == 1
    assert took_sum() == pytest.approx(job.result.duration_seconds)

    sure = Delta("voicechat_predictions_total", answer="sure")
    not_sure = Delta("voicechat_predictions_total", answer="not_sure")
    loaded = Delta("voicechat_loaded_models")
    assert (await service.predict("smalltalk", "hello there")).sure
    assert not (await service.predict("smalltalk", "qzxv wplk brrt")).sure
    assert (sure(), not_sure(), loaded()) == (1, 1, 1)
    del service
    gc.collect()
    assert loaded() == 0  # the model went with its service


async def test_a_training_refused_or_failed_is_counted_so(jobs: JobRunner, tmp_path: Path) -> None:
    service = model_service(tmp_path, jobs)
    refused = Delta("voicechat_trainings_total", outcome="refused")
    failed = Delta("voicechat_trainings_total", outcome="failed")
    with pytest.raises(NotFoundError):
        await service.start_training("missing")
    (tmp_path / "datasets" / "one.csv").write_text("text,label\nhi,greeting\nhello,greeting\n")
    job = await service.start_training("one")  # one label: the task refuses to train it
    await service.wait(job)
    assert job.status == "failed" and refused() == 2
    runner = LocalRunner(WorkServices(None, jobs), bodies={**BODIES, "train": _crashing_train})
    crashing = ModelService(
        tmp_path, service.datasets, jobs, 0.35, tasks=runner, namespace=NAMESPACE
    )
    await crashing.wait(await crashing.start_training("smalltalk"))
    assert failed() == 1 and refused() == 2


async def _crashing_train(payload: dict, ctx: object) -> dict:
    raise RuntimeError("simulated crash while fitting")


def test_cached_tenants_follow_the_cache(tmp_path: Path) -> None:
    limits = TenantLimits(1 << 20, 1000, 1 << 20, 0.35)
    tenants = Tenants(tmp_path, JobRunner(max_workers=1), limits, max_cached=2)
    cached = Delta("voicechat_cached_tenants")
    tenants.get("1100000000000000001")
    tenants.get("1100000000000000002")
    assert cached() == 2
    tenants.get("1100000000000000003")  # the least recently used idle one goes
    assert cached() == 2 and len(tenants.cached()) == 2
    tenants.get("1100000000000000002")
    assert cached() == 2


# ----- voice ------------------------------------------------------------------------------------


async def test_the_voice_queue_and_the_wait_for_first_audio(tmp_path: Path) -> None:
    playing = asyncio.Event()
    release = asyncio.Event()

    async def play(guild_id: int, path: Path) -> None:
        playing.set()
        await release.wait()

    def clip(name: str) -> SpokenAudio:
        path = tmp_path / name
        path.write_bytes(b"RIFF fake audio")
        return SpokenAudio(path=path, engine="fake", duration_seconds=0.01)

    queue = PlaybackQueue(play)
    waiting = Delta("voicechat_voice_queue_length")
    first_audio = Delta("voicechat_say_first_audio_seconds_count")
    for n in range(3):
        queue.enqueue(1, clip(f"{n}.wav"))
    queue.enqueue(2, clip("other.wav"))
    assert waiting() == 4
    await playing.wait()
    await asyncio.sleep(0.01)
    assert waiting() == 2 and first_audio() == 2  # one playing in each server
    await queue.stop(1)  # drops the two waiting
    assert waiting() == 0
    release.set()
    await queue.wait_idle(2)
    assert first_audio() == 2
    await queue.close()
    assert waiting() == 0


# ----- listening --------------------------------------------------------------------------------


async def test_utterances_count_captioned_empty_and_dropped(local_storage: Storage) -> None:
    clock = Clock()
    speech = FakeSpeech(short_text="short one", long_text="")
    service = ListeningService(speech, local_storage, clock=clock)
    heard = Heard()
    session = service.start(100, Callbacks(heard.caption, heard.request, heard.barge_in))
    session.set_members(humans={1})
    captioned = Delta("voicechat_listening_utterances_total", outcome="captioned")
    empty = Delta("voicechat_listening_utterances_total", outcome="empty")
    dropped = Delta("voicechat_listening_utterances_total", outcome="dropped")
    latency = Delta("voicechat_caption_latency_seconds_count")
    try:
        speak(session, clock, {1: tone(1000) + silence(1000)})
        await until(lambda: captioned() == 1)
        assert latency() == 1
        speak(session, clock, {1: tone(3000) + silence(1000)})  # heard as no words
        await until(lambda: empty() == 1)
        speak(session, clock, {1: tone(140) + silence(1000)})  # a click: too short
        await until(lambda: dropped() == 1)
        assert (captioned(), empty(), latency()) == (1, 1, 1)
    finally:
        await service.close()
