"""The chat model: training in a worker process, a versioned model store, and predictions.

The model is a scikit-learn pipeline: TF-IDF over word 1-2 grams and character 3-4 grams
(within word boundaries, so typos still match), then multinomial logistic regression. Its
class probability is the confidence, in [0, 1]. The reply for a label is the first reply the
dataset gives for it (the label itself when it gives none). Corrections are also kept as an
exact-match table, so a corrected message gets the corrected reply after the next training,
whatever the classifier thinks of it.

Store: `<data_dir>/models/<dataset>/v1.joblib, v2.joblib, ...` and `manifest.json`, which
records for each version the dataset hash, metrics, creation time, row and label counts,
duration and the sha256 of the file, and which version is active. Files and the manifest are
written atomically; the manifest's read-modify-write is guarded by a file lock because the
worker (new versions) and the bot (`use_version`) both write it.

joblib files are pickles, and loading a pickle runs code. A model file is loaded only when the
sha256 of its bytes equals the one recorded when this service wrote it, and the bytes that
were hashed are the bytes that are loaded. Nothing else in the bot loads these files.

Speed: heavy modules (scikit-learn, numpy, joblib, matplotlib) are imported inside functions,
so importing this module is cheap. Single predictions skip scikit-learn's per-call input
validation (about 2 ms) and compute the same TF-IDF and softmax with numpy directly (about
0.1 ms); a test checks both give the same probabilities.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import random
import re
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import InvalidInputError, NotFoundError, TooLargeError, UserFacingError
from bot.services.datasets import (
    CORRECTED_LABEL_PREFIX,
    MAX_TEXT_CHARS,
    DatasetStore,
    Row,
    atomic_write,
    dataset_hash,
    file_stamp,
    normalize_text,
    replies_by_label,
    validate_name,
)
from bot.services.jobs import Job, JobRunner

try:
    import fcntl
except ImportError:  # not on Windows: the manifest lock is then a no-op
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

MODEL_FORMAT = 1
MANIFEST_NAME = "manifest.json"
CV_MAX_FOLDS = 5
# Cross-validation refits the whole pipeline once per fold; above this many rows it runs on a
# stratified sample so that training 100k rows stays within seconds.
CV_MAX_ROWS = 10_000
MAX_TEST_ITEMS = 1000
INVALID_TEST_DATA = "Invalid test data format: "
TEST_DATA_SHAPES = (
    'Send a JSON string, a list of strings, or a list of objects with "text" and an '
    'optional "label".'
)
_VERSION = re.compile(r"v([1-9][0-9]{0,5})")
_MODEL_FILE = re.compile(r"v([1-9][0-9]{0,5})\.joblib")


class NoModelError(UserFacingError):
    """The dataset has no trained model yet."""


class ModelIntegrityError(UserFacingError):
    """A model file does not match the manifest (tampered, truncated or foreign)."""


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
class ModelVersion:
    version: str
    active: bool
    created_at: datetime
    rows: int
    labels: int
    accuracy: float | None
    macro_f1: float | None
    folds: int
    duration_seconds: float
    dataset_hash: str
    sha256: str


@dataclass(frozen=True)
class Prediction:
    label: str
    reply: str
    confidence: float
    sure: bool
    from_correction: bool = False


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest test class

    text: str
    label: str | None = None


@dataclass(frozen=True)
class Evaluation:
    predictions: list[Prediction]
    accuracy: float | None
    report: str | None
    confusion_png: bytes | None
    labeled: int = 0


# -- training (runs in a worker process) ---------------------------------------------------


def _build_pipeline() -> Any:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    words = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w+\b",
        sublinear_tf=True,
        dtype=np.float32,
    )
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True, dtype=np.float32
    )
    # C=10: few rows per label, so weak regularisation keeps confidences decisive; tol=1e-3
    # converges in a few iterations with no measurable loss of accuracy.
    classifier = LogisticRegression(C=10.0, tol=1e-3, max_iter=1000)
    return Pipeline(
        [
            ("features", FeatureUnion([("words", words), ("chars", chars)])),
            ("classifier", classifier),
        ]
    )


def _cv_sample(labels: Sequence[str]) -> list[int]:
    """Indices to cross-validate on: labels with 2+ rows, stratified down to CV_MAX_ROWS."""
    counts = Counter(labels)
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if counts[label] >= 2:
            by_label[label].append(index)
    total = sum(len(indices) for indices in by_label.values())
    if total <= CV_MAX_ROWS:
        return sorted(i for indices in by_label.values() for i in indices)
    rng = random.Random(0)
    fraction = CV_MAX_ROWS / total
    sample: list[int] = []
    for indices in by_label.values():
        take = min(len(indices), max(2, round(len(indices) * fraction)))
        sample.extend(rng.sample(indices, take))
    return sorted(sample)


def _cross_validate(
    texts: Sequence[str], labels: Sequence[str]
) -> tuple[float | None, float | None, int, int]:
    """(accuracy, macro-F1, folds, rows used) of stratified k-fold CV, k = min(5, rows/label)."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    sample = _cv_sample(labels)
    y = [labels[i] for i in sample]
    counts = Counter(y)
    if len(counts) < 2:
        return None, None, 0, 0
    folds = min(CV_MAX_FOLDS, min(counts.values()))
    x = [texts[i] for i in sample]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    predicted = cross_val_predict(_build_pipeline(), x, y, cv=splitter)
    accuracy = float(accuracy_score(y, predicted))
    macro_f1 = float(f1_score(y, predicted, average="macro", zero_division=0))
    return accuracy, macro_f1, folds, len(sample)


