"""The chat model: training in a worker process, a versioned model store, and predictions.

The model is trained with scikit-learn: TF-IDF over word 1-2 grams and character 3-grams
(within word boundaries, so typos still match), then multinomial logistic regression. The
reply for a label is the first reply the dataset gives for it (the label itself when it gives
none). Corrections are also kept as an exact-match table, so a corrected message gets the
corrected reply after the next training, whatever the classifier thinks of it.

Knowing when it doesn't know: two rules make the confidence (`_LoadedModel.predict`), which
`ModelService.predict` compares with `CHAT_MIN_CONFIDENCE`. Exact-match corrections skip both
and answer with confidence 1.

- Knowledge gate. Logistic regression always shares all the probability among the labels it
  knows, and the character n-grams of words it has never seen ("qwv", "mongolia") still land
  on some label, sometimes decisively. So the message's words are first looked up in the word
  vocabulary. Its known share is the part of its word information that lies in words seen in
  training; a word's information is its idf - 1, ln((1 + rows) / (1 + rows with the word)):
  0 for a word in every row, so common words such as "the", "is" or "to" barely count, and an
  unknown word weighs as much as the rarest known one. Below half (`MIN_KNOWN_SHARE`) the
  message is unknown: confidence 0, whatever the probabilities. Half is where the 3-label test
  dataset (tests/fixtures/three_labels.csv) separates "what is the capital of mongolia"
  (0.41: three known common words, three unknown ones, classifier 91% sure) from "see you
  tomorrow, bye" (0.70); the sample's "wats your name" is at 0.56. A word one typo away from a
  known word of 4+ characters (a letter missing, extra, wrong, or two swapped) counts as that
  word, so "helo there" is known; character n-grams never count as knowledge. The gate is
  built from the compiled word block when a model loads, so older model files get it too.
- Confidence above chance. The top probability p is rescaled from chance to certainty,
  (p - 1/k) / (1 - 1/k) for k labels: 0 for a uniform distribution and 1 for a certain one,
  with 3 labels as with 30, where a raw 0.35 is a near tie among 3 labels and a clear winner
  among 30. It is monotone in p, so it ranks predictions as p does. 1 - normalised entropy
  would also depend on how the rest is spread over the other labels, which changes with k;
  the top-2 margin would do, but rescaling keeps the default's meaning for the sample's 16
  labels (0.35 above chance is p >= 0.39).

Training runs in a worker process (`train_model`, with the fitting in `services/training.py`);
the worker reads the dataset itself, so the bot's process never holds its rows.

What is stored is the fitted model "compiled" to arrays (format 2, `artifact_bytes`): for each
vectorizer its settings, the 64-bit keys of its terms (blake2b, sorted) and their idf; the
classifier's coefficients in the same order; and for the knowledge gate the single words
(one newline-joined string; a few thousand words where the vocabulary with its bigrams and
character n-grams has up to 100k terms) with their information. The bot finds a term's column
by binary search of its key, scores a message with a few numpy operations (well under 1 ms,
where scikit-learn's per-call input checks alone take 2 ms) and never imports scikit-learn,
which saves about 100 MB in the bot process. Loading a model is reading arrays and making one
dict of the single words: a few milliseconds for 100k terms, holding the GIL for hardly any.
The worker checks, right after fitting, that the file read back as the bot reads it gives
scikit-learn's probabilities; a training whose check fails is reported as failed.

Store: `<data_dir>/models/<dataset>/v1.npz, v2.npz, ...` and `manifest.json`, which records
for each version its file, format, the dataset hash, metrics, creation time, row and label
counts, duration and the sha256 of the file, and which version is active. Files and the
manifest are written atomically; the manifest's read-modify-write is guarded by a file lock
because the worker (new versions) and the bot (`use_version`) both write it.

A model file is loaded only when the sha256 of its bytes equals the one recorded when this
service wrote it, and the bytes that were hashed are the bytes that are loaded. Format-2 files
are read with `allow_pickle=False`, so reading one never runs code. Versions made before
format 2 are `vN.joblib` pickles of vocabularies (format 1): they still load, through the
same sha256 check, and are turned into arrays by a worker process when they load.

Heavy modules (scikit-learn, numpy, joblib, matplotlib) are imported inside functions, so
importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import re
import secrets
import shutil
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import InvalidInputError, NotFoundError, UserFacingError
from bot.services.datasets import (
    CORRECTED_LABEL_PREFIX,
    MAX_TEXT_CHARS,
    DatasetStore,
    atomic_write,
    dataset_hash,
    file_stamp,
    normalize_text,
    replies_by_label,
    validate_name,
)
from bot.services.evaluation import TestItem, confusion_counts, confusion_png, report_text
from bot.services.jobs import Job, JobRunner, short_reason

try:
    import fcntl
except ImportError:  # not on Windows: the manifest lock is then a no-op
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy as np

    from bot.services.blobcache import BlobCache

log = logging.getLogger(__name__)

# 2: arrays in an .npz (term keys, idf, coefficients) and JSON; 1: a joblib pickle of
# vocabularies (still loaded, from files whose sha256 the manifest recorded).
MODEL_FORMAT = 2
MODEL_SUFFIX = ".npz"
MANIFEST_NAME = "manifest.json"
# Below this share of its word information in known words, a message is unknown: the
# knowledge gate of the module docstring.
MIN_KNOWN_SHARE = 0.5
# A typo names a known word only in words this long: shorter ones match too much by chance.
TYPO_MIN_CHARS = 4
# Typo look-ups per message (each about 50 µs), so long gibberish stays fast to score (a
# 2,000-character one in about 1 ms).
MAX_TYPO_LOOKUPS = 8
# With more distinct characters than this in the vocabulary (a non-alphabetic script), a typo
# is looked for as an extra or swapped letter only, not a missing or wrong one.
MAX_TYPO_ALPHABET = 64
MODELS_DIR = "models"
# Writers of one manifest in other processes: how often to re-read it and try again.
MANIFEST_TRIES = 20
STORE_FAILED = "The new model could not be stored, so the previous one stays active."
_VERSION = re.compile(r"v([1-9][0-9]{0,5})")
_MODEL_FILE = re.compile(r"v([1-9][0-9]{0,5})\.(?:npz|joblib)")


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
class Evaluation:
    predictions: list[Prediction]
    accuracy: float | None
    report: str | None
    confusion_png: bytes | None
    labeled: int = 0


# -- training (runs in a worker process) ---------------------------------------------------


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

    from bot.services import training

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


def store_version(
    folder: Path, dataset: str, data: bytes, entry: dict[str, Any], *, first_only: bool = False
) -> tuple[str, datetime] | None:
    """Write `data` as the next version of the model in `folder`, record it (its file, format,
    sha256 and creation time, with `entry`) in the manifest and make it active; returns
    (version, creation time). With `first_only`, only when there is no version yet (else
    None: another training or install came first)."""
    with _manifest_lock(folder):
        manifest = _read_manifest(folder) or _new_manifest(dataset)
        if first_only and manifest["versions"]:
            return None
        version = _next_version(manifest, folder)
        recorded = _version_entry(version, hashlib.sha256(data).hexdigest(), entry)
        atomic_write(folder / recorded["file"], data)
        manifest["versions"][version] = recorded
        manifest["active"] = version
        _write_manifest(folder, manifest)
    return version, datetime.fromisoformat(recorded["created_at"])


# What `_version_entry` records itself; the rest of an entry comes from the training.
_OWN_FIELDS = ("file", "format", "sha256", "created_at")


def _version_entry(version: str, sha256: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A manifest entry: the version's file, format, sha256 and creation time, then `entry`."""
    return {
        "file": f"{version}{MODEL_SUFFIX}",
        "format": MODEL_FORMAT,
        "sha256": sha256,
        "created_at": datetime.now(UTC).isoformat(),
        **{key: value for key, value in entry.items() if key not in _OWN_FIELDS},
    }


