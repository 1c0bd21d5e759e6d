"""Datasets: parsing and validating uploads, inline data, the store and corrections."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from bot.errors import InvalidInputError, NotFoundError, TooLargeError
from bot.services.model.datasets.parse import (
    Row,
    corrected_label,
    dataset_hash,
    name_from_filename,
    normalize_text,
    parse_dataset,
    parse_inline,
    validate_name,
)
from bot.services.model.datasets.store import DatasetInfo, DatasetStore

SAMPLE = Path(__file__).resolve().parents[2] / "bot" / "samples" / "smalltalk.csv"
GOOD_CSV = (
    "text,label,reply\nhi,greeting,Hello!\nhello,greeting,Hello!\nbye,goodbye,\nsee ya,goodbye,\n"
)


def parse(text: str | bytes, filename: str = "data.csv", max_rows: int = 1000) -> list[Row]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_dataset(data, filename, max_rows=max_rows)


def error_of(text: str | bytes, filename: str = "data.csv", **kwargs) -> str:
    with pytest.raises(InvalidInputError) as caught:
        parse(text, filename, **kwargs)
    return caught.value.message


# -- the shipped sample --------------------------------------------------------------------


def test_the_shipped_sample_is_valid_and_small_talk() -> None:
    rows = parse(SAMPLE.read_bytes(), SAMPLE.name)
    labels = {row.label for row in rows}
    assert {"greeting", "goodbye", "thanks", "how_are_you", "joke", "help"} <= labels
    assert len(labels) >= 12
    assert all(row.reply for row in rows)  # every label answers something
    assert SAMPLE.stat().st_size < 100_000


# -- CSV -----------------------------------------------------------------------------------


def test_csv_with_and_without_bom_and_reply() -> None:
    rows = parse(GOOD_CSV)
    assert rows[0] == Row("hi", "greeting", "Hello!")
    assert rows[2] == Row("bye", "goodbye", None)
    assert parse(b"\xef\xbb\xbf" + GOOD_CSV.encode()) == rows
    no_reply = parse("text,label\na,x\nb,x\nc,y\nd,y\n")
    assert no_reply[0] == Row("a", "x", None)


def test_csv_columns_in_any_order_with_quotes_and_crlf() -> None:
    text = (
        'label,text\r\ngreeting,"hi, there"\r\ngreeting,"multi\r\nline"\r\nbye,bye\r\nbye,ciao\r\n'
    )
    rows = parse(text)
    assert rows[0] == Row("hi, there", "greeting")
    assert rows[1].text == "multi\r\nline"
    assert len(rows) == 4


def test_non_utf8_names_the_line() -> None:
    data = b"text,label\nhi,greeting\n" + "caf\u00e9,greeting\n".encode("latin-1")
    assert error_of(data + b"a,b\nc,b\n") == (
        "Line 3 is not valid UTF-8 text. Save the file as UTF-8 and send it again."
    )


def test_missing_columns_in_the_header() -> None:
    assert error_of("text,category\nhi,greeting\n") == (
        "Line 1: the first row must be the header text,label (or text,label,reply); "
        "the label column is missing."
    )
    assert "the text and label columns are missing" in error_of("hi,greeting\nyo,greeting\n")


def test_empty_text_or_label_names_the_line() -> None:
    assert error_of("text,label\nhi,greeting\n  ,greeting\n") == "Line 3: the text is empty."
    text = "text,label\n\nhi,greeting\nyo,greeting\nbye,bye\nciao,bye\nlater,\n"
    assert error_of(text) == "Line 7: the label is empty."


def test_too_few_values_and_too_many_values() -> None:
    assert error_of("text,label\nhi\n") == "Line 2: the label is empty."
    message = error_of("text,label\nhi,greeting\nhello, there,greeting\n")
    assert message.startswith("Line 3: found 3 values but the header has 2 columns.")


def test_at_least_two_labels() -> None:
    assert error_of("text,label\nhi,greeting\nhello,greeting\n") == (
        "The dataset needs at least 2 different labels; it has only 1 (greeting)."
    )


def test_at_least_two_rows_per_label_names_the_label_and_line() -> None:
    text = "text,label\nhi,greeting\nhello,greeting\nbye,goodbye\n"
    assert error_of(text) == (
        "Line 4: label 'goodbye' has only 1 row; every label needs at least 2."
    )


def test_row_and_byte_caps() -> None:
    many = "text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(11))
    with pytest.raises(TooLargeError, match="more than 10 rows"):
        parse(many, max_rows=10)
    assert len(parse(many, max_rows=11)) == 11
    with pytest.raises(TooLargeError) as caught:
        parse_dataset(b"x" * (3 * 1024 * 1024), "big.csv", max_rows=10, max_bytes=2 * 1024 * 1024)
    assert caught.value.message == "That file is too large (3 MB; the limit is 2 MB)."


def test_unsupported_and_empty_files() -> None:
    assert error_of(GOOD_CSV, "data.xlsx") == (
        "Unsupported file type '.xlsx'. Send a .csv, .json or .jsonl file."
    )
    assert "without an extension" in error_of(GOOD_CSV, "data")
    assert error_of(b"", "data.csv") == "The file is empty."
    assert error_of(b"\xef\xbb\xbf \n", "data.json") == "The file is empty."
    assert error_of("text,label\n", "data.csv") == "The dataset has no rows."


def test_overlong_fields() -> None:
    assert error_of(f"text,label\n{'x' * 2001},a\n") == (
        "Line 2: the text is longer than 2000 characters."
    )


# -- JSON ----------------------------------------------------------------------------------

JSON_ROWS = [
    {"text": "hi", "label": "greeting", "reply": "Hello!"},
    {"text": "hello", "label": "greeting"},
    {"text": "bye", "label": "goodbye", "reply": None},
    {"text": "see ya", "label": "goodbye"},
]


def test_json_list_and_json_lines() -> None:
    expected = [Row("hi", "greeting", "Hello!"), Row("hello", "greeting")]
    expected += [Row("bye", "goodbye"), Row("see ya", "goodbye")]
    assert parse(json.dumps(JSON_ROWS, indent=2), "d.json") == expected
    lines = "\n".join(json.dumps(item) for item in JSON_ROWS) + "\n\n"
    assert parse(lines, "d.jsonl") == expected
    assert parse(lines, "d.json") == expected  # JSON lines in a .json file
    assert parse(b"\xef\xbb\xbf" + json.dumps(JSON_ROWS).encode(), "d.json") == expected
    numeric = [{"text": "a", "label": 1}, {"text": "b", "label": 1}, {"text": "c", "label": 2}]
    numeric.append({"text": "d", "label": 2})
    assert parse(json.dumps(numeric), "n.json")[0] == Row("a", "1")


def test_bad_json_names_line_and_column() -> None:
    text = '[\n  {"text": "hi", "label": "greeting"},\n  {"text": "yo" "label": "greeting"}\n]'
    assert error_of(text, "d.json") == (
        "Line 3, column 17: invalid JSON (Expecting ',' delimiter)."
    )
    assert error_of('[{"text": "a", "label": "b"} {"text": "c"}]', "d.json").startswith(
        "Line 1, column 30: invalid JSON (expected ',' or ']')"
    )
    assert "unexpected text after the end of the list" in error_of(
        json.dumps(JSON_ROWS) + " junk", "d.json"
    )
    jsonl = "\n".join(json.dumps(item) for item in JSON_ROWS[:2]) + '\n{"text": oops}\n'
    assert error_of(jsonl, "d.jsonl").startswith("Line 3, column 10: invalid JSON")


def test_json_items_must_be_objects_with_text_and_label() -> None:
    rows = [*JSON_ROWS[:2], "just a string", *JSON_ROWS[2:]]
    text = json.dumps(rows, indent=1)
    assert error_of(text, "d.json") == (
        'Line 11: expected an object with "text" and "label", found a string.'
    )
    missing = [*JSON_ROWS, {"text": "no label here"}]
    assert error_of(json.dumps(missing), "d.json") == 'Line 1: the "label" field is missing.'
    empty = [*JSON_ROWS[:3], {"text": "x", "label": "  "}]
    lines = "\n".join(json.dumps(item) for item in empty)
    assert error_of(lines, "d.jsonl") == "Line 4: the label is empty."
    assert error_of(json.dumps([{"text": 5, "label": "a"}]), "d.json") == (
        'Line 1: "text" must be a string.'
    )
    assert error_of(json.dumps({"text": "a", "label": "b"}), "d.json").startswith(
        'The JSON must be a list of objects with "text" and "label"'
    )


# -- inline --------------------------------------------------------------------------------


def test_inline_lines() -> None:
    text = (
        "```\nhi | greeting | Hello! | nice\nhello|greeting\n\nbye | goodbye\nciao | goodbye\n```"
    )
    assert parse_inline(text) == [
        Row("hi", "greeting", "Hello! | nice"),
        Row("hello", "greeting"),
        Row("bye", "goodbye"),
        Row("ciao", "goodbye"),
    ]


def test_inline_errors_name_the_line() -> None:
    with pytest.raises(InvalidInputError, match=r"^Line 2: expected `text \| label`"):
        parse_inline("hi | greeting\njust text\n")
    with pytest.raises(InvalidInputError, match="^Line 3: the label is empty.$"):
        parse_inline("hi | a\nho | a\nhu | \n")
    with pytest.raises(InvalidInputError, match="at least 2 different labels"):
        parse_inline("hi | a\nho | a\n")
    with pytest.raises(InvalidInputError, match="^Line 3: label 'b' has only 1 row"):
        parse_inline("hi | a\nho | a\nhu | b\n")
    with pytest.raises(InvalidInputError, match="No training lines found"):
        parse_inline("```\n\n```")
    with pytest.raises(TooLargeError):
        parse_inline("a | x\nb | x\nc | y\nd | y\n", max_rows=3)


# -- names and helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smalltalk", "a", "A-b_9", "x" * 40])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 41, "../etc", "a b", "a.csv", "été", "a/b", "con\x00", "name\n"]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="A dataset name must be"):
        validate_name(name)


def test_names_from_filenames() -> None:
    assert name_from_filename("smalltalk.csv") == "smalltalk"
    assert name_from_filename("My Data (2).JSON") == "My_Data_2"
    assert name_from_filename("C:\\Users\\me\\faq.jsonl") == "faq"
    assert len(name_from_filename("x" * 100 + ".csv")) == 40
    with pytest.raises(InvalidInputError):
        name_from_filename("日本.csv")


def test_helpers_are_stable() -> None:
    assert normalize_text("  What IS   this?! ") == "what is this"
    assert normalize_text("???") == "???"
    assert corrected_label("42.") == corrected_label(" 42. ") != corrected_label("43.")
    assert corrected_label("x").startswith("corrected_") and len(corrected_label("x")) == 18
    rows = [Row("a", "b"), Row("c", "d", "e")]
    assert dataset_hash(rows) == dataset_hash(list(rows)) != dataset_hash(rows[::-1])


# -- the store -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path, max_bytes=1024 * 1024, max_rows=1000)


def test_save_list_load_and_replace(store: DatasetStore) -> None:
    assert store.list() == []
    info = store.save("faq", GOOD_CSV.encode(), "faq.csv")
    assert info == DatasetInfo("faq", rows=4, labels=2, corrections=0)
    assert store.exists("faq") and store.path("faq").name == "faq.csv"
    assert store.load("faq")[0] == Row("hi", "greeting", "Hello!")

    store.save("faq", json.dumps(JSON_ROWS[:2] + JSON_ROWS[2:] * 2).encode(), "faq.json")
    assert store.info("faq").rows == 6  # cache follows the file
    assert [p.name for p in store.root.iterdir()] == ["faq.csv"]  # stored as CSV, no temp files

    store.save("inline", parse_inline("a | x\nb | x\nc | y | why\nd | y"))
    assert [i.name for i in store.list()] == ["faq", "inline"]
    assert store.load("inline")[2] == Row("c", "y", "why")


def test_save_validates_before_writing(store: DatasetStore) -> None:
    with pytest.raises(InvalidInputError, match="Line 3: the text is empty."):
        store.save("bad", b"text,label\nhi,a\n,a\n", "bad.csv")
    with pytest.raises(TooLargeError):
        store.save("big", b"x" * (1024 * 1024 + 1), "big.csv")
    with pytest.raises(InvalidInputError, match="at least 2 different labels"):
        store.save("rows", [Row("a", "x"), Row("b", "x")])
    with pytest.raises(InvalidInputError, match="A dataset name must be"):
        store.save("../evil", GOOD_CSV.encode(), "x.csv")
    assert store.list() == []


def test_missing_and_broken_datasets(store: DatasetStore, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="Dataset 'nope' not found."):
        store.load("nope")
    assert not store.exists("nope")
    store.root.mkdir(parents=True)
    (store.root / "broken.csv").write_text("text,label\nhi,\n")
    (store.root / "notes.txt").write_text("not a dataset")
    shutil.copy(SAMPLE, store.root / "smalltalk.csv")
    assert [i.name for i in store.list()] == ["smalltalk"]  # the broken one is skipped
    with pytest.raises(InvalidInputError, match="^Dataset 'broken': Line 2: the label is empty."):
        store.load("broken")


def test_corrections_override_and_add_rows(store: DatasetStore) -> None:
    store.save("faq", GOOD_CSV.encode(), "faq.csv")
    fix = store.add_correction("faq", "  HI! ", "Hey, nice to see you.")
    assert fix == Row("HI!", corrected_label("Hey, nice to see you."), "Hey, nice to see you.")
    store.add_correction("faq", "what is the meaning of life", "42.")
    store.add_correction("faq", "What is the meaning of life?", "Forty-two.")

    assert store.info("faq").corrections == 3
    rows = store.load("faq")
    texts = [row.text for row in rows]
    assert "hi" not in texts  # replaced by its correction
    assert [r for r in rows if normalize_text(r.text) == "hi"] == [fix]
    meaning = [r for r in rows if normalize_text(r.text) == "what is the meaning of life"]
    assert meaning == [
        Row("What is the meaning of life?", corrected_label("Forty-two."), "Forty-two.")
    ]
    assert len(rows) == 5
    assert store.corrections_path("faq").read_text().startswith("text,label,reply\n")


def test_correction_errors(store: DatasetStore) -> None:
    with pytest.raises(NotFoundError):
        store.add_correction("faq", "hi", "hello")
    store.save("faq", GOOD_CSV.encode(), "faq.csv")
    with pytest.raises(InvalidInputError, match="reply is empty"):
        store.add_correction("faq", "hi", "   ")
    with pytest.raises(InvalidInputError, match="no text"):
        store.add_correction("faq", "", "hello")


def test_concurrent_corrections_are_all_kept(store: DatasetStore) -> None:
    store.save("faq", GOOD_CSV.encode(), "faq.csv")
    threads = [
        threading.Thread(target=store.add_correction, args=("faq", f"message {i}", f"reply {i}"))
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.text for r in store.corrections("faq")) == sorted(
        f"message {i}" for i in range(20)
    )
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


async def test_async_twins(store: DatasetStore) -> None:
    info = await store.save_async("faq", GOOD_CSV.encode(), "faq.csv")
    assert await store.list_async() == [info]
    assert await store.exists_async("faq")
    await store.add_correction_async("faq", "yo", "Yo!")
    assert (await store.info_async("faq")).corrections == 1
    assert (await store.load_async("faq"))[-1].reply == "Yo!"


def test_remove_correction_takes_back_only_that_lesson(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path, 1_000_000, 1000)
    store.save("greet", parse("text,label\nhi,a\nhey,a\nbye,b\nciao,b\n"))
    store.add_correction("greet", "hi", "Howdy!")
    store.add_correction("greet", "bye", "See you!")
    assert store.remove_correction("greet", "Hi", "Howdy!") == 1
    assert [(r.text, r.reply) for r in store.corrections("greet")] == [("bye", "See you!")]
    assert store.remove_correction("greet", "hi", "Howdy!") == 0
    assert store.remove_correction("missing", "hi", "Howdy!") == 0
