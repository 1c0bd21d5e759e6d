"""A dataset's rows: reading CSV, JSON and typed lines into them, their checks, and the CSV kept.

A dataset is rows of text -> label, with an optional reply for the label. `parse_dataset`
reads an upload (CSV, a JSON list or JSON lines, by extension), `parse_inline` the lines typed
after `!train`, and `rows_to_csv` writes the CSV the store keeps. Also here: the dataset name
rules (`validate_name`, `name_from_filename`), `normalize_text` (how a message matches a
correction), `corrected_label`, `dataset_hash` and `replies_by_label`.

Every validation error is an `InvalidInputError` whose message names the offending line, so
the user can fix the file: "Line 7: the label is empty."
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bot.errors import InvalidInputError, TooLargeError
from bot.services.common import safejson
from bot.services.common.text import unencodable, unencodable_problem

NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
FORMATS = (".csv", ".json", ".jsonl")
CORRECTED_LABEL_PREFIX = "corrected_"
MAX_TEXT_CHARS = 2000
MAX_LABEL_CHARS = 100
MAX_REPLY_CHARS = 2000
MIN_LABELS = 2
MIN_ROWS_PER_LABEL = 2
_BOM = b"\xef\xbb\xbf"
_CSV_HEADER = ("text", "label", "reply")


class Row(NamedTuple):
    """One training example. `reply` is what the bot answers for `label` (None: not given)."""

    text: str
    label: str
    reply: str | None = None


# -- names ---------------------------------------------------------------------------------


def validate_name(name: str) -> str:
    """Return the dataset name, or raise InvalidInputError if it is not 1-40 of A-Z a-z 0-9 _ -."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(
            "A dataset name must be 1 to 40 letters, digits, '_' or '-' (like smalltalk)."
        )
    return name


def name_from_filename(filename: str) -> str:
    """A valid dataset name made from an upload's file name: "My Data (2).csv" -> "My_Data_2"."""
    stem = Path(filename.replace("\\", "/")).name
    for ext in FORMATS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:40].strip("_-")
    if not name:
        raise InvalidInputError("Give the dataset a name: the file name has no usable letters.")
    return name


# -- text helpers --------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """The form used to match a message against a correction: case, spaces, end punctuation."""
    collapsed = " ".join(text.casefold().split())
    return collapsed.strip(string.punctuation + " ") or collapsed


def corrected_label(reply: str) -> str:
    """A stable label for a corrected reply: the same reply always gets the same label."""
    digest = hashlib.sha256(reply.strip().encode("utf-8")).hexdigest()[:8]
    return f"{CORRECTED_LABEL_PREFIX}{digest}"


def dataset_hash(rows: Iterable[Row]) -> str:
    """sha256 of the rows' content; equal for the same rows in the same order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update("\x1f".join((row.text, row.label, row.reply or "")).encode("utf-8"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def replies_by_label(rows: Iterable[Row]) -> dict[str, str | None]:
    """Each label's reply: the first one given for it in the rows (None if none is)."""
    replies: dict[str, str | None] = {}
    for row in rows:
        if replies.get(row.label) is None:
            replies[row.label] = row.reply
    return replies


# -- parsing -------------------------------------------------------------------------------


def _format_of(filename: str) -> str:
    ext = Path(filename.replace("\\", "/")).suffix.lower()
    if ext in (".csv", ".json", ".jsonl", ".ndjson"):
        return ".jsonl" if ext == ".ndjson" else ext
    if not ext:
        shown = "without an extension"
    elif len(ext) <= 12 and ext.isprintable() and unencodable(ext) is None:
        shown = f"'{ext}'"
    else:
        shown = "of an unknown kind"
    raise InvalidInputError(f"Unsupported file type {shown}. Send a .csv, .json or .jsonl file.")


def _decode(data: bytes) -> str:
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            f"Line {line} is not valid UTF-8 text. Save the file as UTF-8 and send it again."
        ) from None