def check_compiled(data: bytes, fitted: Any, texts: Sequence[str]) -> None:
    """Refuse to store a model file that does not score like scikit-learn: read `data` as the
    bot will, and compare its probabilities with the fitted pipeline's `predict_proba`, and
    the TF-IDF the training counted with the pipeline's own `transform`."""
    import numpy as np

    step = max(1, len(texts) // 50)
    rows = list(range(0, len(texts), step))[:50]
    probe = [texts[i] for i in rows] + ["", "qzxv?!", "Hello, WORLD"]
    scorer = read_artifact(data).scorer
    expected = fitted.pipeline.predict_proba(probe)
    got = np.array([scorer.proba(text) for text in probe])
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError("the compiled model does not match scikit-learn's predictions")
    ours = fitted.features(rows)
    theirs = fitted.pipeline.named_steps["features"].transform([texts[i] for i in rows])
    if abs(ours - theirs).max() > 1e-5:
        raise RuntimeError("the counted features do not match scikit-learn's")


# -- manifest ------------------------------------------------------------------------------


def _new_manifest(dataset: str) -> dict[str, Any]:
    return {"format": MODEL_FORMAT, "dataset": dataset, "active": None, "versions": {}}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest, or None if there is none; an unreadable one is logged and ignored."""
    path = folder / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring unreadable model manifest %s: %s", path, exc)
        return None
    return _parse_manifest(data, path)


def _parse_manifest(data: bytes, where: object) -> dict[str, Any] | None:
    """A manifest from its bytes; None (logged) when they are not one."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        log.warning("ignoring unreadable model manifest %s: %s", where, exc)
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("versions"), dict):
        log.warning("ignoring malformed model manifest %s", where)
        return None
    manifest["versions"] = {
        version: entry
        for version, entry in manifest["versions"].items()
        if _VERSION.fullmatch(str(version)) and isinstance(entry, dict) and entry.get("sha256")
    }
    if manifest.get("active") not in manifest["versions"]:
        manifest["active"] = None
    return manifest


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2).encode("utf-8")


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST_NAME, _manifest_bytes(manifest))


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


# -- the model file ------------------------------------------------------------------------


def term_keys(terms: Sequence[str]) -> np.ndarray:
    """64-bit keys of terms (blake2b of their UTF-8): what a model file stores instead of the
    terms. With 100k terms, two keys collide with odds of about 1 in 10^9 (and training then
    fails rather than store a model that would mix two terms up)."""
    import numpy as np

    blake2b = hashlib.blake2b
    digests = [blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest() for t in terms]
    return np.frombuffer(b"".join(digests), dtype="<u8")


