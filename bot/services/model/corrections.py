"""Corrections of the bot's chat replies, and forgetting a person's: the order of the writes.

A correction of a chat reply of the same namespace also becomes training data of the dataset
whose model made the reply: the record is written first, then the dataset, so a crash in
between leaves a record that `!forgetme` can still act on. Forgetting goes the other way:
the training data first, then the records, so a crash in between can simply be redone.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.services.model.policy import active_dataset
from bot.services.storage import Storage
from bot.services.tenancy.settings import ServerSettings
from bot.services.tenancy.tenants import Tenants


@dataclass(frozen=True)
class Taught:
    """What a correction became: training data of `dataset` (None: saved only)."""

    dataset: str | None = None
    user_text: str | None = None  # the message the corrected reply answered


class Corrections:
    def __init__(self, storage: Storage, tenants: Tenants, settings: ServerSettings) -> None:
        self.storage = storage
        self.tenants = tenants
        self.settings = settings

    async def correct(
        self,
        *,
        message_id: int,
        author_id: int,
        guild_id: int | None,
        namespace: str,
        original: str,
        correction: str,
    ) -> Taught:
        """Save a correction of the bot's message `message_id` (already checked to be the
        bot's, in the request's channel); a chat reply's becomes training data too."""
        logged = await self.storage.get_reply(message_id)
        if (
            logged is None
            or logged.kind != "chat"
            or not logged.user_text
            or logged.namespace != namespace
        ):
            await self.storage.add_correction(
                message_id, author_id, guild_id, original, correction, namespace=namespace
            )
            return Taught()
        # Teach the dataset whose model made the reply, even if another one is active now.
        dataset = logged.dataset or await active_dataset(self.settings, guild_id)
        await self.storage.add_correction(
            message_id,
            author_id,
            guild_id,
            original,
            correction,
            dataset=dataset,
            user_text=logged.user_text,
            namespace=namespace,
        )
        datasets = self.tenants.get(namespace).datasets
        await datasets.add_correction_async(dataset, logged.user_text, correction)
        return Taught(dataset, logged.user_text)

    async def forget(self, user_id: int) -> dict[str, int]:
        """`!forgetme`: the person's lessons leave the training data, then every row about
        them goes; how many rows per table."""
        for lesson in await self.storage.user_corrections(user_id):
            if lesson.dataset and lesson.dataset_namespace:
                datasets = self.tenants.get(lesson.dataset_namespace).datasets
                await datasets.remove_correction_async(
                    lesson.dataset, lesson.user_text or "", lesson.correction
                )
        return await self.storage.forget_user(user_id)
