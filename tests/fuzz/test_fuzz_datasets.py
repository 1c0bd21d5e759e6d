"""Training data from users: files (CSV, JSON, JSON lines), inline lines, saved datasets,
corrections and dataset names. Each either works or says clearly why not; what is saved can
be read back as the same rows."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserFacingError
from bot.services.common.text import unencodable
from bot.services.model.datasets.parse import (
    MAX_LABEL_CHARS,
    MAX_REPLY_CHARS,
    MAX_TEXT_CHARS,
    Row,
    name_from_filename,
    parse_dataset,
    parse_inline,
    rows_to_csv,
    validate_name,
)
from bot.services.model.datasets.store import DatasetStore
from tests.fuzz.contract import outcome
from tests.fuzz.strategies import cell, inline_lines, text, upload

KEYS = ("text", "label", "reply")
MAX_ROWS = 50
MAX_BYTES = 100_000
filenames = st.one_of(
    st.sampled_from(["d.csv", "d.json", "d.jsonl", "d.ndjson", "D.JSON", "d.txt", "d", ".csv"]),
    text,
)
# Datasets that pass the label checks often enough: few labels, each used several times.
labels = st.sampled_from(["a", "b", " c ", "$x^$", "\ud83d", "é", "9" * 30])
rows = st.lists(
    st.builds(Row, cell, labels, st.one_of(st.none(), cell)),
    min_size=0,
    max_size=12,
)


def check_rows(parsed: list[Row]) -> None:
    """Rows the store can keep and the model can train on."""
    assert len(parsed) <= MAX_ROWS
    for row in parsed:
        assert row.text and row.text == row.text.strip() and len(row.text) <= MAX_TEXT_CHARS
        assert row.label and row.label == row.label.strip() and len(row.label) <= MAX_LABEL_CHARS
        assert row.reply is None or 0 < len(row.reply) <= MAX_REPLY_CHARS
        for value in (row.text, row.label, row.reply or ""):
            assert unencodable(value) is None
    assert len({row.label for row in parsed}) >= 2


def same_when_stored(row: Row) -> Row:
    """What a row reads back as from the stored CSV: line ends become "\\n"."""

    def one(value: str) -> str:
        return value.replace("\r\n", "\n").replace("\r", "\n")

    return Row(one(row.text), one(row.label), one(row.reply) if row.reply else None)


def check_round_trip(parsed: list[Row]) -> None:
    again = outcome(parse_dataset, rows_to_csv(parsed), "again.csv", max_rows=MAX_ROWS)
    assert not isinstance(again, UserFacingError), again.message
    assert again == [same_when_stored(row) for row in parsed]


@given(upload(KEYS))
def test_parse_dataset(sent: tuple[bytes, str]) -> None:
    data, name = sent
    parsed = outcome(parse_dataset, data, name, max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
    if not isinstance(parsed, UserFacingError):
        check_rows(parsed)
        check_round_trip(parsed)


@given(st.one_of(inline_lines(), inline_lines(), inline_lines(), text))
def test_parse_inline(typed: str) -> None:
    parsed = outcome(parse_inline, typed, max_rows=MAX_ROWS)
    if not isinstance(parsed, UserFacingError):
        check_rows(parsed)
        check_round_trip(parsed)


@given(
    sent=upload(KEYS),
    rows=rows,
    correction=st.tuples(cell, cell),
)
def test_dataset_store(sent: tuple[bytes, str], rows: list[Row], correction: tuple) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = DatasetStore(Path(folder), max_bytes=MAX_BYTES, max_rows=MAX_ROWS)
        for saved in (outcome(store.save, "up", *sent), outcome(store.save, "rows", rows)):
            if isinstance(saved, UserFacingError):
                continue
            loaded = outcome(store.load, saved.name)
            assert not isinstance(loaded, UserFacingError), loaded.message
            check_rows(loaded)
            fixed = outcome(store.add_correction, saved.name, *correction)
            reloaded = outcome(store.load, saved.name)
            assert not isinstance(reloaded, UserFacingError), reloaded.message
            if not isinstance(fixed, UserFacingError):
                assert same_when_stored(fixed) in reloaded


@given(st.one_of(text, filenames, st.sampled_from(["smalltalk", "a" * 41, "a-b_C9", ""])))
def test_dataset_names(name: str) -> None:
    valid = outcome(validate_name, name)
    if not isinstance(valid, UserFacingError):
        assert valid == name
    made = outcome(name_from_filename, name)
    if not isinstance(made, UserFacingError):
        assert validate_name(made) == made
