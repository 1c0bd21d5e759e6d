"""The chat model's policies: which dataset answers a server's chat, and its first training."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.services.model.datasets.store import DatasetStore
from bot.services.model.service import ModelService
from bot.services.tasks.job import Job
from bot.services.tenancy.settings import DATASET, ServerSettings

OnDone = Callable[[Job], Awaitable[None]]


async def active_dataset(settings: ServerSettings, guild_id: int | None) -> str:
    """The dataset whose model answers chat in this server (DMs use the default)."""
    if guild_id is None:
        return settings.default(DATASET)
    return await settings.get(guild_id, DATASET)


class FirstTrainings:
    """A dataset with no model yet is trained once, by the first chat message that needs it;
    messages that come while that training runs are told to wait, and start no other."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], Job] = {}  # (namespace, dataset) -> its training
        self._starting: set[tuple[str, str]] = set()

    async def start(
        self,
        namespace: str,
        models: ModelService,
        datasets: DatasetStore,
        dataset: str,
        on_done: OnDone,
    ) -> tuple[Job | None, bool] | None:
        """(the training, True) when this call started it; (the running one or None, False)
        when one is already under way; None when the dataset has no data to train on."""
        key = (namespace, dataset)
        running = self._running.get(key)
        if (running is not None and not running.finished) or key in self._starting:
            return running, False
        self._starting.add(key)  # set before any await: two messages start one training
        try:
            if not await datasets.exists_async(dataset):
                return None
            job = await models.start_training(dataset, on_done=self._ended(key, on_done))
            self._running[key] = job
        finally:
            self._starting.discard(key)
        return job, True

    def _ended(self, key: tuple[str, str], on_done: OnDone) -> OnDone:
        async def ended(job: Job) -> None:
            self._running.pop(key, None)
            await on_done(job)

        return ended