def train_model(rows: Sequence[Row], out_dir: Path, dataset: str, dataset_hash: str) -> TrainResult:
    """Fit, cross-validate and store a new version of `dataset`'s model, and make it active.

    Blocking and CPU-bound: meant to run in a worker process (`JobRunner` pickles the
    arguments). `out_dir` is the models folder; the version goes to `out_dir/<dataset>/`.
    """
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    validate_name(dataset)
    texts = [row.text for row in rows]
    labels = [row.label for row in rows]
    if len(set(labels)) < 2:
        raise InvalidInputError("The dataset needs at least 2 different labels to train.")
    # One thread: the worker shares the machine with the bot's event loop.
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        accuracy, macro_f1, folds, cv_rows = _cross_validate(texts, labels)
        pipeline = _build_pipeline().fit(texts, labels)
    artifact = {
        "format": MODEL_FORMAT,
        "dataset": dataset,
        "pipeline": pipeline,
        "replies": replies_by_label(rows),
        "exact": {
            normalize_text(row.text): row.label
            for row in rows
            if row.label.startswith(CORRECTED_LABEL_PREFIX)
        },
        "sklearn_version": sklearn.__version__,
    }
    data = _dump(artifact)
    folder = Path(out_dir) / dataset
    with _manifest_lock(folder):
        manifest = _read_manifest(folder) or _new_manifest(dataset)
        version = _next_version(manifest, folder)
        atomic_write(folder / f"{version}.joblib", data)
        created_at = datetime.now(UTC)
        duration = time.perf_counter() - started
        manifest["versions"][version] = {
            "file": f"{version}.joblib",
            "sha256": hashlib.sha256(data).hexdigest(),
            "dataset_hash": dataset_hash,
            "created_at": created_at.isoformat(),
            "rows": len(rows),
            "labels": len(set(labels)),
            "metrics": {
                "accuracy": accuracy,
                "macro_f1": macro_f1,
                "folds": folds,
                "cv_rows": cv_rows,
            },
            "duration_seconds": round(duration, 3),
            "sklearn_version": sklearn.__version__,
        }
        manifest["active"] = version
        _write_manifest(folder, manifest)
    return TrainResult(
        dataset=dataset,
        version=version,
        rows=len(rows),
        labels=len(set(labels)),
        accuracy=accuracy,
        macro_f1=macro_f1,
        folds=folds,
        cv_rows=cv_rows,
        duration_seconds=duration,
        created_at=created_at,
    )


def _dump(artifact: dict[str, Any]) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(artifact, buffer)
    return buffer.getvalue()


# -- manifest ------------------------------------------------------------------------------


