"""`!test`'s side of the chat model: reading test data, and the per-label report and
confusion-matrix picture of an evaluation (`ModelService.evaluate` makes the predictions).

Test data is user input: JSON is read with a depth and number-size limit (safejson), text
that UTF-8 cannot hold is refused with a clear message, and labels are drawn as plain text
(never math text), so every bad input is an `InvalidInputError`. matplotlib is imported
inside the function that draws, so importing this module is cheap.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import InvalidInputError, TooLargeError
from bot.services.common import safejson
from bot.services.common.text import unencodable_problem
from bot.services.model.datasets.parse import csv_problem

MAX_TEST_ITEMS = 1000
# Longer labels are cut on the confusion matrix's axes (the text report shows them whole).
PLOT_LABEL_CHARS = 40
INVALID_TEST_DATA = "Invalid test data format: "
TEST_DATA_SHAPES = (
    'Send a JSON string, a list of strings, or a list of objects with "text" and an '
    'optional "label".'
)


@dataclass(frozen=True)
class TestItem:
    __test__ = False  # not a pytest test class

    text: str
    label: str | None = None


# -- report and picture --------------------------------------------------------------


def confusion_counts(pairs: Sequence[tuple[str, str]], labels: list[str]) -> list[list[int]]:
    """matrix[true][predicted] counts, in `labels` order."""
    position = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for true, predicted in pairs:
        matrix[position[true]][position[predicted]] += 1
    return matrix


def report_text(pairs: Sequence[tuple[str, str]], labels: list[str], accuracy: float) -> str:
    """Per-label precision, recall, F1 and support, as a text table."""
    width = max(len("macro avg"), *(len(label) for label in labels))
    lines = [f"{'':>{width}}  precision     recall   f1-score    support", ""]
    totals = [0.0, 0.0, 0.0]
    for label in labels:
        hits = sum(t == p == label for t, p in pairs)
        predicted = sum(p == label for _, p in pairs)
        support = sum(t == label for t, _ in pairs)
        precision = hits / predicted if predicted else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        totals = [totals[0] + precision, totals[1] + recall, totals[2] + f1]
        lines.append(f"{label:>{width}}  {precision:9.2f}  {recall:9.2f}  {f1:9.2f}  {support:9d}")
    count = len(labels)
    macro = "  ".join(f"{value / count:9.2f}" for value in totals)
    lines += ["", f"{'accuracy':>{width}}  {'':9}  {'':9}  {accuracy:9.2f}  {len(pairs):9d}"]
    lines.append(f"{'macro avg':>{width}}  {macro}  {len(pairs):9d}")
    return "\n".join(lines)


def _plot_label(label: str) -> str:
    """A label as text the font code can draw: control, format and unassigned characters and
    lone surrogates (which crash it) become "?", and a long label is cut to PLOT_LABEL_CHARS."""
    text = "".join("?" if unicodedata.category(char)[0] == "C" else char for char in label)
    return text if len(text) <= PLOT_LABEL_CHARS else text[: PLOT_LABEL_CHARS - 1] + "…"


def confusion_png(counts: list[list[int]], labels: list[str]) -> bytes:
    """The confusion matrix as a PNG, drawn with matplotlib's Agg canvas (no pyplot state)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.array(counts)
    count = len(labels)
    shown = [_plot_label(label) for label in labels]
    size = min(4.0 + 0.45 * count, 20.0)
    figure = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    # Labels are the user's text: never math ("$x^$"), never markup.
    axes.set_xticks(range(count), labels=shown, rotation=45, ha="right", parse_math=False)
    axes.set_yticks(range(count), labels=shown, parse_math=False)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title("Confusion matrix")
    if count <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for row in range(count):
            for column in range(count):
                value = int(matrix[row, column])
                color = "white" if value > threshold else "black"
                axes.text(
                    column, row, str(value), ha="center", va="center", color=color, parse_math=False
                )
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
    where = f"item {position}" if position is not None else "the data"
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
    return _checked_item(where, text, label)


def _checked_item(where: str, text: str, label: str | None) -> TestItem:
    """The item, once its text and label are known to be storable text."""
    for what, value in (("text", text), ("label", label or "")):
        problem = unencodable_problem(f"{what} of {where}", value)
        if problem is not None:
            raise _invalid_test_data(problem)
    return TestItem(text.strip(), (label or "").strip() or None)


def parse_test_data(raw: str, *, max_items: int = MAX_TEST_ITEMS) -> list[TestItem]:
    """Test items from JSON: a string, a list of strings, a list of objects with "text" and an
    optional "label", or one such object. Code fences around it are ignored."""
    text = _strip_code_fence(raw)
    if not text:
        raise _invalid_test_data("there is nothing to test")
    try:
        value = safejson.loads(text)
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
    try:
        fields = [name.strip().lower() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise _invalid_test_data(f"line {reader.reader.line_num}: {csv_problem(exc)}") from None
    if "text" not in fields:
        raise _invalid_test_data("the CSV needs a header row with a text column")
    reader.fieldnames = fields
    items: list[TestItem] = []
    try:
        for record in reader:
            if not (record.get("text") or "").strip():
                continue
            if len(items) >= max_items:
                raise TooLargeError(f"Too many test items (the limit is {max_items}).")
            where = f"line {reader.line_num}"
            items.append(_checked_item(where, record["text"], record.get("label")))
    except csv.Error as exc:
        raise _invalid_test_data(f"line {reader.reader.line_num}: {csv_problem(exc)}") from None
    if not items:
        raise _invalid_test_data("the CSV has no rows")
    return items
