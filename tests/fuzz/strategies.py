"""Hostile inputs for the fuzz suite: any text (lone surrogates included), JSON and CSV shaped
like what the bot expects but with anything inside, the shapes that once broke a parser, and
random edits of valid files."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from hypothesis import strategies as st

# Every code point, lone surrogates included (hypothesis leaves those out unless told).
any_char = st.characters(exclude_categories=())

# Pieces that have broken parsers somewhere: math text, escapes, line ends that are not "\n",
# CSV quoting, bidi controls, a NUL, nesting and numbers past the limits.
NASTY = [
    "$x^$",
    "$\\frac{$",
    "\\ud83d",
    "\ud83d",
    "\udfff",
    "\x00",
    "\r",
    "\r\n",
    "\u2028",
    "\x85",
    "\x1c",
    '"',
    '""',
    ",",
    "|",
    "```",
    "\\",
    "\u202e",
    "\ufeff",
    "\U0001f600",
    "e\u0301",
    "NaN",
    "-Infinity",
    "1e999",
    "'; DROP TABLE x; --",
]

# Long pieces are built from (piece, count), so that hypothesis's reports stay readable.
LONG = [("[", 40), ("{", 40), ("9", 1001), ("9", 4301), ("a", 2001), ("\ud800", 300)]
nasty = st.one_of(st.sampled_from(NASTY), st.sampled_from(LONG).map(lambda pair: pair[0] * pair[1]))
any_text = st.text(any_char, max_size=60)
# Text with a nasty piece or two in it, or none.
text = st.lists(st.one_of(any_text, nasty), max_size=4).map("".join)
short_text = st.one_of(st.text(any_char, min_size=1, max_size=8), nasty)


def deep(opener: str, closer: str = "") -> st.SearchStrategy[str]:
    """`opener` repeated up to 3,000 times (the recursion limit is about 1,000)."""
    return st.integers(1, 3000).map(lambda n: opener * n + closer * n)


pathological = st.one_of(
    deep("["),
    deep("[", "]"),
    deep('{"a":', "}"),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(1, 6000).map(lambda n: "-0." + "1" * n),
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(short_text, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def record(draw: st.DrawFn, keys: tuple[str, ...]) -> dict[str, Any]:
    """An object with (some of) the expected keys, their values anything, maybe extra keys."""
    value = {key: draw(st.one_of(text, text, json_value)) for key in keys}
    for key in keys:
        if draw(st.integers(0, 9)) == 0:
            value.pop(key, None)
    if draw(st.booleans()):
        value.update(draw(st.dictionaries(short_text, json_value, max_size=2)))
    return value


simple = st.from_regex(r"[a-z]{1,8}( [a-z]{1,8}){0,3}", fullmatch=True)
cell = st.one_of(simple, simple, simple, simple, text)


@st.composite
def dataset_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records that mostly make a valid dataset (2-3 labels, several rows each) with hostile
    text in a cell or two, so that the paths after validation are fuzzed too."""
    labels = draw(st.lists(simple, min_size=2, max_size=3, unique=True))
    if draw(st.booleans()):
        labels[0] = draw(short_text)
    records: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(4, 12))):
        found = {"text": draw(simple), "label": draw(st.sampled_from(labels))}
        if draw(st.booleans()):
            found["reply"] = draw(simple)
        records.append(found)
    for _ in range(draw(st.integers(0, 2))):
        chosen = draw(st.sampled_from(records))
        chosen[draw(st.sampled_from(["text", "reply"]))] = draw(text)
    return records


def dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(value: str) -> bytes:
    """UTF-8, keeping lone surrogates as the invalid bytes they would be on disk."""
    return value.encode("utf-8", "surrogatepass")


@st.composite
def json_document(draw: st.DrawFn, keys: tuple[str, ...]) -> str:
    """A JSON list of records, one record, JSON lines, or any JSON value."""
    anything = draw(st.integers(0, 3)) == 0
    records = draw(st.lists(record(keys), max_size=8) if anything else dataset_records())
    ascii_only = draw(st.booleans())
    shape = draw(st.sampled_from(["list"] * 4 + ["lines"] * 4 + ["one", "any", "pathological"]))
    if shape == "list":
        return dumps(records, ascii_only)
    if shape == "lines":
        return "\n".join(dumps(r, ascii_only) for r in records)
    if shape == "one":
        return dumps(records[0] if records else {}, ascii_only)
    if shape == "any":
        return dumps(draw(json_value), ascii_only)
    return draw(pathological)


@st.composite
def csv_document(draw: st.DrawFn, header: tuple[str, ...]) -> str:
    """A CSV with (perhaps) the expected header and rows of any cells."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    if draw(st.integers(0, 9)):
        writer.writerow(header)
    records = draw(dataset_records())
    rows = [[r.get(key, "") for key in header] for r in records]
    if draw(st.integers(0, 3)) == 0:
        rows = draw(st.lists(st.lists(text, max_size=4), max_size=8))
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """`base` with a few random edits: bytes flipped, inserted, deleted, a cut, a copy."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
    return bytes(data)


def document_bytes(document: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Bytes of documents, sometimes with a BOM, sometimes edited, or just any bytes."""
    encoded = document.map(encode)
    return st.integers(0, 9).flatmap(
        lambda choice: (
            encoded
            if choice < 6
            else encoded.map(lambda data: b"\xef\xbb\xbf" + data)
            if choice == 6
            else encoded.flatmap(mutated)
            if choice < 9
            else st.binary(max_size=200)
        )
    )


@st.composite
def upload(draw: st.DrawFn, keys: tuple[str, ...]) -> tuple[bytes, str]:
    """(bytes, file name) of an upload: mostly a document of the kind its extension says."""
    kind = draw(st.sampled_from([".csv", ".json", ".jsonl"]))
    document = csv_document(keys) if kind == ".csv" else json_document(keys)
    choice = draw(st.integers(0, 9))
    if choice < 7:
        name = f"data{kind}" if choice else f"DATA{kind.upper()}"
    elif choice < 9:
        name = draw(st.sampled_from(["d.ndjson", "d.txt", "d", ".csv", "a.b.json"]))
    else:
        name = draw(text)
    return draw(document_bytes(document)), name


inline_line = st.builds("{} | {}".format, simple, st.sampled_from(["a", "b", "c|d", "$x^$"]))


@st.composite
def inline_lines(draw: st.DrawFn) -> str:
    """Lines typed after `!train`: mostly `text | label`, with a hostile line or two."""
    lines = draw(st.lists(inline_line, min_size=4, max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.one_of(text, nasty, any_text)))
    return "\n".join(lines)