def _new_manifest(dataset: str) -> dict[str, Any]:
    return {"format": MODEL_FORMAT, "dataset": dataset, "active": None, "versions": {}}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest, or None if there is none; an unreadable one is logged and ignored."""
    path = folder / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable model manifest %s: %s", path, exc)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("versions"), dict):
        log.warning("ignoring malformed model manifest %s", path)
        return None
    manifest["versions"] = {
        version: entry
        for version, entry in manifest["versions"].items()
        if _VERSION.fullmatch(str(version)) and isinstance(entry, dict) and entry.get("sha256")
    }
    if manifest.get("active") not in manifest["versions"]:
        manifest["active"] = None
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST_NAME, json.dumps(manifest, indent=2).encode("utf-8"))


@contextmanager
def _manifest_lock(folder: Path) -> Iterator[None]:
    """Serialise manifest updates between the bot and worker processes."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".manifest.lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _version_number(version: str) -> int:
    match = _VERSION.fullmatch(version)
    return int(match.group(1)) if match else 0


def _next_version(manifest: dict[str, Any], folder: Path) -> str:
    """One more than any version recorded or on disk (a crash may leave an unrecorded file)."""
    numbers = [_version_number(v) for v in manifest["versions"]]
    numbers += [int(m.group(1)) for p in folder.iterdir() if (m := _MODEL_FILE.fullmatch(p.name))]
    return f"v{max(numbers, default=0) + 1}"


def _model_version(version: str, entry: dict[str, Any], active: str | None) -> ModelVersion:
    metrics = entry.get("metrics") or {}
    return ModelVersion(
        version=version,
        active=version == active,
        created_at=datetime.fromisoformat(entry["created_at"]),
        rows=int(entry.get("rows", 0)),
        labels=int(entry.get("labels", 0)),
        accuracy=metrics.get("accuracy"),
        macro_f1=metrics.get("macro_f1"),
        folds=int(metrics.get("folds", 0)),
        duration_seconds=float(entry.get("duration_seconds", 0.0)),
        dataset_hash=str(entry.get("dataset_hash", "")),
        sha256=str(entry["sha256"]),
    )


# -- a loaded model ------------------------------------------------------------------------


class _FastScorer:
    """The pipeline's predict_proba for one text, in plain numpy.

    scikit-learn validates its input on every call, which costs about 2 ms per message; this
    computes the same sublinear TF-IDF (l2-normalised per vectorizer, as FeatureUnion
    concatenates them) and the logistic regression's softmax directly.
    """

    def __init__(self, pipeline: Any) -> None:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        union, classifier = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
        if union.transformer_weights or not isinstance(classifier, LogisticRegression):
            raise TypeError("unsupported pipeline")
        self._blocks: list[tuple[Callable[[str], list[str]], dict[str, int], Any, bool, int]] = []
        offset = 0
        for _, vectorizer in union.transformer_list:
            if not isinstance(vectorizer, TfidfVectorizer):
                raise TypeError("unsupported vectorizer")
            if vectorizer.norm != "l2" or not vectorizer.use_idf or vectorizer.binary:
                raise TypeError("unsupported vectorizer settings")
            idf = np.asarray(vectorizer.idf_, dtype=np.float64)
            vocabulary = vectorizer.vocabulary_
            analyze = vectorizer.build_analyzer()
            self._blocks.append((analyze, vocabulary, idf, vectorizer.sublinear_tf, offset))
            offset += len(vectorizer.vocabulary_)
        self._coef_t = np.ascontiguousarray(classifier.coef_.T, dtype=np.float64)
        self._intercept = np.asarray(classifier.intercept_, dtype=np.float64)

    def proba(self, text: str) -> np.ndarray:
        import numpy as np

        scores = self._intercept.copy()
        for analyze, vocabulary, idf, sublinear, offset in self._blocks:
            counts: dict[int, int] = {}
            for term in analyze(text):
                index = vocabulary.get(term)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                continue
            indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (np.log(tf) + 1.0 if sublinear else tf) * idf[indices]
            values /= np.sqrt(values @ values)
            scores += values @ self._coef_t[indices + offset]
        if scores.shape[0] == 1:  # two labels: a sigmoid on one score
            positive = 1.0 / (1.0 + np.exp(-scores[0]))
            return np.array([1.0 - positive, positive])
        scores -= scores.max()
        exp = np.exp(scores)
        return exp / exp.sum()


