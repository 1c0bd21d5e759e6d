"""A training run: what a worker process does to make a new version of a dataset's model.

Training runs in a worker process (`train_model`, with the fitting in training.py);
the worker reads the dataset itself, so the bot's process never holds its rows.

`train_model` loads the rows, fits them (`training.fit`), compiles the fitted pipeline to a
model file (artifact.py), checks it (`check_compiled`) and stores it as the dataset's next
version (`store_version`, store.py); a `TrainResult` tells how it went.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.errors import InvalidInputError
from bot.services.model.artifact import artifact_bytes, check_compiled, compile_pipeline
from bot.services.model.datasets.parse import (
    CORRECTED_LABEL_PREFIX,
    dataset_hash,
    normalize_text,
    replies_by_label,
    validate_name,
)
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.store import store_version


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced; `Job.result` of a training job."""

    dataset: str
    version: str
    rows: int
    labels: int
    accuracy: float | None
    macro_f1: float | None
    folds: int
    cv_rows: int
    duration_seconds: float
    created_at: datetime

    def summary(self) -> str:
        """One line for the channel: what was trained and how well it does."""
        if self.accuracy is None or self.macro_f1 is None:
            metrics = "not enough rows per label to cross-validate"
        else:
            sample = f" on a sample of {self.cv_rows} rows" if self.cv_rows < self.rows else ""
            metrics = (
                f"cross-validated accuracy {self.accuracy:.1%}, macro-F1 {self.macro_f1:.2f} "
                f"({self.folds}-fold{sample})"
            )
        return (
            f"Model {self.version} of dataset {self.dataset} is trained and active: "
            f"{self.rows} rows, {self.labels} labels, {metrics}, "
            f"{self.duration_seconds:.1f} s."
        )


@dataclass(frozen=True)
class DatasetSource:
    """Where a worker finds a dataset: the store's settings, not its rows.

    The rows never pass through the bot's process: parsing 100k rows there would hold the
    GIL and grow the heap that the garbage collector walks, and pickling them to the worker
    would hold the GIL again.
    """

    data_dir: Path
    max_bytes: int
    max_rows: int
    samples_dir: Path | None

    @classmethod
    def of(cls, store: DatasetStore) -> DatasetSource:
        return cls(store.root.parent, store.max_bytes, store.max_rows, store.samples_dir)

    def store(self) -> DatasetStore:
        return DatasetStore(
            self.data_dir, self.max_bytes, self.max_rows, samples_dir=self.samples_dir
        )


def train_model(source: DatasetSource, out_dir: Path, dataset: str) -> TrainResult:
    """Load, fit, cross-validate and store a new version of `dataset`'s model; make it active.

    Blocking and CPU-bound: meant to run in a worker process (`JobRunner`). `out_dir` is the
    models folder; the version goes to `out_dir/<dataset>/`.
    """
    import sklearn

    from bot.services.model import training

    started = time.perf_counter()
    validate_name(dataset)
    rows = source.store().load(dataset)
    texts = [row.text for row in rows]
    labels = [row.label for row in rows]
    if len(set(labels)) < 2:
        raise InvalidInputError("The dataset needs at least 2 different labels to train.")
    fitted = training.fit(texts, labels)
    meta = {
        "dataset": dataset,
        "replies": replies_by_label(rows),
        "exact": {
            normalize_text(row.text): row.label
            for row in rows
            if row.label.startswith(CORRECTED_LABEL_PREFIX)
        },
        "sklearn_version": sklearn.__version__,
    }
    data = artifact_bytes(compile_pipeline(fitted.pipeline), meta)
    check_compiled(data, fitted, texts)
    entry = {
        "dataset_hash": dataset_hash(rows),
        "rows": len(rows),
        "labels": len(set(labels)),
        "metrics": {
            "accuracy": fitted.accuracy,
            "macro_f1": fitted.macro_f1,
            "folds": fitted.folds,
            "cv_rows": fitted.cv_rows,
        },
        "sklearn_version": sklearn.__version__,
        "duration_seconds": round(time.perf_counter() - started, 3),
    }
    stored = store_version(Path(out_dir) / dataset, dataset, data, entry)
    assert stored is not None
    version, created_at = stored
    return TrainResult(
        dataset=dataset,
        version=version,
        rows=len(rows),
        labels=len(set(labels)),
        accuracy=fitted.accuracy,
        macro_f1=fitted.macro_f1,
        folds=fitted.folds,
        cv_rows=fitted.cv_rows,
        duration_seconds=time.perf_counter() - started,
        created_at=created_at,
    )
