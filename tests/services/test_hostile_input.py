"""The smallest inputs that once escaped as unexpected exceptions (issue #14), kept as tests.

Each one must now give one clear `UserFacingError` (`SettingsError` for the settings). The
fuzz suite in tests/fuzz searches for more; whatever it finds gets its minimal example here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings, parse_language
from bot.core.replies import ALL_ENGINES_FAILED, ENGINE_UNAVAILABLE, message_for_exception
from bot.errors import EngineUnavailableError, InvalidInputError
from bot.services.common import safejson
from bot.services.common.engines import AllEnginesFailedError
from bot.services.model.datasets.parse import Row, parse_dataset, rows_to_csv
from bot.services.model.datasets.store import DatasetStore
from bot.services.model.evaluation import confusion_png, parse_test_data, parse_test_file
from bot.services.model.predictions import _evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEEP = "[" * 1000
LONG_INT = "9" * 4301
ROWS = [Row("hi", "greeting"), Row("hello", "greeting"), Row("bye", "bye"), Row("ciao", "bye")]


def invalid(call: object, *args: object, **kwargs: object) -> str:
    """The message of the InvalidInputError that `call(*args)` raises."""
    with pytest.raises(InvalidInputError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value.message


# -- !test typed in chat ----------------------------------------------------------------------


def test_test_data_nested_a_thousand_deep_is_invalid_data() -> None:
    assert invalid(parse_test_data, DEEP).startswith(
        "Invalid test data format: nested deeper than 32 levels at line 1, column 33."
    )


def test_test_data_with_an_integer_of_4301_digits_is_invalid_data() -> None:
    assert invalid(parse_test_data, LONG_INT).startswith(
        "Invalid test data format: a number is longer than 1000 digits at line 1, column 1."
    )


def test_test_data_with_a_lone_surrogate_label_is_refused() -> None:
    message = invalid(parse_test_data, r'[{"text":"hi","label":"\ud83d"}]')
    assert message.startswith(
        r"Invalid test data format: the label of item 1 holds \ud83d, half of a character"
    )


def test_test_data_with_a_lone_surrogate_text_is_refused() -> None:
    assert r"the text of the data holds \udc00" in invalid(parse_test_data, r'"a\udc00"')


# -- the confusion matrix -----------------------------------------------------------------------


def test_confusion_matrix_draws_dollar_signs_as_text_not_math() -> None:
    png = confusion_png([[1, 0], [0, 1]], ["$x^$", "a"])
    assert png.startswith(PNG_MAGIC)


def test_confusion_matrix_survives_a_lone_surrogate_label() -> None:
    png = confusion_png([[1, 0], [0, 1]], ["\ud83d", "a"])
    assert png.startswith(PNG_MAGIC)


def test_evaluation_with_math_and_control_characters_in_labels() -> None:
    class Model:
        def predict(self, text: str) -> tuple[str, float, bool]:
            return "$\\frac{$", 0.9, False

        def reply_for(self, label: str) -> str:
            return label

    items = parse_test_data('[{"text":"hi","label":"$x^$"},{"text":"yo","label":"\\u0000"}]')
    evaluation = _evaluate(Model(), items, 0.5)  # type: ignore[arg-type]
    assert evaluation.confusion_png is not None
    assert evaluation.confusion_png.startswith(PNG_MAGIC)


# -- a !test file ---------------------------------------------------------------------------------


def test_test_file_with_a_field_over_the_csv_limit_names_the_line() -> None:
    data = b"text,label\nhi,greeting\n" + b"a" * (csv.field_size_limit() + 1) + b",x\n"
    assert invalid(parse_test_file, data, "t.csv").startswith(
        "Invalid test data format: line 3: a value is longer than 131,072 characters."
    )


def test_test_file_in_json_nested_too_deep() -> None:
    assert "nested deeper than 32 levels" in invalid(parse_test_file, DEEP.encode(), "t.json")


# -- training files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (DEEP, "d.json", "Line 1, column 33: invalid JSON (nested deeper than 32 levels)."),
        (
            '[{"text": "hi", "label": ' + DEEP,
            "d.json",
            "Line 1, column 56: invalid JSON (nested deeper than 32 levels).",
        ),
        (
            '{"text": "hi", "label": ' + DEEP,
            "d.jsonl",
            "Line 1, column 56: invalid JSON (nested deeper than 32 levels).",
        ),
        (
            '[{"text": "hi", "label": ' + LONG_INT + "}]",
            "d.json",
            "Line 1, column 26: invalid JSON (a number is longer than 1000 digits).",
        ),
        (
            '{"text": "hi", "label": ' + LONG_INT + "}",
            "d.jsonl",
            "Line 1, column 25: invalid JSON (a number is longer than 1000 digits).",
        ),
        (
            "{" + LONG_INT + "}",
            "d.json",
            "Line 1, column 2: invalid JSON (a number is longer than 1000 digits).",
        ),
        (
            "text,label\n" + "a" * (csv.field_size_limit() + 1) + ",x\n",
            "d.csv",
            "Line 2: a value is longer than 131,072 characters.",
        ),
    ],
)
def test_training_file_limits_are_invalid_data(data: str, filename: str, message: str) -> None:
    assert invalid(parse_dataset, data.encode(), filename, max_rows=100) == message


def test_training_file_with_a_lone_surrogate_escape_names_the_line(tmp_path: Path) -> None:
    data = json.dumps(
        [{"text": t, "label": lab} for t, lab in [("a", "x"), ("b", "x"), ("c", "y")]]
        + [{"text": "\ud800", "label": "y"}],
        indent=1,
    ).encode()
    assert b"\\ud800" in data  # the file itself is plain ASCII
    store = DatasetStore(tmp_path, max_bytes=10**6, max_rows=100)
    message = invalid(store.save, "mine", data, "mine.json")
    assert message == (
        r"Line 14: the text holds \ud800, half of a character (a lone surrogate); "
        "remove it or write the whole character."
    )
    assert not store.exists("mine")


def test_saving_rows_with_a_lone_surrogate_is_refused(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path, max_bytes=10**6, max_rows=100)
    rows = [*ROWS, Row("fine", "bye", "see you \udfff")]
    assert invalid(store.save, "mine", rows).startswith(r"Line 5: the reply holds \udfff")


def test_a_correction_with_a_lone_surrogate_is_refused(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path, max_bytes=10**6, max_rows=100)
    store.save("mine", ROWS)
    assert invalid(store.add_correction, "mine", "hi", "hey \ud83d").startswith(
        r"The corrected reply holds \ud83d"
    )
    assert invalid(store.add_correction, "mine", "\udc80", "hey").startswith(
        r"The corrected message holds \udc80"
    )
    assert store.corrections("mine") == []


def test_a_carriage_return_in_a_value_survives_the_round_trip(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path, max_bytes=10**6, max_rows=100)
    rows = [Row("a\rb", "x"), Row("c\r\nd", "x"), Row("e", "y", "f\rg"), Row("h", "y")]
    store.save("mine", rows)
    assert store.load("mine") == [
        Row("a\nb", "x"),
        Row("c\nd", "x"),
        Row("e", "y", "f\ng"),
        Row("h", "y"),
    ]
    assert b"\r" not in rows_to_csv(rows)


def test_json_lines_keep_a_line_separator_inside_a_string() -> None:
    lines = [{"text": f"a\u2028b{i}", "label": "xy"[i % 2]} for i in range(4)]
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    rows = parse_dataset(data, "d.jsonl", max_rows=100)
    assert [row.text for row in rows] == [f"a\u2028b{i}" for i in range(4)]


# -- the JSON helper ----------------------------------------------------------------------------


def test_safejson_accepts_the_limits_exactly() -> None:
    assert safejson.loads("[" * 32 + "]" * 32) is not None
    assert safejson.loads("9" * 1000) == int("9" * 1000)
    assert safejson.loads('"' + "[" * 100 + '"') == "[" * 100  # brackets in strings don't count


def test_safejson_errors_are_json_decode_errors() -> None:
    for text in ("[" * 33, "-" + "1" * 1001, "1." + "1" * 1001, "", "[1] x"):
        with pytest.raises(json.JSONDecodeError):
            safejson.loads(text)


# -- settings -----------------------------------------------------------------------------------


def test_env_file_with_a_byte_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"LOG_LEVEL=INFO\n\xff\n")
    with pytest.raises(SettingsError) as raised:
        load_settings({}, env_file=env)
    assert str(raised.value) == (
        f"{env}: line 2 is not UTF-8 text (byte 0xff); save the file as UTF-8"
    )


def test_env_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"\xef\xbb\xbfLOG_LEVEL=DEBUG\n")
    assert load_settings({}, env_file=env).log_level == "DEBUG"


def test_an_unreadable_env_file_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"
    env.write_text("LOG_LEVEL=INFO\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SettingsError) as raised:
        load_settings({}, env_file=env)
    assert str(raised.value) == f"{env}: can't be read (Permission denied)"


def test_a_huge_number_setting_is_out_of_range_and_shown_short() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"MAX_AUDIO_MB": "9" * 5000}, env_file=None)
    assert str(raised.value).startswith("MAX_AUDIO_MB: must be between 1 and 500 (got '999")
    assert str(raised.value).endswith("... (5000 characters))")


def test_a_language_code_is_a_real_language_tag() -> None:
    assert parse_language("fr_CA") == "fr-CA"
    assert parse_language("AUTO") == "auto"
    for raw in ("ελλ", "ｅｎ-US", "e1", "zz", "english", "x" * 40):
        with pytest.raises(ValueError, match="must be a language code like en-US, or auto"):
            parse_language(raw)


def test_an_unknown_engine_name_is_shown_short() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"STT_ENGINES": "9" * 1001}, env_file=None)
    assert len(str(raised.value)) < 400


def test_a_path_setting_with_a_nul_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="DATA_DIR: must be a path without NUL"):
        load_settings({"DATA_DIR": "data\x00x"}, env_file=None)


# -- engine errors ------------------------------------------------------------------------------


def test_engine_errors_have_their_own_messages() -> None:
    assert message_for_exception(AllEnginesFailedError("gtts: down")) == ALL_ENGINES_FAILED
    assert message_for_exception(EngineUnavailableError("whisper: missing")) == (ENGINE_UNAVAILABLE)
