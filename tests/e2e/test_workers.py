"""The bot with workers: a redis-server, one real `python -m bot worker` and a database both
reach (a shared SQLite file). Transcription and training run on the worker; the user sees
what they see without one."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E, eventually
from tests.e2e.test_model import MENU, chat, job_report, job_report_pattern, start_training
from tests.e2e.test_transcribe import assert_heard, fixture, long_speech_wav
from tests.fixtures.recordings import error_rate, recordings
from tests.redis_server import redis_url  # noqa: F401 - a fixture
from tests.worker_process import Worker

LIVE_REPLY = re.compile(r"\*\*Transcript\*\* \(0:00 of 1:1\d, still transcribing…\):")


@pytest.fixture
def shared_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def worker(tmp_path: Path, redis_url: str, shared_db: str) -> Iterator[Worker]:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.update(
        TASK_BROKER_URL=redis_url,
        DATABASE_URL=shared_db,
        DATA_DIR=str(tmp_path / "worker-data"),
        STT_ENGINES="whisper",
        LOG_LEVEL="INFO",
        WARM_UP="off",
    )
    started = Worker(env)
    yield started
    started.stop()


@pytest.fixture
def with_worker(
    make_settings: Callable[..., Settings],
    redis_url: str,  # noqa: F811
    shared_db: str,
    worker: Worker,
) -> Callable[..., Any]:
    """with_worker(**settings): the bot in the sandbox, its tasks going to `worker`."""

    def start(**env: str) -> Any:
        settings = make_settings(TASK_BROKER_URL=redis_url, DATABASE_URL=shared_db, **env)
        return sandboxed_bot(settings)

    return start


@pytest.fixture
async def bot_with_worker(with_worker: Callable[..., Any]) -> AsyncIterator[E2E]:
    async with with_worker() as (sandbox, bot):
        env = E2E(sandbox, bot)
        env.job_blobs = []  # type: ignore[attr-defined]
        blobs = bot.services.tasks.blobs
        put = blobs.put

        async def noted_put(namespace: str, path: str, data: bytes) -> None:
            env.job_blobs.append(path)  # type: ignore[attr-defined]
            await put(namespace, path, data)

        blobs.put = noted_put
        yield env


def worker_ran(worker: Worker, kind: str) -> list[str]:
    """The ids of the jobs of `kind` the worker finished, from its log."""
    return re.findall(rf"task ([0-9a-f]+) \({kind}\) done after", worker.log())


async def test_voice_messages_are_transcribed_by_the_worker(
    bot_with_worker: E2E, worker: Worker
) -> None:
    env = bot_with_worker
    reply = await env.ask(
        files=[("voice-message.ogg", fixture("hello.ogg"))], voice_message=True, timeout=120
    )
    assert reply["content"].startswith("**Transcript:** ")
    assert_heard(reply["content"])
    assert len(worker_ran(worker, "transcribe")) == 1

    # Long audio: the reply shows its length at once and fills in as the worker goes.
    updates: list[str] = []
    env.sandbox.listeners.append(
        lambda event, data: updates.append(data["content"]) if event == "MESSAGE_UPDATE" else None
    )
    sent = await env.sandbox.send(files=[("long.wav", long_speech_wav(75))])
    live = await env.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "Transcript" in m["content"], timeout=120
    )
    assert LIVE_REPLY.fullmatch(live["content"]), live["content"]
    final = await env.sandbox.wait_for_bot_message(
        after=sent,
        predicate=lambda m: m["id"] == live["id"] and "still transcribing" not in m["content"],
        timeout=300,
    )
    assert final["content"].startswith("**Transcript:** ")
    assert final["content"].lower().count("hello") >= 10
    # The first words show while the rest is still being transcribed.
    assert any(re.search(r"\(0:\d\d of 1:1\d, still transcribing…\): \S", u) for u in updates)
    jobs = worker_ran(worker, "transcribe")
    assert len(jobs) == 2
    listed = await env.ask_text("!jobs")
    assert all(f"Job `{job_id}` (transcribe" in listed for job_id in jobs), listed
    # The audio went by its attachment's URL: the bot put none of it in the database.
    assert env.job_blobs == []  # type: ignore[attr-defined]


async def test_audio_over_the_allowance_is_refused_and_its_worker_stops(
    with_worker: Callable[..., Any], worker: Worker
) -> None:
    settings = {"TRANSCRIBE_BUDGET_SECONDS": "30", "TRANSCRIBE_WINDOW_SECONDS": "600"}
    async with with_worker(**settings) as (sandbox, bot):
        env = E2E(sandbox, bot)
        first = await env.ask(files=[("hello.ogg", fixture("hello.ogg"))], author="member",
                              voice_message=True, timeout=120)  # fmt: skip
        assert_heard(first["content"])
        # A file declares no length: the worker finds it, and the bot refuses it then.
        refused = await env.ask(files=[("long.wav", long_speech_wav(75))], author="member",
                                timeout=120)  # fmt: skip
        assert re.fullmatch(
            r"That would go over your transcription allowance of 30 s of audio per 10 min; "
            r"try again in \d+ min( \d+ s)?\.",
            refused["content"],
        ), refused["content"]
        listed = (await env.ask_text("!jobs")).splitlines()
        assert re.match(r"Job `([0-9a-f]+)` \(transcribe `audio`\): \*\*failed\*\*", listed[0])
        stopped = re.match(r"Job `([0-9a-f]+)`", listed[0])[1]  # type: ignore[index]
        await eventually(lambda: f"task {stopped} (transcribe) failed" in worker.log(), 120)
        assert f"task {stopped} (transcribe) done" not in worker.log()


async def test_training_and_test_files_run_on_the_worker_and_its_model_answers(
    bot_with_worker: E2E, worker: Worker
) -> None:
    env = bot_with_worker
    sent, reply, job_id = await start_training(env, "!train", files=[("menu.csv", MENU)])
    assert reply.endswith(f"Model training started. Job ID: {job_id}")
    report = await job_report(env, sent, job_id)
    assert re.fullmatch(job_report_pattern(job_id, "menu", "v1", 8, 2), report), report
    assert worker_ran(worker, "train") == [job_id]

    await env.ask_text("!select_dataset menu")
    versions = (await env.ask_text("!models")).splitlines()
    assert versions[1].startswith("`v1` ") and versions[1].endswith("← active"), versions
    await env.ask_text("!chat on")
    assert await chat(env, "what food do you have") == "Pizza is on the menu."
    jobs = await env.ask_text("!jobs")
    assert re.match(rf"Job `{job_id}` \(train `menu`\): \*\*done\*\*", jobs), jobs

    # A test file is scored on the worker too.
    check = b"text,label\nwhat can i eat,food\ni am thirsty,drink\n"
    tested = await env.ask("!test", files=[("check.csv", check)], timeout=60)
    assert "%** on 2 labelled items" in tested["content"], tested["content"]
    assert "`i am thirsty` → **" in tested["content"]
    assert tested["attachments"][0]["filename"] == "confusion_matrix.png"
    assert len(worker_ran(worker, "evaluate")) == 1

    # Two trainings of one dataset: the second waits for the first, as without workers.
    first, _, first_id = await start_training(env, "!train menu")
    second, reply, second_id = await start_training(env, "!train menu")
    assert reply.endswith("It is queued behind another training of this dataset.")
    assert "**done**" in await job_report(env, first, first_id)
    assert "Model v3 of dataset menu" in await job_report(env, second, second_id)


async def test_the_worker_hears_each_server_in_its_language(
    bot_with_worker: E2E, worker: Worker
) -> None:
    """The language, the fallback and translation travel with the task: the worker picks the
    model by language (French: the multilingual one), detects with `auto`, translates."""
    env = bot_with_worker
    french = next(r for r in recordings("fr") if r.file == "fr-1.ogg")
    assert (await env.ask_text("!language fr-FR translate")).startswith("The speech language")
    reply = await env.ask(files=[("fr.ogg", french.data())], voice_message=True, timeout=180)
    transcript, english = reply["content"].split("\n**English:** ")
    assert error_rate(french.text, transcript.removeprefix("**Transcript:** "), "fr") <= 0.35
    assert "consul" in english.lower()
    assert (await env.ask_text("!language auto notranslate")).startswith("The speech language")
    german = next(r for r in recordings("de") if r.file == "de-3.ogg")
    reply = await env.ask(files=[("de.ogg", german.data())], timeout=180)
    assert reply["content"].endswith("\n-# Recognized by the whisper engine · German.")
    assert "I answer aloud in `de`" in await env.ask_text("!language")
    assert len(worker_ran(worker, "transcribe")) == 2
