"""`!test` input: JSON typed in chat, attached CSV or JSON files, and the evaluation with its
confusion-matrix PNG for any labels. Each works or says clearly why not."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserFacingError
from bot.services.common.text import unencodable
from bot.services.model.evaluation import MAX_TEST_ITEMS, TestItem, parse_test_data, parse_test_file
from bot.services.model.predictions import _evaluate
from tests.fuzz.contract import outcome
from tests.fuzz.strategies import (
    NASTY,
    dumps,
    json_document,
    nasty,
    short_text,
    text,
    upload,
)

# matplotlib warns about characters its font lacks; it draws a box for them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Glyph .* missing from font"),
    pytest.mark.filterwarnings("ignore:Tight layout not applied"),
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEYS = ("text", "label")
# What a user types after `!test`: JSON, perhaps in a code fence, or anything.
typed = st.one_of(
    json_document(KEYS),
    json_document(KEYS).map(lambda doc: f"```json\n{doc}\n```"),
    st.lists(text, max_size=5).map(lambda texts: dumps(texts, ascii_only=True)),
    text,
)


def check_items(items: list[TestItem]) -> None:
    assert 0 < len(items) <= MAX_TEST_ITEMS
    for item in items:
        assert item.text and item.text == item.text.strip()
        assert item.label is None or (item.label and item.label == item.label.strip())
        assert unencodable(item.text) is None and unencodable(item.label or "") is None


@given(typed)
def test_parse_test_data(raw: str) -> None:
    items = outcome(parse_test_data, raw)
    if not isinstance(items, UserFacingError):
        check_items(items)


@given(upload(KEYS))
def test_parse_test_file(sent: tuple[bytes, str]) -> None:
    data, name = sent
    items = outcome(parse_test_file, data, name)
    if not isinstance(items, UserFacingError):
        check_items(items)


class GuessingModel:
    """A stand-in for a trained model that answers with labels it is given."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def predict(self, text: str) -> tuple[str, float, bool]:
        return self.labels[len(text) % len(self.labels)], 0.5, False

    def reply_for(self, label: str) -> str:
        return label


labels = st.one_of(short_text, nasty, st.sampled_from(NASTY))


@st.composite
def evaluation_input(draw: st.DrawFn) -> tuple[list[TestItem], list[str]]:
    """Test items with any labels (as parsed: stripped, storable), and the model's labels."""
    known = draw(st.lists(labels, min_size=1, max_size=6))
    items = []
    for _ in range(draw(st.integers(1, 8))):
        label: Any = draw(st.one_of(st.none(), st.sampled_from(known), labels))
        items.append(TestItem(draw(text) or "x", label))
    return items, draw(st.lists(st.one_of(st.sampled_from(known), labels), min_size=1, max_size=6))


@given(evaluation_input())
def test_evaluation_draws_any_labels(given_input: tuple[list[TestItem], list[str]]) -> None:
    items, predicted = given_input
    model = GuessingModel(predicted)
    evaluation = outcome(_evaluate, model, items, 0.35)
    assert not isinstance(evaluation, UserFacingError), evaluation.message
    if any(item.label for item in items):
        assert evaluation.confusion_png is not None
        assert evaluation.confusion_png.startswith(PNG_MAGIC)
        assert evaluation.report
    else:
        assert evaluation.confusion_png is None
