"""The one place that builds the services from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings
from bot.services.files import FileService
from bot.services.speech import SpeechService
from bot.services.storage import Storage
from bot.services.synthesis import SynthesisService
from bot.services.text import MB

log = logging.getLogger(__name__)

DB_FILE = "bot.db"


@dataclass
class Services:
    """Everything the cogs use, built once; closed when the bot closes."""

    settings: Settings
    storage: Storage
    files: FileService
    synthesis: SynthesisService
    speech: SpeechService

    async def close(self) -> None:
        await self.speech.close()
        await self.synthesis.close()
        await self.storage.close()


async def build_services(settings: Settings) -> Services:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage(data_dir / DB_FILE)
    await storage.open()
    return Services(
        settings=settings,
        storage=storage,
        files=FileService(data_dir, settings.max_upload_mb * MB),
        synthesis=SynthesisService.from_settings(settings),
        speech=SpeechService.from_settings(settings),
    )
