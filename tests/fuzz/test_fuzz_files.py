"""Paths from users (`!getfile`, `!archive`): any text, and the hostile corpus's pieces put
together at random. Each resolves to a file or folder inside the data folder, or is refused
with one clear message; nothing outside it is ever read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserFacingError
from bot.services.files.service import MIB, FileService
from tests.fuzz.contract import outcome
from tests.fuzz.strategies import text
from tests.services.hostile_paths import HOSTILE_PATHS, SECRET_MARKER, make_hostile_tree

NAMES = ["datasets", "smalltalk.csv", "exports", "top.txt", "..", ".", "", "bot.db", ".env"]
SEPARATORS = ["/", "\\", "//", "%2f", "%252f", "\u2215"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> FileService:
    data = tmp_path_factory.mktemp("fuzz-files") / "data"
    (data / "datasets").mkdir(parents=True)
    (data / "datasets" / "smalltalk.csv").write_text("text,label\nhi,greeting\n")
    (data / "exports").mkdir()
    (data / "exports" / "top.txt").write_text("top level")
    make_hostile_tree(data)
    return FileService(data, max_upload_bytes=10 * MIB)


@st.composite
def user_path(draw: st.DrawFn) -> str:
    """Pieces of hostile paths, names that exist and any text, joined by any separator."""
    pieces = draw(
        st.lists(
            st.one_of(st.sampled_from(HOSTILE_PATHS), st.sampled_from(NAMES), text), max_size=5
        )
    )
    separator = draw(st.sampled_from(SEPARATORS))
    return separator.join(pieces)


@given(st.one_of(user_path(), text, st.sampled_from(HOSTILE_PATHS)))
def test_resolve_any_path(files: FileService, raw: str) -> None:
    found = outcome(files.resolve, raw)
    if isinstance(found, UserFacingError):
        return
    root = files.data_dir.resolve()
    assert isinstance(found, Path) and found.is_relative_to(root)
    if found.is_file():
        name, data = asyncio.run(files.read_for_upload(raw))
        assert SECRET_MARKER.encode() not in data