def _make_row(line: int, text: Any, label: Any, reply: Any) -> Row:
    """Check one example's fields and build the row; errors name the line."""
    if not isinstance(text, str):
        raise InvalidInputError(f'Line {line}: "text" must be a string.')
    if isinstance(label, int | float) and not isinstance(label, bool):
        label = str(label)
    if not isinstance(label, str):
        raise InvalidInputError(f'Line {line}: "label" must be a string.')
    if reply is not None and not isinstance(reply, str):
        raise InvalidInputError(f'Line {line}: "reply" must be a string.')
    text, label = text.strip(), label.strip()
    reply = (reply or "").strip() or None
    _check_encodable(f"Line {line}: ", {"text": text, "label": label, "reply": reply or ""})
    if not text:
        raise InvalidInputError(f"Line {line}: the text is empty.")
    if not label:
        raise InvalidInputError(f"Line {line}: the label is empty.")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"Line {line}: the text is longer than {MAX_TEXT_CHARS} characters."
        )
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidInputError(
            f"Line {line}: the label is longer than {MAX_LABEL_CHARS} characters."
        )
    if reply is not None and len(reply) > MAX_REPLY_CHARS:
        raise InvalidInputError(
            f"Line {line}: the reply is longer than {MAX_REPLY_CHARS} characters."
        )
    return Row(text, label, reply)


def _check_encodable(where: str, fields: dict[str, str]) -> None:
    """Refuse text that can't be stored as UTF-8 (a lone surrogate from a JSON escape)."""
    for what, value in fields.items():
        problem = unencodable_problem(what, value)
        if problem is not None:
            message = f"{where}{problem}."
            raise InvalidInputError(message[0].upper() + message[1:])


def csv_problem(exc: csv.Error) -> str:
    """A csv module error in the user's words."""
    if "field larger than field limit" in str(exc):
        return f"a value is longer than {csv.field_size_limit():,} characters"
    return f"the CSV can't be read ({exc})"


def _parse_csv(text: str) -> Iterator[tuple[int, Row]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    columns: dict[str, int] | None = None
    width = 0
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidInputError(f"Line {reader.line_num}: {csv_problem(exc)}.") from None
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in record):
            continue
        if columns is None:
            columns, width = _csv_columns(start, record)
            continue
        if len(record) > width:
            raise InvalidInputError(
                f"Line {start}: found {len(record)} values but the header has {width} columns. "
                "Put quotes around text that contains commas."
            )
        values = [record[i] if i < len(record) else "" for i in range(width)]
        reply = values[columns["reply"]] if "reply" in columns else None
        yield start, _make_row(start, values[columns["text"]], values[columns["label"]], reply)
    if columns is None:
        raise InvalidInputError("The file is empty.")


def _csv_columns(line: int, record: list[str]) -> tuple[dict[str, int], int]:
    names = [cell.strip().lower() for cell in record]
    missing = [column for column in ("text", "label") if column not in names]
    if missing:
        raise InvalidInputError(
            f"Line {line}: the first row must be the header text,label (or text,label,reply); "
            f"the {' and '.join(missing)} column{'s are' if len(missing) > 1 else ' is'} missing."
        )
    columns = {name: names.index(name) for name in _CSV_HEADER if name in names}
    return columns, len(record)


def _row_from_object(line: int, item: Any) -> Row:
    if not isinstance(item, dict):
        found = type(item).__name__.replace("str", "a string").replace("list", "a list")
        raise InvalidInputError(
            f'Line {line}: expected an object with "text" and "label", found {found}.'
        )
    for key in ("text", "label"):
        if key not in item:
            raise InvalidInputError(f'Line {line}: the "{key}" field is missing.')
    return _make_row(line, item["text"], item["label"], item.get("reply"))


def _json_error(exc: json.JSONDecodeError) -> InvalidInputError:
    return InvalidInputError(f"Line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}).")


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _parse_json_array(text: str) -> Iterator[tuple[int, Row]]:
    """A JSON list of objects, read item by item so that each error can name its line."""
    try:
        safejson.check(text)
    except json.JSONDecodeError as exc:
        raise _json_error(exc) from None
    index = _skip_space(text, 1)
    line, counted = 1, 0
    if index < len(text) and text[index] == "]":
        return
    while True:
        line += text.count("\n", counted, index)
        counted = index
        try:
            item, index = safejson.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise _json_error(exc) from None
        yield line, _row_from_object(line, item)
        index = _skip_space(text, index)
        if index < len(text) and text[index] == ",":
            index = _skip_space(text, index + 1)
            continue
        if index < len(text) and text[index] == "]":
            index = _skip_space(text, index + 1)
            if index == len(text):
                return
            problem = "unexpected text after the end of the list"
        else:
            problem = "expected ',' or ']'"
        error_line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        raise InvalidInputError(f"Line {error_line}, column {column}: invalid JSON ({problem}).")


