"""The shipped, pre-trained models of the sample datasets, and each namespace's own copy."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.services.model import samples as sample_models
from bot.services.model.artifact import MODEL_FORMAT, read_artifact
from bot.services.model.datasets.parse import dataset_hash
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.samples import FOLDER, RECORDS, SAMPLES
from bot.services.model.service import ModelService, NoModelError
from bot.services.tasks.jobs import JobRunner

SHIPPED = SAMPLES / FOLDER


def service(data_dir: Path, samples_dir: Path = SAMPLES) -> ModelService:
    store = DatasetStore(data_dir, 5 << 20, 10_000, samples_dir=samples_dir)
    # No job may run: the runner has no worker it could start in these tests.
    return ModelService(data_dir, store, JobRunner(1, idle_seconds=None), 0.35)


def test_the_shipped_sample_models_are_current() -> None:
    records = json.loads((SHIPPED / RECORDS).read_text())
    samples = sorted(p.stem for p in SAMPLES.glob("*.csv"))
    assert sorted(records) == samples, f"rebuild with `{sample_models.REBUILD}`"
    for name, record in records.items():
        store = DatasetStore(SAMPLES.parent, 1 << 20, 10_000, samples_dir=SAMPLES)
        data = (SHIPPED / f"{name}.npz").read_bytes()
        assert record["format"] == MODEL_FORMAT, f"rebuild with `{sample_models.REBUILD}`"
        assert record["dataset_hash"] == dataset_hash(store.load(name)), sample_models.REBUILD
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert read_artifact(data).predict("hello there")[0] == "greeting"


def test_rebuilding_gives_the_same_model(tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "smalltalk.csv", tmp_path / "smalltalk.csv")
    rebuilt = sample_models.build(tmp_path)["smalltalk"]
    shipped = json.loads((SHIPPED / RECORDS).read_text())["smalltalk"]
    assert rebuilt["dataset_hash"] == shipped["dataset_hash"]
    assert rebuilt["metrics"] == pytest.approx(shipped["metrics"])
    ours = read_artifact((tmp_path / FOLDER / "smalltalk.npz").read_bytes()).scorer
    theirs = read_artifact((SHIPPED / "smalltalk.npz").read_bytes()).scorer
    for text in ("hello", "tell me a joke", "wats your name", "qzxv"):
        assert np.allclose(ours.proba(text), theirs.proba(text), atol=1e-6)


async def test_a_namespace_gets_its_own_verified_copy_at_its_first_message(
    tmp_path: Path,
) -> None:
    first, second = service(tmp_path / "a"), service(tmp_path / "b")
    answer = await first.predict("smalltalk", "hello there")
    assert answer.label == "greeting" and answer.sure
    assert (await second.predict("smalltalk", "tell me a joke")).label == "joke"
    for folder in (tmp_path / "a", tmp_path / "b"):
        models = folder / "models" / "smalltalk"
        manifest = json.loads((models / "manifest.json").read_text())
        entry = manifest["versions"]["v1"]
        assert manifest["active"] == "v1" and entry["source"] == "shipped sample model"
        assert entry["sha256"] == hashlib.sha256((models / "v1.npz").read_bytes()).hexdigest()
        assert entry["metrics"]["folds"] == 5
    [version] = await first.list_versions("smalltalk")
    assert version.active and version.accuracy is not None


async def test_corrections_or_an_own_copy_of_the_dataset_mean_training(tmp_path: Path) -> None:
    corrected = service(tmp_path / "a")
    await corrected.datasets.add_correction_async("smalltalk", "hello", "Howdy!")
    own = service(tmp_path / "b")
    (tmp_path / "b" / "datasets").mkdir(parents=True)
    shutil.copy(SAMPLES / "smalltalk.csv", tmp_path / "b" / "datasets" / "smalltalk.csv")
    for models in (corrected, own):
        with pytest.raises(NoModelError):
            await models.predict("smalltalk", "hello")
        assert not (models.models_dir / "smalltalk").exists()


@pytest.mark.parametrize("damage", ["bytes", "sample", "format"])
async def test_an_out_of_date_or_damaged_shipped_model_is_not_used(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    samples = tmp_path / "samples"
    shutil.copytree(SAMPLES, samples)
    if damage == "bytes":
        path = samples / FOLDER / "smalltalk.npz"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    elif damage == "sample":
        with open(samples / "smalltalk.csv", "a") as csv:
            csv.write("one more row,greeting,\n")
    else:
        records = json.loads((samples / FOLDER / RECORDS).read_text())
        records["smalltalk"]["format"] = MODEL_FORMAT - 1
        (samples / FOLDER / RECORDS).write_text(json.dumps(records))
    models = service(tmp_path / "data", samples)
    with caplog.at_level(logging.WARNING, logger="bot.services.model.samples"):
        with pytest.raises(NoModelError):
            await models.predict("smalltalk", "hello")
    assert caplog.records and not (models.models_dir / "smalltalk").exists()
