"""The chat model's policies as services: the first training of a dataset, and the order of a
correction's and of forgetting's writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.services.model.corrections import Corrections
from bot.services.model.policy import FirstTrainings
from bot.services.storage import Storage
from bot.services.tasks.job import Job
from bot.services.tenancy.settings import ServerSettings

GUILD, USER = 1, 100
NAMESPACE = str(GUILD)


class FakeModels:
    def __init__(self) -> None:
        self.started: list[Job] = []
        self.release = asyncio.Event()

    async def start_training(self, dataset: str, on_done: Any = None) -> Job:
        job = Job(f"job{len(self.started)}", "train", dataset, status="running")
        self.started.append(job)

        async def finish() -> None:
            await self.release.wait()
            job.status = "done"
            await on_done(job)

        asyncio.get_running_loop().create_task(finish())
        return job


class FakeDatasets:
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.lessons: list[tuple[str, str, str]] = []
        self.fail_next = False

    async def exists_async(self, name: str) -> bool:
        await asyncio.sleep(0)  # a real look-up awaits: a second message comes in between
        return name in self.names

    async def add_correction_async(self, dataset: str, text: str, correction: str) -> None:
        if self.fail_next:
            raise OSError("disk full")
        self.lessons.append((dataset, text, correction))

    async def remove_correction_async(self, dataset: str, text: str, correction: str) -> None:
        self.lessons.remove((dataset, text, correction))


async def test_two_messages_start_one_first_training_and_the_next_may_start_again() -> None:
    trainings, models, datasets = FirstTrainings(), FakeModels(), FakeDatasets({"faq"})
    done: list[str] = []

    async def on_done(job: Job) -> None:
        done.append(job.id)

    first, second = await asyncio.gather(
        trainings.start(NAMESPACE, models, datasets, "faq", on_done),  # type: ignore[arg-type]
        trainings.start(NAMESPACE, models, datasets, "faq", on_done),  # type: ignore[arg-type]
    )
    assert first is not None and second is not None
    assert [started for _, started in (first, second)] == [True, False]
    assert len(models.started) == 1
    models.release.set()
    await asyncio.sleep(0.01)
    assert done == ["job0"]
    again = await trainings.start(NAMESPACE, models, datasets, "faq", on_done)  # type: ignore[arg-type]
    assert again is not None and again[1] is True  # the first one ended: a new one may start
    other = await trainings.start("2", models, datasets, "faq", on_done)  # type: ignore[arg-type]
    assert other is not None and other[1] is True  # another server's is its own


async def test_no_data_means_no_first_training() -> None:
    trainings, models = FirstTrainings(), FakeModels()
    missing = await trainings.start(NAMESPACE, models, FakeDatasets(set()), "faq", lambda j: None)  # type: ignore[arg-type]
    assert missing is None and models.started == []


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    async with Storage(tmp_path / "bot.db") as store:
        yield store


@pytest.fixture
def datasets() -> FakeDatasets:
    return FakeDatasets({"faq"})


@pytest.fixture
def corrections(storage: Storage, datasets: FakeDatasets) -> Corrections:
    tenants = SimpleNamespace(get=lambda namespace: SimpleNamespace(datasets=datasets))
    config = SimpleNamespace(default_dataset="smalltalk", language="en-US")
    return Corrections(storage, tenants, ServerSettings(storage, config))  # type: ignore[arg-type]


async def chat_reply(storage: Storage, message_id: int, namespace: str = NAMESPACE) -> None:
    await storage.log_reply(
        message_id, 10, GUILD, USER, message_id - 1, "hi there", "bye", "chat", "faq",
        namespace=namespace,
    )  # fmt: skip


async def correct(corrections: Corrections, message_id: int) -> Any:
    return await corrections.correct(
        message_id=message_id, author_id=USER, guild_id=GUILD, namespace=NAMESPACE,
        original="bye", correction="hello!",
    )  # fmt: skip


async def test_a_chat_reply_corrected_teaches_its_dataset_and_forgetting_takes_it_back(
    corrections: Corrections, storage: Storage, datasets: FakeDatasets
) -> None:
    await chat_reply(storage, 501)
    taught = await correct(corrections, 501)
    assert (taught.dataset, taught.user_text) == ("faq", "hi there")
    assert datasets.lessons == [("faq", "hi there", "hello!")]
    [saved] = await storage.user_corrections(USER)
    assert saved.dataset == "faq" and saved.dataset_namespace == NAMESPACE
    counts = await corrections.forget(USER)
    assert datasets.lessons == [] and counts["corrections"] == 1
    assert await storage.user_corrections(USER) == []


async def test_another_namespaces_or_a_non_chat_reply_is_saved_only(
    corrections: Corrections, storage: Storage, datasets: FakeDatasets
) -> None:
    await chat_reply(storage, 601, namespace="2")
    assert (await correct(corrections, 601)).dataset is None
    assert (await correct(corrections, 999)).dataset is None  # never logged
    assert datasets.lessons == [] and len(await storage.user_corrections(USER)) == 2


async def test_the_record_is_written_before_the_lesson(
    corrections: Corrections, storage: Storage, datasets: FakeDatasets
) -> None:
    """A crash between the two writes leaves a record that !forgetme can still act on."""
    await chat_reply(storage, 701)
    datasets.fail_next = True
    with pytest.raises(OSError):
        await correct(corrections, 701)
    [saved] = await storage.user_corrections(USER)
    assert saved.dataset == "faq"
