"""The model service: real training in worker processes, the version store, predictions."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from bot.errors import InvalidInputError, NotFoundError, TooLargeError, UserFacingError
from bot.services.model import training
from bot.services.model.artifact import _vocabularies, compile_pipeline, read_artifact
from bot.services.model.datasets.parse import Row, parse_dataset, replies_by_label
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.evaluation import TestItem, parse_test_data, parse_test_file
from bot.services.model.scorer import (
    MAX_TYPO_LOOKUPS,
    MIN_KNOWN_SHARE,
    KnownWords,
    Scorer,
    above_chance,
)
from bot.services.model.service import ModelService, NoModelError
from bot.services.model.store import ModelIntegrityError
from bot.services.model.training import CV_MAX_ROWS, build_pipeline, cv_sample
from bot.services.model.training_run import TrainResult
from bot.services.tasks.jobs import JobRunner
from bot.services.tasks.local import LocalRunner
from bot.services.tasks.work import BODIES, WorkServices

# Async tests share the module's event loop, so they can share one warm job runner.
module_loop = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "bot" / "samples" / "smalltalk.csv"
THREE_LABELS = ROOT / "tests" / "fixtures" / "three_labels.csv"  # greeting, weather, goodbye
MIN_CONFIDENCE = 0.35


async def crashing_train(payload: dict, ctx: object) -> dict:
    """A `train` task that fails part-way, as a bug or bad data would."""
    raise RuntimeError("simulated crash while fitting")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def jobs():
    """One runner (and its warm worker) for the module: starting scikit-learn takes seconds."""
    runner = JobRunner(max_workers=1, idle_seconds=None)
    yield runner
    await runner.close(timeout=10)


def make_service(data_dir: Path, jobs: JobRunner, **kwargs) -> ModelService:
    store = DatasetStore(data_dir, max_bytes=5 * 1024 * 1024, max_rows=200_000)
    return ModelService(data_dir, store, jobs, MIN_CONFIDENCE, **kwargs)


def with_sample(data_dir: Path) -> Path:
    (data_dir / "datasets").mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, data_dir / "datasets" / "smalltalk.csv")
    return data_dir


async def train(service: ModelService, dataset: str = "smalltalk") -> TrainResult:
    job = await service.start_training(dataset)
    await service.wait(job)
    assert job.status == "done", job.error
    return job.result


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def trained(jobs: JobRunner, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the sample dataset trained once (v1); tests work on copies."""
    data_dir = with_sample(tmp_path_factory.mktemp("trained"))
    await train(make_service(data_dir, jobs))
    return data_dir


@pytest.fixture
def trained_copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "data"))


# -- training ------------------------------------------------------------------------------


@module_loop
async def test_train_job_reports_metrics_and_stores_a_verified_version(
    jobs: JobRunner, tmp_path: Path
) -> None:
    service = make_service(with_sample(tmp_path), jobs)
    done: list[str] = []

    async def on_done(job) -> None:
        done.append(job.status)

    job = await service.start_training("smalltalk", on_done=on_done)
    assert job.kind == "train" and job.subject == "smalltalk"
    assert job.status in ("queued", "running")
    await service.wait(job)
    assert job.status == "done" and done == ["done"]

    result = job.result
    assert isinstance(result, TrainResult)
    rows = service.datasets.load("smalltalk")
    assert (result.dataset, result.version) == ("smalltalk", "v1")
    assert result.rows == len(rows) and result.labels == len({r.label for r in rows}) >= 12
    assert result.folds == 5 and result.cv_rows == len(rows)
    assert 0.6 <= result.accuracy <= 1.0 and 0.6 <= result.macro_f1 <= 1.0
    assert result.duration_seconds > 0
    assert "accuracy" in result.summary() and "v1" in result.summary()

    folder = tmp_path / "models" / "smalltalk"
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["versions"]["v1"]
    assert manifest["active"] == "v1"
    assert entry["sha256"] == hashlib.sha256((folder / "v1.npz").read_bytes()).hexdigest()
    assert entry["rows"] == result.rows and entry["labels"] == result.labels
    assert entry["metrics"]["accuracy"] == result.accuracy
    assert entry["metrics"]["macro_f1"] == result.macro_f1
    assert len(entry["dataset_hash"]) == 64 and entry["created_at"].endswith("+00:00")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@module_loop
