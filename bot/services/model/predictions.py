"""What the service answers: a `Prediction` for a message, and `!test`'s `Evaluation`.

`_evaluate` scores test items with a loaded model, in the bot (in a thread) or on a worker,
where `evaluate_model_bytes` first checks and reads the model's bytes. Parsing test data, the
report and the confusion matrix picture are evaluation.py.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import InvalidInputError
from bot.services.model.artifact import read_artifact
from bot.services.model.datasets.parse import MAX_TEXT_CHARS
from bot.services.model.evaluation import TestItem, confusion_counts, confusion_png, report_text

if TYPE_CHECKING:
    from bot.services.model.scorer import _LoadedModel


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
