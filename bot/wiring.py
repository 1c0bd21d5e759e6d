"""The one place that builds the services from the settings."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from bot.services.datasets import DatasetStore
from bot.services.files import FileService
from bot.services.jobs import JobRunner
from bot.services.models import ModelService
from bot.services.speech import SpeechService
from bot.services.storage import Storage
from bot.services.synthesis import SynthesisService
from bot.services.text import MB

log = logging.getLogger(__name__)

DB_FILE = "bot.db"
SAMPLES = Path(__file__).resolve().parent / "samples"
# Two worker processes: one training and one CPU-bound recognition can run side by side.
JOB_WORKERS = 2


@dataclass
class Services:
    """Everything the cogs use, built once; closed when the bot closes."""

    settings: Settings
    storage: Storage
    files: FileService
    synthesis: SynthesisService
    speech: SpeechService
    jobs: JobRunner
    datasets: DatasetStore
    models: ModelService

    async def close(self) -> None:
        await self.speech.close()
        await self.synthesis.close()
        await self.jobs.close()
        await self.storage.close()


def install_sample_datasets(datasets_dir: Path) -> None:
    """Copy the shipped sample datasets into DATA_DIR/datasets when they are missing."""
    datasets_dir.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES.glob("*.csv"):
        target = datasets_dir / sample.name
        if not target.exists():
            shutil.copyfile(sample, target)
            log.info("installed sample dataset %s", sample.name)


async def build_services(settings: Settings) -> Services:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    install_sample_datasets(data_dir / "datasets")
    storage = Storage(data_dir / DB_FILE)
    await storage.open()
    jobs = JobRunner(max_workers=JOB_WORKERS)
    datasets = DatasetStore(data_dir, settings.train_max_mb * MB, settings.train_max_rows)
    return Services(
        settings=settings,
        storage=storage,
        files=FileService(data_dir, settings.max_upload_mb * MB),
        synthesis=SynthesisService.from_settings(settings),
        speech=SpeechService.from_settings(settings, jobs),
        jobs=jobs,
        datasets=datasets,
        models=ModelService(data_dir, datasets, jobs, settings.chat_min_confidence),
    )