async def test_training_needs_an_existing_valid_dataset(jobs: JobRunner, tmp_path: Path) -> None:
    service = make_service(tmp_path, jobs)
    with pytest.raises(NotFoundError, match="Dataset 'nope' not found."):
        await service.start_training("nope")
    with pytest.raises(InvalidInputError, match="A dataset name must be"):
        await service.start_training("../etc")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "bad.csv").write_text("text,label\nhi,a\nho,a\n")
    # The worker reads the dataset: one that can't be trained fails its job with the reason.
    job = await service.start_training("bad")
    await service.wait(job)
    assert job.status == "failed" and "at least 2 different labels" in job.error
    assert not (tmp_path / "models").exists()


# -- answering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "label"),
    [
        ("hello there", "greeting"),
        ("Good morning!", "greeting"),
        ("what's your name?", "name"),
        ("thank you so much", "thanks"),
        ("can you tell me a joke", "joke"),
        ("see you later!", "goodbye"),
        ("how are you doing today?", "how_are_you"),
        ("who created this bot", "creator"),
        ("helo there", "greeting"),  # typos still match through character n-grams
        ("tell me a jokke", "joke"),
        ("wats your name", "name"),
    ],
)
@module_loop
async def test_predictions_for_sample_phrases(
    jobs: JobRunner, trained_copy: Path, message: str, label: str
) -> None:
    prediction = await make_service(trained_copy, jobs).predict("smalltalk", message)
    assert prediction.label == label
    assert prediction.sure and MIN_CONFIDENCE <= prediction.confidence <= 1.0
    rows = DatasetStore(trained_copy, 1 << 20, 1000).load("smalltalk")
    assert prediction.reply == next(r.reply for r in rows if r.label == label)


@module_loop
async def test_an_unknown_message_is_not_sure(jobs: JobRunner, trained_copy: Path) -> None:
    prediction = await make_service(trained_copy, jobs).predict("smalltalk", "qzxv wplk brrt")
    assert prediction.confidence == 0.0
    assert prediction.sure is False


@module_loop
async def test_no_model_says_how_to_train(jobs: JobRunner, tmp_path: Path) -> None:
    service = make_service(with_sample(tmp_path), jobs)
    with pytest.raises(NoModelError) as caught:
        await service.predict("smalltalk", "hello")
    assert caught.value.message == (
        "No model is trained for dataset smalltalk yet. An admin can run `!train smalltalk`."
    )
    assert isinstance(caught.value, UserFacingError)
    with pytest.raises(NoModelError):
        await service.evaluate("smalltalk", [TestItem("hello")])
    assert await service.list_versions("smalltalk") == []
    assert await service.active_version("smalltalk") is None


ODD_TEXTS = [
    "hello there",
    "What's UP?!",
    "qzxv",
    "",
    "   ",
    "tell me a joke about the weather, please",
    "é ü ß Ünïcödé",
    "tabs\tand\nnew  lines   and    spaces",
    "I",
    "a" * 300,
    "hello hello hello hello",
]


def fitted_pipeline(rows: list[Row]):
    return build_pipeline().fit([r.text for r in rows], [r.label for r in rows])


@pytest.mark.parametrize("labels", [16, 2])
def test_the_compiled_model_scores_like_scikit_learn(labels: int) -> None:
    rows = parse_dataset(SAMPLE.read_bytes(), SAMPLE.name, max_rows=1000)
    kept = sorted({r.label for r in rows})[:labels]
    rows = [r for r in rows if r.label in kept]
    pipeline = fitted_pipeline(rows)
    scorer = Scorer(compile_pipeline(pipeline))
    assert scorer.classes == kept
    for text in ODD_TEXTS + [r.text for r in rows[::7]]:
        assert scorer.proba(text) == pytest.approx(pipeline.predict_proba([text])[0], abs=1e-5)


def fit_like_sklearn(texts: list[str], labels: list[str]) -> tuple[Any, Any]:
    """Fit with the fast counting path and check its vocabulary and idf are scikit-learn's;
    returns (the fitted model, its feature union)."""
    fitted = training.fit(texts, labels)
    ours = fitted.pipeline.named_steps["features"]
    theirs = build_pipeline().named_steps["features"].fit(texts)
    for (name, mine), (_, sklearns) in zip(
        ours.transformer_list, theirs.transformer_list, strict=True
    ):
        assert set(mine.vocabulary_) == set(sklearns.vocabulary_), name
        order = [mine.vocabulary_[term] for term in sklearns.get_feature_names_out()]
        assert np.allclose(mine.idf_[order], sklearns.idf_), name
    return fitted, ours