class _LoadedModel:
    def __init__(self, dataset: str, version: str, sha256: str, artifact: dict[str, Any]) -> None:
        self.dataset = dataset
        self.version = version
        self.sha256 = sha256
        self.pipeline = artifact["pipeline"]
        self.replies: dict[str, str | None] = dict(artifact["replies"])
        self.exact: dict[str, str] = dict(artifact["exact"])
        self.classes: list[str] = [str(c) for c in self.pipeline.classes_]
        try:
            self._scorer: _FastScorer | None = _FastScorer(self.pipeline)
        except (TypeError, AttributeError, KeyError) as exc:
            log.warning("model %s %s uses the slow prediction path: %s", dataset, version, exc)
            self._scorer = None

    def proba(self, text: str) -> np.ndarray:
        if self._scorer is not None:
            return self._scorer.proba(text)
        return self.pipeline.predict_proba([text])[0]

    def predict(self, text: str) -> tuple[str, float, bool]:
        """(label, confidence, from a correction) for one message."""
        label = self.exact.get(normalize_text(text))
        if label is not None:
            return label, 1.0, True
        proba = self.proba(text)
        best = int(proba.argmax())
        return self.classes[best], float(proba[best]), False

    def reply_for(self, label: str) -> str:
        return self.replies.get(label) or label


def _load_model(folder: Path, dataset: str, version: str, sha256: str) -> _LoadedModel:
    """Read, verify and unpickle one version. Blocking."""
    import joblib
    import sklearn

    path = folder / f"{version}.joblib"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.warning("model file %s is missing", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) is missing. "
            f"An admin can run `!train {dataset}` to train a new one."
        ) from None
    _verify(data, sha256, path, dataset, version)
    started = time.perf_counter()
    artifact = joblib.load(io.BytesIO(data))
    if not isinstance(artifact, dict) or artifact.get("format") != MODEL_FORMAT:
        raise ModelIntegrityError(
            f"The model of dataset {dataset} ({version}) was made by another version of the "
            f"bot. An admin can run `!train {dataset}` to train a new one."
        )
    if artifact.get("sklearn_version") != sklearn.__version__:
        log.warning(
            "model %s %s was trained with scikit-learn %s, running %s; retrain if replies look off",
            dataset,
            version,
            artifact.get("sklearn_version"),
            sklearn.__version__,
        )
    model = _LoadedModel(dataset, version, sha256, artifact)
    log.info("loaded model %s %s in %.2f s", dataset, version, time.perf_counter() - started)
    return model


def _verify(data: bytes, sha256: str, path: Path, dataset: str, version: str) -> None:
    if hashlib.sha256(data).hexdigest() != sha256:
        log.warning("refusing to load %s: its sha256 does not match the manifest", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) does not match its record, so it "
            f"was not loaded. An admin can run `!train {dataset}` to train a new one."
        )


# -- evaluation ----------------------------------------------------------------------------


def _evaluate(model: _LoadedModel, items: Sequence[TestItem], min_confidence: float) -> Evaluation:
    predictions = []
    for item in items:
        label, confidence, exact = model.predict(item.text[:MAX_TEXT_CHARS])
        predictions.append(
            Prediction(
                label, model.reply_for(label), confidence, confidence >= min_confidence, exact
            )
        )
    labeled = [
        (item.label, p.label) for item, p in zip(items, predictions, strict=True) if item.label
    ]
    if not labeled:
        return Evaluation(predictions, None, None, None, 0)
    from sklearn.metrics import classification_report

    y_true = [t for t, _ in labeled]
    y_pred = [p for _, p in labeled]
    labels = sorted(set(y_true) | set(y_pred))
    accuracy = sum(t == p for t, p in labeled) / len(labeled)
    report = classification_report(y_true, y_pred, labels=labels, zero_division=0)
    return Evaluation(
        predictions, accuracy, report, _confusion_png(y_true, y_pred, labels), len(labeled)
    )