def compile_pipeline(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline as arrays that `Scorer` can use without scikit-learn."""
    return _hashed(_vocabularies(pipeline))


def _vocabularies(pipeline: Any) -> dict[str, Any]:
    """The fitted pipeline as plain data: each vectorizer's settings, vocabulary and idf, and
    the classifier's coefficients (the compiled form of model files of format 1)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    union, classifier = pipeline.named_steps["features"], pipeline.named_steps["classifier"]
    if union.transformer_weights or not isinstance(classifier, LogisticRegression):
        raise TypeError("only a FeatureUnion of TF-IDF vectorizers + LogisticRegression compiles")
    blocks = []
    for _, vectorizer in union.transformer_list:
        settings = vectorizer.get_params()
        if (
            not isinstance(vectorizer, TfidfVectorizer)
            or settings["analyzer"] not in ("word", "char_wb")
            or settings["input"] != "content"
            or settings["norm"] != "l2"
            or not settings["use_idf"]
            or settings["binary"]
            or any(settings[k] is not None for k in _UNSUPPORTED_SETTINGS)
        ):
            raise TypeError(f"unsupported vectorizer settings: {settings}")
        blocks.append(
            {
                **{key: settings[key] for key in _BLOCK_SETTINGS},
                "vocabulary": {str(k): int(v) for k, v in vectorizer.vocabulary_.items()},
                "idf": np.asarray(vectorizer.idf_, dtype=np.float64),
            }
        )
    return {
        "blocks": blocks,
        "coef": np.ascontiguousarray(classifier.coef_.T, dtype=np.float32),
        "intercept": np.asarray(classifier.intercept_, dtype=np.float64),
        "classes": [str(c) for c in classifier.classes_],
    }


_UNSUPPORTED_SETTINGS = ("preprocessor", "tokenizer", "stop_words", "strip_accents", "vocabulary")
_BLOCK_SETTINGS = ("analyzer", "ngram_range", "token_pattern", "lowercase", "sublinear_tf")


def _hashed(plain: dict[str, Any]) -> dict[str, Any]:
    """Vocabularies (term -> column) turned into sorted term keys, with the idf and the
    coefficient rows put in the same order; and the knowledge gate's known words."""
    import numpy as np

    coef = np.asarray(plain["coef"], dtype=np.float32)
    blocks, rows, offset = [], [], 0
    for block in plain["blocks"]:
        vocabulary: dict[str, int] = block["vocabulary"]
        columns = np.fromiter(vocabulary.values(), dtype=np.int64, count=len(vocabulary))
        keys = term_keys(list(vocabulary))
        order = np.argsort(keys)
        keys = keys[order]
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError("two terms of the model have the same key")
        columns = columns[order]
        settings = {key: block[key] for key in _BLOCK_SETTINGS}
        settings["ngram_range"] = tuple(int(n) for n in settings["ngram_range"])
        blocks.append({**settings, "keys": keys, "idf": np.asarray(block["idf"])[columns]})
        rows.append(columns + offset)
        offset += len(vocabulary)
    return {
        "blocks": blocks,
        "coef": np.ascontiguousarray(coef[np.concatenate(rows)] if rows else coef),
        "intercept": np.asarray(plain["intercept"], dtype=np.float64),
        "classes": [str(c) for c in plain["classes"]],
        "known": _known_words(plain["blocks"]),
    }


def _known_words(blocks: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """What the knowledge gate needs from the word block that keeps single words: the words
    themselves (a few thousand short strings, where the whole vocabulary with its bigrams and
    character n-grams can be 100k), their information (idf - 1), the letters of the block's
    terms and its longest word."""
    import numpy as np

    for index, block in enumerate(blocks):
        if block["analyzer"] == "word" and block["ngram_range"][0] == 1:
            vocabulary: dict[str, int] = block["vocabulary"]
            words = sorted(term for term in vocabulary if " " not in term)
            idf = np.asarray(block["idf"], dtype=np.float64)
            columns = np.fromiter((vocabulary[w] for w in words), np.int64, len(words))
            letters = set("".join(vocabulary)) - {" "}
            return {
                "block": index,
                "words": words,
                "information": idf[columns] - 1.0,
                "alphabet": "".join(sorted(letters)) if len(letters) <= MAX_TYPO_ALPHABET else "",
                "longest": max(map(len, words), default=0),
            }
    return None


def artifact_bytes(compiled: dict[str, Any], meta: dict[str, Any]) -> bytes:
    """A model file (format 2): an .npz of plain arrays, loadable with allow_pickle=False, so
    reading one can never run code. `meta` (JSON) holds what is not an array: the dataset,
    replies, exact-match corrections and the scikit-learn version."""
    import numpy as np

    known = compiled["known"]
    header = {
        **meta,
        "format": MODEL_FORMAT,
        "classes": compiled["classes"],
        "blocks": [{key: block[key] for key in _BLOCK_SETTINGS} for block in compiled["blocks"]],
        "known": None if known is None else {k: known[k] for k in ("block", "alphabet", "longest")},
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
        "coef": compiled["coef"],
        "intercept": compiled["intercept"],
    }
    for i, block in enumerate(compiled["blocks"]):
        arrays[f"keys{i}"], arrays[f"idf{i}"] = block["keys"], block["idf"]
    if known is not None:
        # Words never contain a newline (the token pattern is \w+): one string, newline-joined.
        arrays["known_words"] = np.frombuffer("\n".join(known["words"]).encode(), np.uint8)
        arrays["known_information"] = known["information"]
    buffer = io.BytesIO()
    # Fixed timestamps: the same model gives the same bytes (and sha256).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", _EPOCH), "w") as out:
                np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


_EPOCH = (1980, 1, 1, 0, 0, 0)


def read_artifact(data: bytes) -> _LoadedModel:
    """A model from the bytes of a format-2 file (already verified). Raises ValueError,
    KeyError or TypeError when they are not one."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"model format {meta.get('format')!r}")
    blocks = [
        {
            **settings,
            "ngram_range": tuple(settings["ngram_range"]),
            "keys": arrays[f"keys{i}"],
            "idf": arrays[f"idf{i}"],
        }
        for i, settings in enumerate(meta["blocks"])
    ]
    known = meta["known"]
    if known is not None:
        text = arrays["known_words"].tobytes().decode("utf-8")
        words = text.split("\n") if text else []
        known = {**known, "words": words, "information": arrays["known_information"]}
    compiled = {
        "blocks": blocks,
        "coef": arrays["coef"],
        "intercept": arrays["intercept"],
        "classes": meta["classes"],
        "known": known,
    }
    return _LoadedModel(compiled, meta["replies"], meta["exact"])


def format_1_as_arrays(folder: Path, dataset: str, version: str, entry: dict[str, Any]) -> bytes:
    """A format-1 version (a joblib pickle of vocabularies that an older version of the bot
    wrote) read, verified and turned into the bytes of a format-2 file. Meant for a worker
    process: unpickling a large vocabulary holds the GIL for tens of milliseconds."""
    import joblib

    data = _read_verified(folder, dataset, version, entry)
    try:
        artifact = joblib.load(io.BytesIO(data))
        if not isinstance(artifact, dict) or artifact.get("format") != 1:
            raise ValueError("not a model file of format 1")
        meta = {
            "dataset": dataset,
            "replies": artifact["replies"],
            "exact": artifact["exact"],
            "sklearn_version": artifact.get("sklearn_version"),
        }
        return artifact_bytes(_hashed(artifact["model"]), meta)
    except (KeyError, TypeError, ValueError, EOFError) as exc:
        log.warning("model %s %s can't be read: %s", dataset, version, exc)
        raise _unusable(dataset, version) from None


def _unusable(dataset: str, version: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"The model of dataset {dataset} ({version}) can't be used (it was made by another "
        f"version of the bot). An admin can run `!train {dataset}` to train a new one."
    )


# -- a loaded model ------------------------------------------------------------------------


_WHITE_SPACES = re.compile(r"\s\s+")


def _word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """scikit-learn's word n-grams of a token list (CountVectorizer._word_ngrams)."""
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def _char_wb_ngrams(text: str, low: int, high: int) -> list[str]:
    """scikit-learn's character n-grams within word boundaries (_char_wb_ngrams)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text).split():
        word = f" {word} "
        length = len(word)
        for n in range(low, high + 1):
            offset = 0
            grams.append(word[offset : offset + n])
            while offset + n < length:
                offset += 1
                grams.append(word[offset : offset + n])
            if offset == 0:  # a word shorter than n counts once
                break
    return grams


def _tokenizer(block: dict[str, Any]) -> Callable[[str], list[str]]:
    """The words of a text as a word block sees them (lowercased if it lowercases)."""
    find_tokens = re.compile(block["token_pattern"]).findall
    lowercase = block["lowercase"]

    def tokens(text: str) -> list[str]:
        return find_tokens(text.lower() if lowercase else text)

    return tokens


def _analyzer(block: dict[str, Any]) -> Callable[[str], list[str]]:
    low, high = block["ngram_range"]
    lowercase = block["lowercase"]
    if block["analyzer"] == "word":
        tokens = _tokenizer(block)

        def words(text: str) -> list[str]:
            return _word_ngrams(tokens(text), low, high)

        return words

    def chars(text: str) -> list[str]:
        return _char_wb_ngrams(text.lower() if lowercase else text, low, high)

    return chars


def _lookup(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of `wanted` keys in the sorted `keys`, -1 where absent."""
    import numpy as np

    if len(keys) == 0:
        return np.full(len(wanted), -1)
    positions = np.searchsorted(keys, wanted)
    positions[positions == len(keys)] = 0
    return np.where(keys[positions] == wanted, positions, -1)


def _one_edit(word: str, alphabet: str) -> Iterator[str]:
    """Strings one typo away from `word`: a letter deleted, two swapped, one replaced or one
    inserted (letters from `alphabet`)."""
    for i in range(len(word) + 1):
        left, right = word[:i], word[i:]
        if right:
            yield left + right[1:]
            if len(right) > 1:
                yield left + right[1] + right[0] + right[2:]
            for letter in alphabet:
                if letter != right[0]:
                    yield left + letter + right[1:]
        for letter in alphabet:
            yield left + letter + right


class KnownWords:
    """Which of a message's words a model was trained on: the knowledge gate (module docstring).

    Made from the word block that keeps single words: the words and their information, the
    letters of the block's terms (typos are looked for with those) and the longest word.
    Only single words count: bigrams add no new words, and character n-grams are not knowledge.
    """

    def __init__(self, block: dict[str, Any], known: dict[str, Any]) -> None:
        import numpy as np

        self._tokens = _tokenizer(block)
        words: list[str] = known["words"]
        self._index = dict(zip(words, range(len(words)), strict=True))
        self._information = np.asarray(known["information"], dtype=np.float64)
        if len(self._index) != len(words) or self._information.shape != (len(words),):
            raise ValueError("the known words do not match their information")
        self._unknown = float(self._information.max(initial=0.0))
        self._alphabet: str = known["alphabet"]
        self._longest = int(known["longest"])

    @classmethod
    def of(cls, blocks: Sequence[dict[str, Any]]) -> KnownWords | None:
        """The gate of plain word blocks (vocabulary and idf, as `_vocabularies` gives them)."""
        known = _known_words(blocks)
        return None if known is None else cls(blocks[known["block"]], known)

    def share(self, text: str) -> float:
        """The share of the text's word information in known words, in [0, 1]: 1 when every
        word is known; 0 with unknown words only, and for a text without words or whose words
        are all in every training row (they tell the labels apart no better than nothing)."""
        known = total = 0.0
        lookups = MAX_TYPO_LOOKUPS
        for token in self._tokens(text):
            index = self._index.get(token)
            if index is None and lookups > 0 and len(token) >= TYPO_MIN_CHARS:
                lookups -= 1
                index = self._typo_of(token)
            weight = self._unknown if index is None else float(self._information[index])
            total += weight
            if index is not None:
                known += weight
        return known / total if total > 0.0 else 0.0

    def _typo_of(self, token: str) -> int | None:
        """The index of a known word (4+ characters) one typo away, if any."""
        if len(token) > self._longest + 1:  # one typo changes the length by one at most
            return None
        for candidate in _one_edit(token, self._alphabet):
            if len(candidate) >= TYPO_MIN_CHARS:
                index = self._index.get(candidate)
                if index is not None:
                    return index
        return None


def above_chance(proba: np.ndarray) -> float:
    """The top probability rescaled from chance (1/k for k labels) to certainty: 0 for a
    uniform distribution, 1 for a certain one, with any number of labels."""
    chance = 1.0 / len(proba)
    return min(1.0, max(0.0, (float(proba.max()) - chance) / (1.0 - chance)))


class Scorer:
    """Class probabilities for one text from a compiled model: TF-IDF (sublinear tf, idf,
    l2 per vectorizer, concatenated as FeatureUnion does) and the softmax of the logistic
    regression, in numpy. A term's column is found by binary search of its key among the
    block's sorted keys. `known_share` is the knowledge gate."""

    def __init__(self, compiled: dict[str, Any]) -> None:
        import numpy as np

        self.classes: list[str] = list(compiled["classes"])
        self._coef = np.asarray(compiled["coef"])
        self._intercept = np.asarray(compiled["intercept"], dtype=np.float64)
        self._blocks = []
        offset = 0
        for block in compiled["blocks"]:
            keys = np.asarray(block["keys"], dtype="<u8")
            idf = np.asarray(block["idf"], dtype=np.float64)
            if keys.shape != idf.shape:
                raise ValueError("the compiled model's shapes do not match")
            self._blocks.append((_analyzer(block), keys, idf, block["sublinear_tf"], offset))
            offset += len(keys)
        if self._coef.shape != (offset, len(self._intercept)):
            raise ValueError("the compiled model's shapes do not match")
        known = compiled["known"]
        self._known = (
            None if known is None else KnownWords(compiled["blocks"][known["block"]], known)
        )

    def known_share(self, text: str) -> float:
        """How much of the text's words the model knows (`KnownWords.share`); 1 for a model
        without a word block, which has nothing to judge by."""
        return 1.0 if self._known is None else self._known.share(text)

    def proba(self, text: str) -> np.ndarray:
        import numpy as np

        scores = self._intercept.copy()
        for analyze, keys, idf, sublinear, offset in self._blocks:
            terms = analyze(text)
            if not terms:
                continue
            found = _lookup(keys, term_keys(terms))
            indices, tf = np.unique(found[found >= 0], return_counts=True)
            if not len(indices):
                continue
            values = (np.log(tf) + 1.0 if sublinear else tf.astype(np.float64)) * idf[indices]
            values /= np.sqrt(values @ values)
            scores += values @ self._coef[indices + offset]
        if scores.shape[0] == 1:  # two labels: a sigmoid on one score
            positive = 1.0 / (1.0 + np.exp(-scores[0]))
            return np.array([1.0 - positive, positive])
        scores -= scores.max()
        exp = np.exp(scores)
        return exp / exp.sum()


class _LoadedModel:
    def __init__(
        self, compiled: dict[str, Any], replies: dict[str, str | None], exact: dict[str, str]
    ) -> None:
        self.scorer = Scorer(compiled)
        self.replies: dict[str, str | None] = dict(replies)
        self.exact: dict[str, str] = dict(exact)
        self.version = self.sha256 = ""

    def predict(self, text: str) -> tuple[str, float, bool]:
        """(label, confidence, from a correction) for one message.

        The confidence is 1 for a correction, 0 for a message the model does not know
        (`MIN_KNOWN_SHARE`), else the top probability above chance (`above_chance`).
        """
        label = self.exact.get(normalize_text(text))
        if label is not None:
            return label, 1.0, True
        proba = self.scorer.proba(text)
        label = self.scorer.classes[int(proba.argmax())]
        if self.scorer.known_share(text) < MIN_KNOWN_SHARE:
            return label, 0.0, False
        return label, above_chance(proba), False

    def reply_for(self, label: str) -> str:
        return self.replies.get(label) or label


def _model_path(folder: Path, version: str, entry: dict[str, Any]) -> Path:
    """The file of a manifest entry: `vN.npz`, or `vN.joblib` (format 1, older versions)."""
    name = str(entry.get("file") or f"{version}.joblib")
    match = _MODEL_FILE.fullmatch(name)
    if match is None or f"v{match.group(1)}" != version:
        raise ModelIntegrityError(f"The model file of {version} is not named as it should be.")
    return folder / name


def _read_verified(folder: Path, dataset: str, version: str, entry: dict[str, Any]) -> bytes:
    path = _model_path(folder, version, entry)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.warning("model file %s is missing", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) is missing. "
            f"An admin can run `!train {dataset}` to train a new one."
        ) from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        log.warning("refusing to load %s: its sha256 does not match the manifest", path)
        raise ModelIntegrityError(
            f"The model file of dataset {dataset} ({version}) does not match its record, so it "
            f"was not loaded. An admin can run `!train {dataset}` to train a new one."
        )
    return data


def _is_format_1(folder: Path, version: str, entry: dict[str, Any]) -> bool:
    return _model_path(folder, version, entry).suffix == ".joblib"


def _load_model(
    folder: Path, dataset: str, version: str, entry: dict[str, Any], data: bytes | None = None
) -> _LoadedModel:
    """Read, verify and load one version (format 2), or load `data`, the format-2 bytes a
    worker made of a format-1 version (`format_1_as_arrays`). Blocking; the bytes that were
    hashed are the bytes that are loaded."""
    if data is None:
        data = _read_verified(folder, dataset, version, entry)
    started = time.perf_counter()
    try:
        model = read_artifact(data)
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile) as exc:
        log.warning("model %s %s can't be read: %s", dataset, version, exc)
        raise _unusable(dataset, version) from None
    model.version, model.sha256 = version, entry["sha256"]
    log.info("loaded model %s %s in %.3f s", dataset, version, time.perf_counter() - started)
    return model