def test_the_training_counts_terms_as_scikit_learn_does() -> None:
    rows = parse_dataset(SAMPLE.read_bytes(), SAMPLE.name, max_rows=1000)
    texts = [r.text for r in rows] + ODD_TEXTS + ["Ünïcödé  ÉCOLE", "a-b c_d e.f", "x\ty\nz"]
    labels = [r.label for r in rows] + ["odd"] * (len(texts) - len(rows))
    fitted, ours = fit_like_sklearn(texts, labels)
    counted = fitted.features(range(len(texts))).toarray()
    assert np.allclose(counted, ours.transform(texts).toarray(), atol=1e-6)


def test_the_vocabulary_keeps_the_most_frequent_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "MAX_FEATURES", 5)
    counts = training.count_terms(["a a a b", "b c", "a d", "e f g"])
    block = training.Block.fit(counts["words"], slice(None))
    assert block.terms[:2] == ["a", "b"] and len(block.terms) == 5


@pytest.mark.parametrize("threads", [1, 2])
def test_cross_validation_runs_beside_the_fit_or_falls_back(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.threading, "active_count", lambda: threads)
    beside = training._Beside(os.getpid)
    assert (beside.result() != os.getpid()) == (threads == 1)  # forked only without threads


def test_a_failing_child_falls_back_to_running_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training.threading, "active_count", lambda: 1)

    def flaky() -> str:
        if os.getpid() != parent:
            os._exit(3)  # the child dies
        return "here"

    parent = os.getpid()
    assert training._Beside(flaky).result() == "here"