def _confusion_png(y_true: list[str], y_pred: list[str], labels: list[str]) -> bytes:
    """The confusion matrix as a PNG, drawn with matplotlib's Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    count = len(labels)
    size = min(4.0 + 0.45 * count, 20.0)
    figure = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(count), labels=labels, rotation=45, ha="right")
    axes.set_yticks(range(count), labels=labels)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title("Confusion matrix")
    if count <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for row in range(count):
            for column in range(count):
                value = int(matrix[row, column])
                color = "white" if value > threshold else "black"
                axes.text(column, row, str(value), ha="center", va="center", color=color)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- test data -----------------------------------------------------------------------------


def _invalid_test_data(problem: str) -> InvalidInputError:
    return InvalidInputError(f"{INVALID_TEST_DATA}{problem}. {TEST_DATA_SHAPES}")


def _strip_code_fence(raw: str) -> str:
    text = raw.strip()
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        text = text[3:-3]
        first, _, rest = text.partition("\n")
        if first.strip().isalpha() and rest:  # a language tag such as ```json
            text = rest
    return text.strip()


def _test_item(position: int | None, value: Any) -> TestItem:
    where = f"item {position}" if position is not None else "the object"
    if isinstance(value, str):
        text, label = value, None
    elif isinstance(value, dict):
        if "text" not in value:
            raise _invalid_test_data(f'{where} has no "text"')
        text, label = value["text"], value.get("label")
        if not isinstance(text, str):
            raise _invalid_test_data(f'"text" of {where} is not a string')
        if label is not None and not isinstance(label, str):
            raise _invalid_test_data(f'"label" of {where} is not a string')
    else:
        kind = {list: "a list", int: "a number", float: "a number", bool: "true/false"}.get(
            type(value), "null"
        )
        raise _invalid_test_data(f'{where} is {kind}, not a string or an object with "text"')
    if not text.strip():
        raise _invalid_test_data(f"the text of {where} is empty")
    return TestItem(text.strip(), (label or "").strip() or None)


def parse_test_data(raw: str, *, max_items: int = MAX_TEST_ITEMS) -> list[TestItem]:
    """Test items from JSON: a string, a list of strings, a list of objects with "text" and an
    optional "label", or one such object. Code fences around it are ignored."""
    text = _strip_code_fence(raw)
    if not text:
        raise _invalid_test_data("there is nothing to test")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid_test_data(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if not isinstance(value, list):
        return [_test_item(None, value)]
    if not value:
        raise _invalid_test_data("the list is empty")
    if len(value) > max_items:
        raise TooLargeError(f"Too many test items ({len(value)}; the limit is {max_items}).")
    return [_test_item(position, item) for position, item in enumerate(value, start=1)]


def parse_test_file(
    data: bytes, filename: str, *, max_items: int = MAX_TEST_ITEMS
) -> list[TestItem]:
    """Test items from an attached file: CSV with a `text` (and optional `label`) column, or
    JSON as in `parse_test_data`."""
    import csv

    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_test_data("the file is not UTF-8 text") from None
    if not filename.lower().endswith(".csv"):
        return parse_test_data(text, max_items=max_items)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [name.strip().lower() for name in reader.fieldnames or []]
    if "text" not in fields:
        raise _invalid_test_data("the CSV needs a header row with a text column")
    reader.fieldnames = fields
    items = []
    for record in reader:
        if not (record.get("text") or "").strip():
            continue
        if len(items) >= max_items:
            raise TooLargeError(f"Too many test items (the limit is {max_items}).")
        items.append(TestItem(record["text"].strip(), (record.get("label") or "").strip() or None))
    if not items:
        raise _invalid_test_data("the CSV has no rows")
    return items


# -- the service ---------------------------------------------------------------------------


class ModelService:
    """Train, store, select and use the chat models of the datasets."""

    def __init__(
        self,
        data_dir: Path,
        datasets: DatasetStore,
        jobs: JobRunner,
        min_confidence: float,
        *,
        train_fn: Callable[..., TrainResult] = train_model,
    ) -> None:
        self.datasets = datasets
        self.jobs = jobs
        self.min_confidence = min_confidence
        self.models_dir = Path(data_dir) / "models"
        self._train_fn = train_fn
        self._manifests: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._loaded: dict[str, _LoadedModel] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}

    # -- training --------------------------------------------------------------------------

    async def start_training(
        self, dataset: str, on_done: Callable[[Job], Awaitable[None]] | None = None
    ) -> Job:
        """Check the dataset, then queue its training; returns the job at once.

        Trainings of one dataset run one after another. `job.result` is a `TrainResult`.
        On success the new version becomes active; on failure the previous one stays.
        """
        validate_name(dataset)
        if not await self.datasets.exists_async(dataset):
            raise NotFoundError(f"Dataset '{dataset}' not found.")
        rows = await self.datasets.load_async(dataset)
        if len({row.label for row in rows}) < 2:
            raise InvalidInputError(
                f"Dataset '{dataset}' needs at least 2 different labels to train."
            )
        return self.jobs.submit(
            "train",
            f"train:{dataset}",
            self._train_fn,
            rows,
            self.models_dir,
            dataset,
            dataset_hash(rows),
            on_done=on_done,
        )

    # -- answering -------------------------------------------------------------------------

    async def predict(self, dataset: str, text: str) -> Prediction:
        """The reply to one message. `sure` is False below the confidence threshold.

        Raises NoModelError when the dataset has no trained model.
        """
        text = text.strip()
        if not text:
            raise InvalidInputError("There is no text to answer.")
        model = await self._active_model(dataset)
        label, confidence, exact = model.predict(text[:MAX_TEXT_CHARS])
        sure = confidence >= self.min_confidence
        return Prediction(label, model.reply_for(label), confidence, sure, exact)

    async def evaluate(self, dataset: str, items: Sequence[TestItem]) -> Evaluation:
        """Predictions for test items; with labels also accuracy, a report and a PNG."""
        if not items:
            raise InvalidInputError("There is nothing to test.")
        model = await self._active_model(dataset)
        return await asyncio.to_thread(_evaluate, model, list(items), self.min_confidence)

    # -- versions --------------------------------------------------------------------------

    async def list_versions(self, dataset: str) -> list[ModelVersion]:
        """Every version of the dataset's model, oldest first, with its metrics."""
        manifest = await self._manifest(dataset)
        if manifest is None:
            return []
        active = manifest.get("active")
        versions = sorted(manifest["versions"].items(), key=lambda kv: _version_number(kv[0]))
        return [_model_version(version, entry, active) for version, entry in versions]

    async def active_version(self, dataset: str) -> ModelVersion | None:
        return next((v for v in await self.list_versions(dataset) if v.active), None)

    async def use_version(self, dataset: str, version: str) -> ModelVersion:
        """Make an earlier (or later) version active: a rollback. Its file is verified first."""
        wanted = version.strip().lower()
        if wanted.isdigit():
            wanted = f"v{wanted}"
        manifest = await self._manifest(dataset)
        if manifest is None or wanted not in manifest["versions"]:
            raise NotFoundError(f"Model version {version.strip()} not found for dataset {dataset}.")
        folder = self.models_dir / dataset
        await asyncio.to_thread(self._activate, folder, dataset, wanted)
        self._manifests.pop(dataset, None)
        log.info("dataset %s now uses model %s", dataset, wanted)
        return next(v for v in await self.list_versions(dataset) if v.version == wanted)

    @staticmethod
    def _activate(folder: Path, dataset: str, version: str) -> None:
        with _manifest_lock(folder):
            manifest = _read_manifest(folder)
            if manifest is None or version not in manifest["versions"]:
                raise NotFoundError(f"Model version {version} not found for dataset {dataset}.")
            path = folder / f"{version}.joblib"
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise ModelIntegrityError(
                    f"The model file of dataset {dataset} ({version}) is missing."
                ) from None
            _verify(data, manifest["versions"][version]["sha256"], path, dataset, version)
            manifest["active"] = version
            _write_manifest(folder, manifest)

    # -- loading ---------------------------------------------------------------------------

    async def _manifest(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's manifest, re-read only when the file changed (one stat per call)."""
        validate_name(dataset)
        folder = self.models_dir / dataset
        key = file_stamp(folder / MANIFEST_NAME)
        cached = self._manifests.get(dataset)
        if cached is not None and cached[0] == key:
            return cached[1]
        manifest = await asyncio.to_thread(_read_manifest, folder) if key else None
        self._manifests[dataset] = (key, manifest)
        return manifest

    async def _active_model(self, dataset: str) -> _LoadedModel:
        manifest = await self._manifest(dataset)
        version = manifest.get("active") if manifest else None
        if manifest is None or version is None:
            raise NoModelError(
                f"No model is trained for dataset {dataset} yet. "
                f"An admin can run `!train {dataset}`."
            )
        sha256 = manifest["versions"][version]["sha256"]
        model = self._loaded.get(dataset)
        if model is not None and model.version == version and model.sha256 == sha256:
            return model
        lock = self._load_locks.setdefault(dataset, asyncio.Lock())
        async with lock:
            model = self._loaded.get(dataset)
            if model is None or model.version != version or model.sha256 != sha256:
                folder = self.models_dir / dataset
                model = await asyncio.to_thread(_load_model, folder, dataset, version, sha256)
                self._loaded[dataset] = model
        return model
