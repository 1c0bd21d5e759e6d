"""The sample datasets' models, trained ahead of time and shipped, so that a server's first
chat message gets its answer at once instead of waiting for a training.

`bot/samples/models/<name>.npz` is the model of `bot/samples/<name>.csv` (a format-2 model
file: arrays, read without pickle), and `bot/samples/models/manifest.json` records for each its
sha256, the hash of the rows it was trained on, its format and its metrics. `python -m
bot.services.model.samples` rebuilds them with the bot's own training; a test fails when a
sample or the model format changed without a rebuild.

A namespace never uses a model file of another: `install` copies the shipped bytes into the
namespace's own model folder as its first version, recorded in its own manifest, after
checking them against that manifest, the record against the sample's current rows, and that
the namespace has no corrections of the sample (then it trains its own model, as before).
Anything out of date is skipped with a warning, and the dataset is trained as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.errors import NotFoundError
from bot.services.model.artifact import MODEL_FORMAT
from bot.services.model.datasets.parse import dataset_hash, validate_name
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.store import _read_manifest, store_version
from bot.services.model.training_run import DatasetSource, train_model

log = logging.getLogger(__name__)

FOLDER = "models"  # under the samples folder; not a dataset file, so never listed as one
RECORDS = "manifest.json"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
REBUILD = "python -m bot.services.model.samples"
_RECORDED = ("sha256", "format", "dataset_hash", "rows", "labels", "metrics", "sklearn_version")


def records(samples_dir: Path) -> dict[str, dict[str, Any]]:
    """The shipped manifest: dataset name -> what was recorded when its model was built."""
    try:
        found = json.loads((samples_dir / FOLDER / RECORDS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return found if isinstance(found, dict) else {}


def shipped_bytes(samples_dir: Path, store: DatasetStore, dataset: str) -> bytes | None:
    """The shipped model of sample `dataset` when it is current: its bytes match the shipped
    manifest, which records the sample's current rows and this version's model format."""
    record = records(samples_dir).get(dataset)
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        if record is not None:
            log.warning("the shipped model of %s is out of date; run `%s`", dataset, REBUILD)
        return None
    try:
        data = (samples_dir / FOLDER / f"{validate_name(dataset)}.npz").read_bytes()
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        log.warning("the shipped model of %s does not match %s; not used", dataset, RECORDS)
        return None
    if dataset_hash(store.sample_rows(dataset)) != record.get("dataset_hash"):
        log.warning("the sample %s changed since its model was built; run `%s`", dataset, REBUILD)
        return None
    return data


def shipped_version(store: DatasetStore, dataset: str) -> tuple[bytes, dict[str, Any]] | None:
    """The bytes of the shipped model of sample `dataset` and the manifest entry to record
    for them, when the namespace of `store` should get them: the dataset is a sample here,
    the namespace has no corrections of it, and the shipped model is current. Blocking."""
    samples_dir = store.samples_dir
    try:
        if samples_dir is None or not store.is_sample(dataset):
            return None
    except NotFoundError:
        return None
    if store.corrections_path(dataset).exists():
        return None
    data = shipped_bytes(samples_dir, store, dataset)
    if data is None:
        return None
    record = records(samples_dir)[dataset]
    entry = {key: record.get(key) for key in _RECORDED if key not in ("sha256", "format")}
    entry.update(duration_seconds=0.0, source="shipped sample model")
    return data, entry


def install(store: DatasetStore, models_dir: Path, dataset: str) -> bool:
    """Give the namespace of `store` its own copy of the shipped model of sample `dataset`,
    as its first version. False (nothing done) when `shipped_version` has none. Blocking."""
    shipped = shipped_version(store, dataset)
    if shipped is None:
        return False
    data, entry = shipped
    stored = store_version(Path(models_dir) / dataset, dataset, data, entry, first_only=True)
    if stored is not None:
        log.info("installed the shipped model of sample %s as %s", dataset, stored[0])
    return True


def build(samples_dir: Path = SAMPLES) -> dict[str, dict[str, Any]]:
    """Train every sample dataset with the bot's own training and write `models/<name>.npz`
    and `models/manifest.json` beside them; returns the records."""
    built: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "datasets").mkdir()
        for csv in sorted(samples_dir.glob("*.csv")):
            name = csv.stem
            shutil.copy(csv, work / "datasets" / csv.name)
            store = DatasetStore(work, max_bytes=csv.stat().st_size, max_rows=1_000_000)
            result = train_model(DatasetSource.of(store), work / "models", name)
            folder = work / "models" / name
            entry = (_read_manifest(folder) or {})["versions"][result.version]
            (samples_dir / FOLDER).mkdir(exist_ok=True)
            shutil.copyfile(folder / entry["file"], samples_dir / FOLDER / f"{name}.npz")
            built[name] = {key: entry[key] for key in _RECORDED}
    text = json.dumps(built, indent=2, sort_keys=True) + "\n"
    (samples_dir / FOLDER / RECORDS).write_text(text, encoding="utf-8")
    return built


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for name, record in build().items():
        print(
            f"{name}: {record['rows']} rows, {record['labels']} labels, sha256 {record['sha256']}"
        )