def test_a_model_file_is_plain_arrays(trained: Path) -> None:
    data = (trained / "models" / "smalltalk" / "v1.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
    assert read_artifact(data).predict("hello")[0] == "greeting"


@module_loop
async def test_a_format_1_model_of_an_older_version_still_loads(
    jobs: JobRunner, tmp_path: Path
) -> None:
    import joblib

    rows = parse_dataset(SAMPLE.read_bytes(), SAMPLE.name, max_rows=1000)
    pipeline = fitted_pipeline(rows)
    old = {
        "format": 1,
        "dataset": "smalltalk",
        "model": _vocabularies(pipeline),
        "replies": replies_by_label(rows),
        "exact": {},
    }
    buffer = io.BytesIO()
    joblib.dump(old, buffer)
    folder = tmp_path / "models" / "smalltalk"
    folder.mkdir(parents=True)
    (folder / "v1.joblib").write_bytes(buffer.getvalue())
    entry = {"sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "created_at": "2026-01-01"}
    manifest = {"format": 1, "dataset": "smalltalk", "active": "v1", "versions": {"v1": entry}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    service = make_service(tmp_path, jobs)
    for text in ("hello there", "tell me a joke", "wats your name", "qzxv"):
        got = service._loaded.get("smalltalk")
        prediction = await service.predict("smalltalk", text)
        assert prediction.label == pipeline.predict([text])[0] or prediction.confidence == 0.0
    scorer = service._loaded["smalltalk"].scorer
    assert scorer.proba("hello") == pytest.approx(pipeline.predict_proba(["hello"])[0], abs=1e-5)
    assert got is service._loaded["smalltalk"]
    # It was unpickled by a worker, but that is no job for !jobs to list.
    assert not [job for job in jobs.list(100) if job.kind == "load"]

    tampered = bytearray(buffer.getvalue())
    tampered[len(tampered) // 2] ^= 1
    (folder / "v1.joblib").write_bytes(bytes(tampered))
    with pytest.raises(ModelIntegrityError, match="does not match its record"):
        await make_service(tmp_path, jobs).predict("smalltalk", "hello")


@module_loop
async def test_the_bot_answers_without_importing_scikit_learn(trained: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bot.services.model.datasets.store import DatasetStore\n"
        "from bot.services.tasks.jobs import JobRunner\n"
        "from bot.services.model.service import ModelService\n"
        f"data = Path({str(trained)!r})\n"
        "service = ModelService(data, DatasetStore(data, 1, 1), JobRunner(), 0.35)\n"
        "prediction = asyncio.run(service.predict('smalltalk', 'hello there'))\n"
        "print(prediction.label, 'sklearn' in sys.modules, 'scipy' in sys.modules)\n"
    )
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["greeting", "False", "False"]


@module_loop
async def test_two_labels_and_labels_without_replies(jobs: JobRunner, tmp_path: Path) -> None:
    service = make_service(tmp_path, jobs)
    yes, no = [Row("yes", "y"), Row("yeah sure", "y")], [Row("no", "n"), Row("nope never", "n")]
    service.datasets.save("yesno", (yes + no) * 3)
    await train(service, "yesno")
    prediction = await service.predict("yesno", "yeah")
    assert prediction.label == "y" and prediction.reply == "y"  # no reply given: the label
    assert (await service.predict("yesno", "nope")).label == "n"


# -- knowing when it doesn't know ------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def three_labels(jobs: JobRunner, tmp_path_factory: pytest.TempPathFactory) -> ModelService:
    """A service with the 3-label dataset (10 rows per label) trained by `train_model`."""
    data_dir = tmp_path_factory.mktemp("three")
    (data_dir / "datasets").mkdir()
    shutil.copy(THREE_LABELS, data_dir / "datasets" / "three_labels.csv")
    service = make_service(data_dir, jobs)
    await train(service, "three_labels")
    return service


@pytest.mark.parametrize(
    ("message", "label"),
    [
        ("hey there, good morning", "greeting"),
        ("will it rain later today", "weather"),
        ("see you tomorrow, bye", "goodbye"),
        ("is it raining", "weather"),
        ("helo", "greeting"),  # one typo away from a known word
    ],
)
@module_loop
async def test_three_labels_in_domain_paraphrases_are_answered(
    three_labels: ModelService, message: str, label: str
) -> None:
    prediction = await three_labels.predict("three_labels", message)
    assert (prediction.label, prediction.sure) == (label, True), prediction
    assert MIN_CONFIDENCE <= prediction.confidence <= 1.0


@pytest.mark.parametrize(
    "message",
    [
        "qwv zzkx plorf",
        "explain quantum chromodynamics",
        "what is the capital of mongolia",
        "the cat is on the table",
        "tell me a joke",
        "?!",
    ],
)
@module_loop
async def test_three_labels_gibberish_and_out_of_domain_are_not_sure(
    three_labels: ModelService, message: str
) -> None:
    prediction = await three_labels.predict("three_labels", message)
    assert (prediction.sure, prediction.confidence) == (False, 0.0), prediction


@module_loop
async def test_three_labels_unknown_words_win_over_decisive_probabilities(
    three_labels: ModelService,
) -> None:
    message = "what is the capital of mongolia"
    await three_labels.predict("three_labels", message)
    scorer = three_labels._loaded["three_labels"].scorer
    # "what", "is" and "the" are in weather rows only: the classifier is decisive...
    assert scorer.proba(message).max() > 0.8
    # ...but the words that carry the question are unknown.
    assert scorer.known_share(message) < MIN_KNOWN_SHARE <= scorer.known_share("is it raining")


@pytest.mark.parametrize("message", ["how are you", "i like pizza"])
@module_loop
async def test_three_labels_known_words_without_a_clear_label_are_not_sure(
    three_labels: ModelService, message: str
) -> None:
    prediction = await three_labels.predict("three_labels", message)
    assert not prediction.sure and prediction.confidence < MIN_CONFIDENCE


def spread(labels: int, top: float) -> np.ndarray:
    """A distribution with `top` on one label and the rest shared evenly by the others."""
    return np.array([top] + [(1.0 - top) / (labels - 1)] * (labels - 1))


@pytest.mark.parametrize("labels", [2, 3, 30])
def test_confidence_is_zero_at_chance_and_one_at_certainty(labels: int) -> None:
    assert above_chance(np.full(labels, 1.0 / labels)) == pytest.approx(0.0, abs=1e-12)
    assert above_chance(spread(labels, 1.0)) == 1.0
    halfway = 1.0 / labels + 0.5 * (1.0 - 1.0 / labels)
    assert above_chance(spread(labels, halfway)) == pytest.approx(0.5)


def test_confidence_means_the_same_with_3_labels_as_with_30() -> None:
    assert above_chance(spread(3, 0.9)) == pytest.approx(above_chance(spread(30, 0.9)), abs=0.05)
    assert above_chance(spread(3, 0.99)) == pytest.approx(above_chance(spread(30, 0.99)), abs=0.01)
    # A top probability of 0.4 is a near tie among 3 labels and a clear winner among 30.
    assert above_chance(spread(3, 0.4)) < MIN_CONFIDENCE < above_chance(spread(30, 0.4))
    assert above_chance(np.array([0.75, 0.25])) == pytest.approx(0.5)


def word_block(idf: dict[str, float]) -> dict:
    """A compiled word block (as `compile_pipeline` makes it) with these terms and idf."""
    return {
        "analyzer": "word",
        "ngram_range": (1, 2),
        "token_pattern": r"(?u)\b\w+\b",
        "lowercase": True,
        "sublinear_tf": True,
        "vocabulary": {term: i for i, term in enumerate(idf)},
        "idf": np.array(list(idf.values())),
    }


# idf - 1 is a word's information: 0.1 for "the" (in nearly every row), 2.0 at most.
INFORMATION = {"the": 1.1, "is": 1.2, "umbrella": 3.0, "rain": 3.0, "hello": 3.0, "see you": 3.0}
KNOWN = KnownWords.of([word_block(INFORMATION)])


@pytest.mark.parametrize(
    ("text", "share"),
    [
        ("qwv zzkx plorf", 0.0),
        ("", 0.0),
        ("?! :)", 0.0),
        ("hello", 1.0),
        ("Rain? RAIN!", 1.0),
        ("the is", 1.0),
        ("umbrella capital", 0.5),
        ("the capital", 0.1 / 2.1),  # a common known word is hardly knowledge
        ("see you", 0.0),  # a known bigram does not make its words known
        ("helo", 1.0),  # a letter missing
        ("helllo", 1.0),  # one too many
        ("hellp rain", 1.0),  # a wrong one
        ("ehllo", 1.0),  # two swapped
        ("hxllp", 0.0),  # two typos
        ("rin", 0.0),  # too short to guess
    ],
)
def test_known_share_weighs_words_by_information(text: str, share: float) -> None:
    assert KNOWN.share(text) == pytest.approx(share)


def test_typo_look_ups_are_bounded() -> None:
    typos = MAX_TYPO_LOOKUPS + 2
    assert KNOWN.share("helo " * typos) == pytest.approx(MAX_TYPO_LOOKUPS / typos)
    assert KNOWN.share("hello " * typos) == 1.0


def test_the_gate_needs_a_word_block_with_single_words() -> None:
    chars = {**word_block({"hel": 2.0}), "analyzer": "char_wb", "ngram_range": (3, 3)}
    assert KnownWords.of([chars]) is None
    assert KnownWords.of([{**word_block({"see you": 2.0}), "ngram_range": (2, 2)}]) is None
    assert isinstance(KnownWords.of([chars, word_block({"hello": 2.0})]), KnownWords)


# -- versions ------------------------------------------------------------------------------


@module_loop
async def test_versions_and_rollback(jobs: JobRunner, trained_copy: Path) -> None:
    service = make_service(trained_copy, jobs)
    original = (await service.predict("smalltalk", "hello")).reply

    rows = [
        Row(r.text, r.label, "Hi from version two!" if r.label == "greeting" else r.reply)
        for r in service.datasets.load("smalltalk")
    ]
    service.datasets.save("smalltalk", rows)
    result = await train(service)
    assert result.version == "v2"
    assert (await service.predict("smalltalk", "hello")).reply == "Hi from version two!"

    versions = await service.list_versions("smalltalk")
    assert [(v.version, v.active) for v in versions] == [("v1", False), ("v2", True)]
    assert versions[0].dataset_hash != versions[1].dataset_hash
    assert all(v.accuracy is not None and v.macro_f1 is not None for v in versions)

    rolled = await service.use_version("smalltalk", "v1")
    assert rolled.version == "v1" and rolled.active
    assert (await service.predict("smalltalk", "hello")).reply == original
    assert (await service.active_version("smalltalk")).version == "v1"

    assert (await service.use_version("smalltalk", "2")).version == "v2"
    assert (await service.predict("smalltalk", "hello")).reply == "Hi from version two!"

    # The choice is on disk: a new service (a restarted bot) uses the same version.
    assert (await make_service(trained_copy, jobs).predict("smalltalk", "hi")).reply == (
        "Hi from version two!"
    )
    with pytest.raises(NotFoundError) as caught:
        await service.use_version("smalltalk", "v9")
    assert caught.value.message == "Model version v9 not found for dataset smalltalk."


@module_loop
async def test_a_tampered_model_file_is_refused(
    jobs: JobRunner, trained_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = trained_copy / "models" / "smalltalk" / "v1.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    service = make_service(trained_copy, jobs)
    with caplog.at_level(logging.WARNING, logger="bot.services.model"):
        with pytest.raises(ModelIntegrityError) as caught:
            await service.predict("smalltalk", "hello")
    assert "does not match its record" in caught.value.message
    assert "`!train smalltalk`" in caught.value.message
    assert str(trained_copy) not in caught.value.message
    assert any("refusing to load" in r.getMessage() for r in caplog.records)
    assert "smalltalk" not in service._loaded
    with pytest.raises(ModelIntegrityError):
        await service.use_version("smalltalk", "v1")


@module_loop
async def test_a_model_file_not_recorded_is_never_loaded(
    jobs: JobRunner, trained_copy: Path
) -> None:
    folder = trained_copy / "models" / "smalltalk"
    shutil.copy(folder / "v1.npz", folder / "v7.joblib")  # e.g. dropped in by hand
    service = make_service(trained_copy, jobs)
    with pytest.raises(NotFoundError, match="Model version v7 not found"):
        await service.use_version("smalltalk", "v7")
    result = await train(service)
    assert result.version == "v8"  # never reuses a name that exists on disk


@module_loop
async def test_concurrent_trainings_of_one_dataset_queue(
    jobs: JobRunner, trained_copy: Path
) -> None:
    service = make_service(trained_copy, jobs)
    first = await service.start_training("smalltalk")
    second = await service.start_training("smalltalk")
    assert not service.queued_behind(first) and service.queued_behind(second)
    await service.wait(second)
    assert first.status == second.status == "done"
    assert second.started_at >= first.finished_at
    assert (first.result.version, second.result.version) == ("v2", "v3")
    assert (await service.active_version("smalltalk")).version == "v3"


@module_loop
async def test_a_crash_in_training_fails_the_job_and_keeps_the_previous_model(
    jobs: JobRunner, trained_copy: Path
) -> None:
    crashing = LocalRunner(WorkServices(None, jobs), bodies={**BODIES, "train": crashing_train})
    service = make_service(trained_copy, jobs, tasks=crashing)
    before = await service.predict("smalltalk", "hello")
    reported: list[tuple[str, str | None]] = []

    async def on_done(job) -> None:
        reported.append((job.status, job.error))

    job = await service.start_training("smalltalk", on_done=on_done)
    await service.wait(job)
    assert reported == [("failed", "RuntimeError: simulated crash while fitting")]
    assert [v.version for v in await service.list_versions("smalltalk")] == ["v1"]
    assert (await service.active_version("smalltalk")).version == "v1"
    assert await make_service(trained_copy, jobs).predict("smalltalk", "hello") == before


# -- corrections ---------------------------------------------------------------------------


@module_loop
async def test_corrections_change_the_answer_after_retraining(
    jobs: JobRunner, trained_copy: Path
) -> None:
    service = make_service(trained_copy, jobs)
    question = "What is the meaning of life?"
    assert (await service.predict("smalltalk", question)).reply != "42, of course."
    greeting = (await service.predict("smalltalk", "hello")).reply

    await service.datasets.add_correction_async("smalltalk", question, "42, of course.")
    await service.datasets.add_correction_async("smalltalk", "hello", "Howdy, partner!")
    assert (await service.predict("smalltalk", question)).reply != "42, of course."  # not yet

    await train(service)
    answer = await service.predict("smalltalk", "what is the meaning of life")
    assert answer.reply == "42, of course." and answer.sure and answer.from_correction
    assert answer.confidence == 1.0
    assert (await service.predict("smalltalk", "HELLO!")).reply == "Howdy, partner!"
    # Other greetings still get the dataset's reply.
    assert (await service.predict("smalltalk", "good morning")).reply == greeting


# -- testing a model -----------------------------------------------------------------------


@module_loop
async def test_evaluation_with_labels_gives_accuracy_report_and_png(
    jobs: JobRunner, trained_copy: Path
) -> None:
    service = make_service(trained_copy, jobs)
    items = parse_test_data(
        '[{"text": "hi there", "label": "greeting"}, {"text": "tell me a joke", "label": "joke"},'
        ' {"text": "bye bye", "label": "goodbye"}, {"text": "qzxv", "label": "thanks"},'
        ' "how old are you"]'
    )
    evaluation = await service.evaluate("smalltalk", items)
    assert len(evaluation.predictions) == 5
    assert [p.label for p in evaluation.predictions[:3]] == ["greeting", "joke", "goodbye"]
    assert evaluation.labeled == 4
    assert evaluation.accuracy == pytest.approx(0.75)
    assert "precision" in evaluation.report and "recall" in evaluation.report
    assert "greeting" in evaluation.report and "f1-score" in evaluation.report
    assert evaluation.confusion_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(evaluation.confusion_png) > 1000


@module_loop
async def test_evaluation_without_labels_gives_predictions_only(
    jobs: JobRunner, trained_copy: Path
) -> None:
    service = make_service(trained_copy, jobs)
    evaluation = await service.evaluate("smalltalk", [TestItem("hello"), TestItem("qzxv")])
    assert [p.sure for p in evaluation.predictions] == [True, False]
    assert evaluation.accuracy is None and evaluation.report is None
    assert evaluation.confusion_png is None
    with pytest.raises(InvalidInputError):
        await service.evaluate("smalltalk", [])


# -- test data parsing (no model needed) ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"hello"', [TestItem("hello")]),
        ('["hi", "bye"]', [TestItem("hi"), TestItem("bye")]),
        ('{"text": "hi", "label": "greeting"}', [TestItem("hi", "greeting")]),
        ('[{"text": "hi"}, {"text": "yo", "label": null}]', [TestItem("hi"), TestItem("yo")]),
        (
            '[{"text": " hi ", "label": " greeting "}, "bye"]',
            [TestItem("hi", "greeting"), TestItem("bye")],
        ),
        ('```json\n["hi"]\n```', [TestItem("hi")]),
        ('```["hi"]```', [TestItem("hi")]),
    ],
)
def test_parse_test_data_shapes(raw: str, expected: list[TestItem]) -> None:
    assert parse_test_data(raw) == expected


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("hello there", "Expecting value at line 1, column 1"),
        ('["hi",\n "bye"', "Expecting ',' delimiter at line 2, column 7"),
        ('[{"text": "hi"}, {"label": "x"}]', 'item 2 has no "text"'),
        ("[1]", 'item 1 is a number, not a string or an object with "text"'),
        ("[]", "the list is empty"),
        ('[""]', "the text of item 1 is empty"),
        ('{"text": "hi", "label": 3}', '"label" of the data is not a string'),
        ("null", 'the data is null, not a string or an object with "text"'),
        ("  ", "there is nothing to test"),
    ],
)
def test_parse_test_data_errors(raw: str, problem: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_test_data(raw)
    assert caught.value.message.startswith(f"Invalid test data format: {problem}.")


def test_parse_test_data_limits_and_files() -> None:
    with pytest.raises(TooLargeError):
        parse_test_data(json.dumps(["x"] * 11), max_items=10)
    csv_data = b"\xef\xbb\xbfText,Label\nhi,greeting\nbye,\n\n"
    assert parse_test_file(csv_data, "t.csv") == [TestItem("hi", "greeting"), TestItem("bye")]
    assert parse_test_file(b'["hi"]', "t.json") == [TestItem("hi")]
    with pytest.raises(InvalidInputError, match="^Invalid test data format: the file is not"):
        parse_test_file(b"\xff\xfe", "t.json")


def test_cross_validation_sample_is_stratified_and_capped() -> None:
    labels = ["a"] * (CV_MAX_ROWS * 2) + ["b"] * 100 + ["c"] * 3 + ["lonely"]
    sample = cv_sample(labels)
    chosen = [labels[i] for i in sample]
    assert abs(len(sample) - CV_MAX_ROWS) < 10
    assert chosen.count("c") == 2 and "lonely" not in chosen
    assert chosen.count("b") in range(45, 56)
    assert cv_sample(["x", "x", "y"]) == [0, 1]


def test_importing_the_service_is_cheap() -> None:
    code = (
        "import sys, bot.services.model.service\n"
        "heavy = [m for m in ('sklearn', 'numpy', 'joblib', 'matplotlib', 'scipy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


@module_loop
async def test_predictions_do_not_reload_the_model(jobs: JobRunner, trained_copy: Path) -> None:
    service = make_service(trained_copy, jobs)
    await asyncio.gather(*(service.predict("smalltalk", f"hello {i}") for i in range(20)))
    model = service._loaded["smalltalk"]
    await service.predict("smalltalk", "hi")
    assert service._loaded["smalltalk"] is model
