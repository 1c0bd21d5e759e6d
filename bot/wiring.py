"""The one place that builds the services from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings

    async def close(self) -> None:
        log.debug("services closed")


async def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Services(settings=settings)