def _parse_json_lines(text: str) -> Iterator[tuple[int, Row]]:
    # Only "\n" ends a line: str.splitlines would also cut at U+2028 and others, which JSON
    # allows inside strings.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = safejson.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"Line {number}, column {exc.colno}: invalid JSON ({exc.msg})."
            ) from None
        yield number, _row_from_object(number, item)


def _parse_json(text: str, ext: str) -> Iterator[tuple[int, Row]]:
    start = text.lstrip()
    if ext == ".jsonl":
        return _parse_json_lines(text)
    if start.startswith("["):
        return _parse_json_array(text)
    try:
        safejson.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and start.startswith("{"):
            return _parse_json_lines(text)  # JSON lines in a .json file
        raise _json_error(exc) from None
    raise InvalidInputError(
        'The JSON must be a list of objects with "text" and "label" (or one object per line).'
    )


def _read_records(data: bytes, filename: str, max_rows: int) -> list[tuple[int, Row]]:
    """Rows with their line numbers; format-level checks only (no label counts)."""
    ext = _format_of(filename)
    text = _decode(data)
    if not text.strip():
        raise InvalidInputError("The file is empty.")
    records = _parse_csv(text) if ext == ".csv" else _parse_json(text, ext)
    rows: list[tuple[int, Row]] = []
    for record in records:
        if len(rows) >= max_rows:
            raise TooLargeError(f"The dataset has more than {max_rows} rows (the limit).")
        rows.append(record)
    return rows


def _check_labels(records: Sequence[tuple[int, Row]]) -> None:
    if not records:
        raise InvalidInputError("The dataset has no rows.")
    counts = Counter(row.label for _, row in records)
    if len(counts) < MIN_LABELS:
        only = next(iter(counts))
        raise InvalidInputError(
            f"The dataset needs at least {MIN_LABELS} different labels; it has only 1 ({only})."
        )
    for label, count in counts.items():
        if count < MIN_ROWS_PER_LABEL:
            line = next(number for number, row in records if row.label == label)
            raise InvalidInputError(
                f"Line {line}: label '{label}' has only {count} row; "
                f"every label needs at least {MIN_ROWS_PER_LABEL}."
            )


def check_size(size: int, max_bytes: int) -> None:
    """Raise TooLargeError when an upload is over the cap (call before downloading if you can)."""
    if size > max_bytes:
        raise TooLargeError(
            f"That file is too large ({_mb(size)} MB; the limit is {_mb(max_bytes)} MB)."
        )


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f}".removesuffix(".0")


def parse_dataset(
    data: bytes, filename: str, *, max_rows: int, max_bytes: int | None = None
) -> list[Row]:
    """Parse and validate an uploaded dataset (CSV, JSON list or JSON lines, by extension).

    Raises InvalidInputError (TooLargeError for caps) naming the offending line.
    """
    if max_bytes is not None:
        check_size(len(data), max_bytes)
    records = _read_records(data, filename, max_rows)
    _check_labels(records)
    return [row for _, row in records]


def parse_inline(text: str, *, max_rows: int | None = None) -> list[Row]:
    """Parse lines of `text | label` (or `text | label | reply`), as typed after `!train`.

    Blank lines and ``` fences are skipped. Validated like a file.
    """
    records: list[tuple[int, Row]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        parts = [part.strip() for part in line.split("|", 2)]
        if len(parts) < 2:
            raise InvalidInputError(
                f"Line {number}: expected `text | label` (or `text | label | reply`)."
            )
        if max_rows is not None and len(records) >= max_rows:
            raise TooLargeError(f"The dataset has more than {max_rows} rows (the limit).")
        reply = parts[2] if len(parts) == 3 else None
        records.append((number, _make_row(number, parts[0], parts[1], reply)))
    if not records:
        raise InvalidInputError(
            "No training lines found. Write one example per line: `text | label` "
            "(or `text | label | reply`)."
        )
    _check_labels(records)
    return [row for _, row in records]


def rows_to_csv(rows: Iterable[Row]) -> bytes:
    """The rows as the CSV the store keeps. A carriage return inside a value is written as a
    line break: the writer would leave it unquoted, and reading it back would split the row."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    writer.writerows(
        (_one_line_end(row.text), _one_line_end(row.label), _one_line_end(row.reply or ""))
        for row in rows
    )
    return buffer.getvalue().encode("utf-8")


def _one_line_end(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value
