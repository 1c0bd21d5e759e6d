"""The task bodies: what the bot (`LocalRunner`) or a worker (`TaskiqRunner`) does for each task.

Each body is `async def body(payload, ctx) -> dict` and works only with its payload and
`ctx` (inputs, outputs, progress, the process's engines): the same code runs in the bot and
on a worker on another machine. Engines are the process's own, loaded once (`WorkServices`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.errors import EngineUnavailableError, InvalidInputError, UserFacingError
from bot.services.speech.transcript import Hearing, Progress
from bot.services.tasks.base import TaskContext
from bot.services.tasks.job import short_reason
from bot.services.tasks.jobs import JobRunner

if TYPE_CHECKING:
    from bot.services.speech.service import SpeechService

log = logging.getLogger(__name__)

Body = Callable[[dict[str, Any], TaskContext], Awaitable[dict[str, Any]]]


@dataclass
class WorkServices:
    """The engines and the process pool of the process that runs task bodies (no speech
    engines where only models are trained: a `transcribe` task is then refused)."""

    speech: SpeechService | None
    pool: JobRunner


def failure(exc: BaseException) -> dict[str, Any]:
    """A task's error as a result: one clear message, never a traceback."""
    value: dict[str, Any] = {"ok": False, "error": short_reason(exc), "type": type(exc).__name__}
    if isinstance(exc, UserFacingError):  # bad input the user can fix, not a fault here
        value["refused"] = True
        if details := exc.details():
            value["details"] = details
    return value


async def transcribe(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Decode and recognize audio given as input `audio` or by `url`; progress per chunk."""
    speech: SpeechService | None = ctx.services.speech
    if speech is None:
        raise EngineUnavailableError("This process has no speech engines.")
    if payload.get("url"):
        data = await ctx.fetch(str(payload["url"]), speech.max_bytes)
    else:
        data = await ctx.input("audio")
    if payload.get("decoded"):  # the bot's own 16 kHz WAV of audio it decoded: no ffmpeg
        segment = await speech.decoded(data)
    else:
        segment = await speech.decode(data, str(payload.get("filename", "")))
    # The length, before recognition: the bot charges it (or stops the job) and shows it.
    await ctx.progress(asdict(Progress("", 0.0, segment.duration_seconds)))

    async def report(progress: Progress) -> None:
        await ctx.progress(asdict(progress))

    transcript = await speech.recognize(segment, Hearing.of(payload), on_progress=report)
    return {"ok": True, "transcript": asdict(transcript)}


def train_files(
    files: dict[str, bytes], dataset: str, max_bytes: int, max_rows: int
) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """Train `dataset` from its files (dataset, corrections) in a scratch folder; returns
    (model bytes, manifest entry, TrainResult fields). Blocking: for a worker process."""
    from bot.services.model.datasets.parse import validate_name
    from bot.services.model.store import MANIFEST_NAME
    from bot.services.model.training_run import DatasetSource, train_model

    validate_name(dataset)
    with tempfile.TemporaryDirectory(prefix="train-") as scratch:
        root = Path(scratch)
        (root / "datasets").mkdir()
        for name, data in files.items():
            (root / "datasets" / Path(name).name).write_bytes(data)
        source = DatasetSource(root, max_bytes, max_rows, None)
        result = train_model(source, root / "models", dataset)
        folder = root / "models" / dataset
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        entry = dict(manifest["versions"][result.version])
        model = (folder / entry["file"]).read_bytes()
    for made_by_store in ("file", "format", "sha256", "created_at"):
        entry.pop(made_by_store, None)
    fields = asdict(result)
    fields["created_at"] = result.created_at.isoformat()
    return model, entry, fields


async def train(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Train from the dataset's files (inputs named in `files`); the model is output `model`."""
    names = payload.get("files")
    if not isinstance(names, list) or not names:
        raise InvalidInputError("The training job names no dataset files.")
    files = {str(name): await ctx.input(str(name)) for name in names}
    pool: JobRunner = ctx.services.pool
    model, entry, fields = await pool.run(
        "train",
        f"train:{ctx.namespace}:{payload['dataset']}",
        train_files,
        files,
        str(payload["dataset"]),
        int(payload["max_bytes"]),
        int(payload["max_rows"]),
    )
    await ctx.output("model", model)
    return {"ok": True, "entry": entry, "result": fields}


async def evaluate(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """`!test`: score the items (input `items.json`) with the model (input `model`); the
    confusion matrix picture, when there are labels, is output `confusion.png`."""
    from bot.services.model.predictions import evaluate_model_bytes

    model, rows = await ctx.input("model"), await ctx.input("items.json")
    try:
        items = json.loads(rows)
    except ValueError:
        raise InvalidInputError("The test items are not valid JSON.") from None
    if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
        raise InvalidInputError("The test items must be [text, label] pairs.")
    pool: JobRunner = ctx.services.pool
    evaluation = await pool.run(
        "evaluate", f"evaluate:{ctx.job_id}", evaluate_model_bytes,
        model, str(payload["sha256"]), items, float(payload["min_confidence"]),
    )  # fmt: skip
    if evaluation.confusion_png:
        await ctx.output("confusion.png", evaluation.confusion_png)
    return {
        "ok": True,
        "predictions": [asdict(p) for p in evaluation.predictions],
        "accuracy": evaluation.accuracy,
        "report": evaluation.report,
        "labeled": evaluation.labeled,
    }


BODIES: dict[str, Body] = {"transcribe": transcribe, "train": train, "evaluate": evaluate}


def task_label(task: str) -> str:
    """The task's name as a metric label: one of BODIES, or "unknown" (labels stay few)."""
    return task if task in BODIES else "unknown"


async def run_body(
    task: str, payload: dict[str, Any], ctx: TaskContext, bodies: Mapping[str, Body] = BODIES
) -> dict[str, Any]:
    """Run a task's body; every failure becomes one failure result. Counted as running
    while it runs, then ok or failed, in the process that runs it (a worker, or the bot
    with `LocalRunner`)."""
    body = bodies.get(task)
    if body is None:
        metrics.TASKS.labels(task_label(task), metrics.FAILED).inc()
        return failure(InvalidInputError(f"Unknown task {task[:40]!r}."))
    running = metrics.TASKS_RUNNING.labels(task)
    running.inc()
    try:
        value = await _run(body, task, payload, ctx)  # raises only when cancelled
    finally:
        running.dec()
    metrics.TASKS.labels(task, metrics.OK if value.get("ok") else metrics.FAILED).inc()
    return value


async def _run(body: Body, task: str, payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    try:
        return await body(payload, ctx)
    except UserFacingError as exc:
        log.info("task %s (%s) failed: %s", ctx.job_id, task, exc.message)
        return failure(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("task %s (%s) failed", ctx.job_id, task, exc_info=exc)
        return failure(exc)