# -- evaluation ----------------------------------------------------------------------------


def evaluate_model_bytes(
    data: bytes, sha256: str, items: list[list[str | None]], min_confidence: float
) -> Evaluation:
    """`!test` on a worker: score `items` ([text, label or None]) with the model `data`
    (format 2, checked against `sha256`). Blocking: for a worker's process pool."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidInputError("The model sent for the test does not match its record.")
    try:
        model = read_artifact(data)
    except (KeyError, TypeError, ValueError, OSError, zipfile.BadZipFile):
        raise InvalidInputError("The model sent for the test can't be read.") from None
    tests = [TestItem(str(text), None if label is None else str(label)) for text, label in items]
    return _evaluate(model, tests, min_confidence)


def _evaluate(model: _LoadedModel, items: Sequence[TestItem], min_confidence: float) -> Evaluation:
    predictions = []
    for item in items:
        label, confidence, exact = model.predict(item.text[:MAX_TEXT_CHARS])
        reply = model.reply_for(label)
        predictions.append(
            Prediction(label, reply, confidence, confidence >= min_confidence, exact)
        )
    pairs = [(i.label, p.label) for i, p in zip(items, predictions, strict=True) if i.label]
    if not pairs:
        return Evaluation(predictions, None, None, None, 0)
    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    accuracy = sum(t == p for t, p in pairs) / len(pairs)
    png = confusion_png(confusion_counts(pairs, labels), labels)
    return Evaluation(predictions, accuracy, report_text(pairs, labels, accuracy), png, len(pairs))


# -- the service ---------------------------------------------------------------------------


class ModelService:
    """Train, store, select and use the chat models of the datasets.

    Shared storage: with a `cache` (services/blobcache.py), the namespace's blobs are where
    versions and manifests live, so every process of the bot sees the same models. Each use
    asks for the manifest's sha256 (one small query) and fetches it when another process
    changed it (a new version, a rollback); a version file is fetched when it is not cached
    with the sha256 that the manifest records. A training's worker writes into a private
    folder; the bot then stores the version (a blob that only the first writer of a name
    gets) and records it in the manifest with a compare-and-swap, so trainings and rollbacks
    in several processes never lose each other's changes. Then the user hears of it.
    """

    def __init__(
        self,
        data_dir: Path,
        datasets: DatasetStore,
        jobs: JobRunner,
        min_confidence: float,
        *,
        train_fn: Callable[..., TrainResult] = train_model,
        namespace: str | None = None,
        tasks: Any = None,
        cache: BlobCache | None = None,
    ) -> None:
        self.namespace = namespace
        # A task runner (TASK_BROKER_URL): trainings run as `train` tasks on workers.
        self.tasks = tasks
        self._background: set[asyncio.Task[None]] = set()
        # Trainings sent to workers, by dataset: one dataset's trainings run one at a time.
        self._trainings: dict[str, asyncio.Task[None]] = {}
        self._waiting: set[str] = set()  # ids of those that wait for the one before
        # With a cache, the blobs hold the versions and manifests and the folder caches them
        # ("Shared storage" in the class docstring).
        self.cache = cache
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
        On success the new version becomes active; on failure the previous one stays. The
        worker reads the dataset itself (`DatasetSource`), so a dataset that can't be trained
        (one label) fails the job with the reason.
        """
        validate_name(dataset)
        if not await self.datasets.exists_async(dataset):
            raise NotFoundError(f"Dataset '{dataset}' not found.")
        if self.tasks is not None:
            return await self._start_training_task(dataset, on_done)
        out_dir, finish = self.models_dir, on_done
        if self.cache is not None:
            # The worker writes into a folder of its own (hidden: never a blob, never listed).
            out_dir = self.models_dir / f".training-{secrets.token_hex(6)}"
            finish = self._publisher(dataset, out_dir, on_done)
        return self.jobs.submit(
            "train",
            f"train:{self.namespace}:{dataset}",
            self._train_fn,
            DatasetSource.of(self.datasets),
            out_dir,
            dataset,
            on_done=finish,
            owner=self.namespace,
            subject=dataset,
        )

    async def _start_training_task(
        self, dataset: str, on_done: Callable[[Job], Awaitable[None]] | None
    ) -> Job:
        """Send the dataset's files to a worker as a `train` task; when its model comes
        back, store it as the next version here (the manifest gives it its number)."""
        from bot.services.tasks.client import new_job_id

        files = await asyncio.to_thread(self._dataset_files, dataset)
        job = Job(new_job_id(), "train", f"train:{self.namespace}:{dataset}")
        job.owner, job.subject = self.namespace, dataset
        payload = {
            "dataset": dataset,
            "files": list(files),
            "max_bytes": self.datasets.max_bytes,
            "max_rows": self.datasets.max_rows,
        }
        await self.tasks.record(job)
        before = self._trainings.get(dataset)
        if before is not None and before.done():
            before = None
        task = asyncio.get_running_loop().create_task(
            self._train_as_task(job, payload, files, on_done, before)
        )
        self._trainings[dataset] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if before is not None:
            self._waiting.add(job.id)
        return job

    def queued_behind(self, job: Job) -> bool:
        """Whether a new training waits for another training of its dataset."""
        if self.tasks is not None:
            return job.id in self._waiting
        return job.status == "queued"

    async def close(self) -> None:
        """Stop waiting for trainings on workers (their rows end as interrupted)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def _dataset_files(self, dataset: str) -> dict[str, bytes]:
        path, corrections = self.datasets.path(dataset), self.datasets.corrections_path(dataset)
        files = {path.name: path.read_bytes()}
        if corrections.is_file():
            files[corrections.name] = corrections.read_bytes()
        return files

    async def _train_as_task(
        self,
        job: Job,
        payload: dict[str, Any],
        files: dict[str, bytes],
        on_done: Callable[[Job], Awaitable[None]] | None,
        before: asyncio.Task[None] | None = None,
    ) -> None:
        if before is not None:  # the previous training of the dataset ends first
            await asyncio.gather(before, return_exceptions=True)
            self._waiting.discard(job.id)
        try:
            result = await self.tasks.run("train", payload, job, inputs=files)
            if result.ok:
                job.result = await self._install_trained(job.subject, result)
                job.summary = job.result.summary()
        except Exception as exc:
            log.exception("training job %s failed", job.id)
            job.status, job.error = "failed", short_reason(exc)
            job.finished_at = datetime.now(UTC)
        await self.tasks.record(job)
        if on_done is not None:
            try:
                await on_done(job)
            except Exception:
                log.exception("on_done callback of job %s failed", job.id)

    async def _install_trained(self, dataset: str, result: Any) -> TrainResult:
        fields = dict(result.value["result"])
        data, entry = result.outputs["model"], dict(result.value["entry"])
        if self.cache is not None:
            version = await self._publish(dataset, data, entry)
            stored = (version, datetime.now(UTC)) if version is not None else None
        else:
            stored = await asyncio.to_thread(
                store_version, self.models_dir / dataset, dataset, data, entry
            )
        assert stored is not None
        fields["version"], fields["created_at"] = stored
        self._manifests.pop(dataset, None)
        return TrainResult(**fields)

    def _publisher(
        self, dataset: str, staged: Path, on_done: Callable[[Job], Awaitable[None]] | None
    ) -> Callable[[Job], Awaitable[None]]:
        """An on_done that stores the trained version in the blobs, then calls `on_done`."""

        async def publish(job: Job) -> None:
            try:
                if job.status == "done" and isinstance(job.result, TrainResult):
                    job.result = await self._publish_staged(dataset, staged, job.result)
                    job.summary = job.result.summary()
            except Exception:
                log.exception("storing the model trained by job %s failed", job.id)
                job.status, job.error, job.result = "failed", STORE_FAILED, None
            finally:
                await asyncio.to_thread(shutil.rmtree, staged, ignore_errors=True)
            if on_done is not None:
                await on_done(job)

        return publish

    async def _publish_staged(self, dataset: str, staged: Path, result: TrainResult) -> TrainResult:
        folder = staged / dataset
        manifest = await asyncio.to_thread(_read_manifest, folder)
        if manifest is None or result.version not in manifest["versions"]:
            raise RuntimeError("the training left no model version")
        entry = manifest["versions"][result.version]
        data = await asyncio.to_thread(_read_verified, folder, dataset, result.version, entry)
        version = await self._publish(dataset, data, entry)
        assert version is not None
        log.info("dataset %s: stored trained model %s in the blobs", dataset, version)
        return dataclasses.replace(result, version=version)

    async def _publish(
        self, dataset: str, data: bytes, entry: dict[str, Any], *, first_only: bool = False
    ) -> str | None:
        """Store `data` as the next version of the dataset's model in the blobs, record it in
        the manifest and make it active; the version, or None with `first_only` when the
        manifest already has one. Safe against other processes doing the same."""
        assert self.cache is not None
        sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        folder = f"{MODELS_DIR}/{dataset}"
        taken: set[int] = set()
        async with self.cache.locked():
            for _ in range(MANIFEST_TRIES):
                manifest, manifest_sha = await self._blob_manifest(dataset)
                if first_only and manifest["versions"]:
                    return None
                numbers = {_version_number(v) for v in manifest["versions"]} | taken
                version = f"v{max(numbers, default=0) + 1}"
                recorded = _version_entry(version, sha256, entry)
                if not await self.cache.put_if(f"{folder}/{recorded['file']}", data, None):
                    taken.add(_version_number(version))  # a file nobody recorded: skip it
                    continue
                manifest["versions"][version] = recorded
                manifest["active"] = version
                path = f"{folder}/{MANIFEST_NAME}"
                if await self.cache.put_if(path, _manifest_bytes(manifest), manifest_sha):
                    self._manifests.pop(dataset, None)
                    return version
                taken.add(_version_number(version))
        raise RuntimeError(f"the manifest of {dataset} kept changing; gave up")

    async def _blob_manifest(self, dataset: str) -> tuple[dict[str, Any], str | None]:
        """The manifest in the blobs (a new one if there is none) and its sha256, for a
        compare-and-swap. Under the cache's lock."""
        assert self.cache is not None
        path = f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}"
        found = await self.cache.read(path)
        if found is None:
            return _new_manifest(dataset), None
        manifest = _parse_manifest(found[0], f"{self.namespace}/{path}")
        return manifest or _new_manifest(dataset), found[1]

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

    async def evaluate(
        self, dataset: str, items: Sequence[TestItem], *, on_worker: bool = False
    ) -> Evaluation:
        """Predictions for test items; with labels also accuracy, a report and a PNG.

        `on_worker` (a test file, up to MAX_TEST_ITEMS): with a task runner the scoring and
        the picture are an `evaluate` task on a worker; a few inline items stay here."""
        if not items:
            raise InvalidInputError("There is nothing to test.")
        model = await self._active_model(dataset)
        if on_worker and self.tasks is not None and model.version:
            folder = self.models_dir / dataset
            entry = (await self._manifest(dataset) or {}).get("versions", {}).get(model.version)
            if entry is not None and not _is_format_1(folder, model.version, entry):
                return await self._evaluate_as_task(dataset, model, entry, items)
        return await asyncio.to_thread(_evaluate, model, list(items), self.min_confidence)

    async def _evaluate_as_task(
        self, dataset: str, model: _LoadedModel, entry: dict[str, Any], items: Sequence[TestItem]
    ) -> Evaluation:
        """`!test` scored on a worker: the model's bytes and the items go as the job's inputs;
        the worker sends back the predictions, the report and the picture."""
        from bot.services.tasks.client import new_job_id, raise_failure

        folder = self.models_dir / dataset
        if self.cache is not None:  # the folder is a cache of the blobs: have the file there
            async with self.cache.locked():
                await self._fetch_version(dataset, model.version, entry)
        data = await asyncio.to_thread(_read_verified, folder, dataset, model.version, entry)
        job = Job(new_job_id(), "test", f"test:{self.namespace}:{dataset}")
        job.owner, job.subject = self.namespace, dataset
        rows = json.dumps([[item.text, item.label] for item in items]).encode()
        payload = {"sha256": model.sha256, "min_confidence": self.min_confidence}
        result = await self.tasks.run(
            "evaluate", payload, job, inputs={"model": data, "items.json": rows}
        )
        raise_failure(result)
        value = result.value
        return Evaluation(
            [Prediction(**p) for p in value["predictions"]],
            value["accuracy"],
            value["report"],
            result.outputs.get("confusion.png"),
            int(value["labeled"]),
        )

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
        if self.cache is None:
            await asyncio.to_thread(self._activate, folder, dataset, wanted)
        else:
            await self._activate_shared(dataset, wanted, manifest["versions"][wanted])
        self._manifests.pop(dataset, None)
        log.info("dataset %s now uses model %s", dataset, wanted)
        return next(v for v in await self.list_versions(dataset) if v.version == wanted)

    async def _activate_shared(self, dataset: str, version: str, entry: dict[str, Any]) -> None:
        """Verify the version's file (fetched if need be), then make it the active one in the
        manifest of the blobs, with a compare-and-swap."""
        assert self.cache is not None
        folder = self.models_dir / dataset
        path = f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}"
        async with self.cache.locked():
            await self._fetch_version(dataset, version, entry)
            await asyncio.to_thread(_read_verified, folder, dataset, version, entry)
            for _ in range(MANIFEST_TRIES):
                manifest, manifest_sha = await self._blob_manifest(dataset)
                if manifest["versions"].get(version, {}).get("sha256") != entry["sha256"]:
                    raise NotFoundError(f"Model version {version} not found for dataset {dataset}.")
                manifest["active"] = version
                if await self.cache.put_if(path, _manifest_bytes(manifest), manifest_sha):
                    return
        raise RuntimeError(f"the manifest of {dataset} kept changing; gave up")

    async def _fetch_version(self, dataset: str, version: str, entry: dict[str, Any]) -> None:
        """Have the version's file in the cache with the sha256 the manifest records (a
        missing or corrupt copy is fetched again). Under the cache's lock."""
        assert self.cache is not None
        name = _model_path(self.models_dir / dataset, version, entry).name
        await self.cache.fetch(f"{MODELS_DIR}/{dataset}/{name}", str(entry["sha256"]))

    @staticmethod
    def _activate(folder: Path, dataset: str, version: str) -> None:
        with _manifest_lock(folder):
            manifest = _read_manifest(folder)
            if manifest is None or version not in manifest["versions"]:
                raise NotFoundError(f"Model version {version} not found for dataset {dataset}.")
            _read_verified(folder, dataset, version, manifest["versions"][version])
            manifest["active"] = version
            _write_manifest(folder, manifest)

    # -- loading ---------------------------------------------------------------------------

    async def _manifest(self, dataset: str) -> dict[str, Any] | None:
        """The dataset's manifest, re-read only when the file changed (one stat per call;
        with a cache, one small query first: has another process changed it?)."""
        validate_name(dataset)
        folder = self.models_dir / dataset
        if self.cache is not None:
            async with self.cache.locked():
                await self.cache.fetch(f"{MODELS_DIR}/{dataset}/{MANIFEST_NAME}")
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
        if (manifest is None or version is None) and await self._install_sample(dataset):
            manifest = await self._manifest(dataset)
            version = manifest.get("active") if manifest else None
        if manifest is None or version is None:
            raise NoModelError(
                f"No model is trained for dataset {dataset} yet. "
                f"An admin can run `!train {dataset}`."
            )
        entry = manifest["versions"][version]
        sha256 = entry["sha256"]
        model = self._loaded.get(dataset)
        if model is not None and model.version == version and model.sha256 == sha256:
            return model
        lock = self._load_locks.setdefault(dataset, asyncio.Lock())
        async with lock:
            model = self._loaded.get(dataset)
            if model is None or model.version != version or model.sha256 != sha256:
                folder = self.models_dir / dataset
                if self.cache is not None:
                    async with self.cache.locked():
                        await self._fetch_version(dataset, version, entry)
                converted = None
                if _is_format_1(folder, version, entry):  # unpickled in a worker, not here
                    converted = await self.jobs.run(
                        "load", f"load:{self.namespace}:{dataset}", format_1_as_arrays,
                        folder, dataset, version, entry,
                    )  # fmt: skip
                model = await asyncio.to_thread(
                    _load_model, folder, dataset, version, entry, converted
                )
                self._loaded[dataset] = model
        return model

    async def _install_sample(self, dataset: str) -> bool:
        """A sample dataset without a model here gets its own copy of the shipped model
        (`sample_models.install`); True if it now has one."""
        from bot.services import sample_models

        if self.datasets.samples_dir is None:
            return False
        lock = self._load_locks.setdefault(dataset, asyncio.Lock())
        if self.cache is None:
            async with lock:
                return await asyncio.to_thread(
                    sample_models.install, self.datasets, self.models_dir, dataset
                )
        await self.datasets.refresh()  # its corrections may have been made elsewhere
        async with lock:
            shipped = await asyncio.to_thread(sample_models.shipped_version, self.datasets, dataset)
            if shipped is None:
                return False
            version = await self._publish(dataset, *shipped, first_only=True)
            if version is not None:
                log.info("installed the shipped model of sample %s as %s", dataset, version)
            return True
