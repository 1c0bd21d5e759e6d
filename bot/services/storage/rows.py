"""The rows `Storage` hands out (feedback, the reply log, corrections) and the feedback CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CSV_HEADER = ["id", "created_at", "user_id", "guild_id", "channel_id", "text", "server"]


@dataclass(frozen=True)
class Feedback:
    id: int
    user_id: int
    guild_id: int | None
    channel_id: int
    text: str
    created_at: str  # ISO 8601, UTC
    namespace: str = ""


@dataclass(frozen=True)
class ReplyLog:
    bot_message_id: int
    channel_id: int
    guild_id: int | None
    user_id: int
    user_message_id: int | None
    user_text: str
    reply_text: str
    kind: str  # "chat", "transcript", "command", ...
    created_at: str
    dataset: str | None = None  # the dataset whose model made a chat reply
    namespace: str = ""


@dataclass(frozen=True)
class Correction:
    id: int
    bot_message_id: int
    user_id: int
    guild_id: int | None
    original: str
    correction: str
    created_at: str
    dataset: str | None = None  # the dataset the correction was added to, if any
    user_text: str | None = None  # the message the corrected reply answered
    namespace: str = ""  # where the correction was made
    dataset_namespace: str | None = None  # whose dataset holds the lesson


def _csv_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def feedback_as_csv(rows: Sequence[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_HEADER)
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue().encode("utf-8")
