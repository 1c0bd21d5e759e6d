"""FileService: the path check against the hostile corpus, !getfile reads and !archive zips."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from bot.errors import InvalidInputError, NotFoundError, TooLargeError, UserFacingError
from bot.services.files import service as files_module
from bot.services.files.paths import PATH_REFUSED
from bot.services.files.service import (
    ARCHIVES_REFUSED,
    EMPTY_ARCHIVE,
    FILE_NOT_FOUND,
    IS_FOLDER,
    MIB,
    FileService,
)
from tests.services.hostile_paths import HOSTILE_PATHS, SECRET_MARKER, make_hostile_tree

SMALLTALK = "text,reply\nhi,hello\nbye,see you\n"
CORRECTIONS = "text,reply\nhi,hey there\n"
ARCHIVE_NAME = re.compile(r"archives/(?P<stem>[A-Za-z0-9_-]+)-\d{8}T\d{6}Z(-\d+)?\.zip")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    datasets = data / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "smalltalk.csv").write_text(SMALLTALK)
    (datasets / "smalltalk.corrections.csv").write_text(CORRECTIONS)
    (datasets / "other.json").write_text('[{"text": "a", "reply": "b"}]')
    (datasets / "alias.csv").symlink_to("smalltalk.csv")  # inside: allowed
    nested = data / "exports" / "2026" / "nov"
    nested.mkdir(parents=True)
    (nested / "report.txt").write_text("november report")
    (data / "exports" / "top.txt").write_text("top level")
    (data / "empty").mkdir()
    make_hostile_tree(data)
    return data


@pytest.fixture
def files(data_dir: Path) -> FileService:
    return FileService(data_dir, max_upload_bytes=10 * MIB)


def _zip_contents(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def _archives(data_dir: Path) -> list[str]:
    folder = data_dir / "archives"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


HOSTILE_IDS = [f"{i:03d}-{ascii(p)[1:-1][:40]}" for i, p in enumerate(HOSTILE_PATHS)]


# The corpus


def test_the_corpus_is_large_and_has_no_duplicates() -> None:
    assert len(HOSTILE_PATHS) >= 50
    assert len(set(HOSTILE_PATHS)) == len(HOSTILE_PATHS)


def test_the_hostile_tree_really_offers_something_to_leak(data_dir: Path) -> None:
    """Without the check these paths would read secrets: the refusals below mean something."""
    assert SECRET_MARKER in (data_dir / "link_secret").read_text()
    assert SECRET_MARKER in (data_dir / "datasets/link_up/outside/secret.txt").read_text()
    assert SECRET_MARKER in (data_dir / "../outside/secret.txt").read_text()
    assert SECRET_MARKER in (data_dir / "link_env").read_text()
    assert SECRET_MARKER in (data_dir / "datasets/link_hidden.csv").read_text()
    assert (data_dir / "link_out").resolve() == Path("/etc").resolve()
    assert (data_dir / "pipe").is_fifo() and (data_dir / "sock").is_socket()


@pytest.mark.parametrize("hostile", HOSTILE_PATHS, ids=HOSTILE_IDS)
def test_no_hostile_path_resolves(files: FileService, hostile: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        files.resolve(hostile)
    assert type(caught.value) is InvalidInputError
    assert caught.value.message == PATH_REFUSED


@pytest.mark.parametrize("hostile", HOSTILE_PATHS, ids=HOSTILE_IDS)
async def test_no_hostile_path_is_readable(files: FileService, hostile: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await files.read_for_upload(hostile)
    assert caught.value.message == PATH_REFUSED


@pytest.mark.parametrize("hostile", HOSTILE_PATHS, ids=HOSTILE_IDS)
async def test_no_hostile_path_is_archivable(
    files: FileService, data_dir: Path, hostile: str
) -> None:
    with pytest.raises(UserFacingError) as caught:
        await files.archive(hostile)
    assert caught.value.message == PATH_REFUSED
    assert _archives(data_dir) == []


async def test_archiving_everything_leaks_nothing(files: FileService, data_dir: Path) -> None:
    for name in (".", "datasets"):
        archive = await files.archive(name)
        assert archive.data is not None
        contents = _zip_contents(archive.data)
        assert not any(SECRET_MARKER.encode() in body for body in contents.values())
        names = set(contents)
        assert not any(Path(n).name.startswith(".") or "bot.db" in n for n in names)
        assert not any(n.startswith(("archives", "link_")) or "pipe" in n for n in names)

    whole = _zip_contents((await files.archive(".")).data or b"")
    assert set(whole) == {
        "datasets/smalltalk.csv",
        "datasets/smalltalk.corrections.csv",
        "datasets/other.json",
        "datasets/alias.csv",
        "exports/top.txt",
        "exports/2026/nov/report.txt",
    }
    assert whole["datasets/alias.csv"] == SMALLTALK.encode()


# !getfile


async def test_reads_a_dataset_file(files: FileService) -> None:
    assert await files.read_for_upload("datasets/smalltalk.csv") == (
        "smalltalk.csv",
        SMALLTALK.encode(),
    )
    assert await files.read_for_upload("./datasets\\smalltalk.csv") == (
        "smalltalk.csv",
        SMALLTALK.encode(),
    )
    assert await files.read_for_upload("exports/2026/nov/report.txt") == (
        "report.txt",
        b"november report",
    )


async def test_names_with_percent_and_accents_are_taken_literally(
    files: FileService, data_dir: Path
) -> None:
    for name in ("100%.csv", "a%20b.csv", "données.csv"):
        (data_dir / "datasets" / name).write_text(name)
        assert await files.read_for_upload(f"datasets/{name}") == (name, name.encode())
    with pytest.raises(NotFoundError):
        await files.read_for_upload("datasets/a b.csv")


async def test_a_symlink_inside_the_data_folder_is_followed(files: FileService) -> None:
    assert (await files.read_for_upload("datasets/alias.csv"))[1] == SMALLTALK.encode()


@pytest.mark.parametrize("missing", ["datasets/missing.csv", "nope", "datasets/smalltalk.csv/x"])
async def test_a_missing_file_is_not_found(files: FileService, missing: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        await files.read_for_upload(missing)
    assert caught.value.message == FILE_NOT_FOUND


@pytest.mark.parametrize("folder", ["datasets", "exports/2026", "."])
async def test_a_folder_is_not_sent(files: FileService, folder: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await files.read_for_upload(folder)
    assert caught.value.message == IS_FOLDER


async def test_a_file_over_the_cap_is_refused_before_reading(
    files: FileService, data_dir: Path
) -> None:
    (data_dir / "big.bin").write_bytes(b"")
    os.truncate(data_dir / "big.bin", int(12.3 * MIB))  # sparse: no real 12 MB written
    with pytest.raises(TooLargeError) as caught:
        await files.read_for_upload("big.bin")
    assert caught.value.message == "That file is too large to send (12.3 MB; the limit is 10 MB)."


async def test_a_file_exactly_at_the_cap_is_sent(data_dir: Path) -> None:
    (data_dir / "hundred.bin").write_bytes(b"x" * 100)
    (data_dir / "hundred-one.bin").write_bytes(b"x" * 101)
    files = FileService(data_dir, max_upload_bytes=100)
    assert await files.read_for_upload("hundred.bin") == ("hundred.bin", b"x" * 100)
    with pytest.raises(TooLargeError):
        await files.read_for_upload("hundred-one.bin")


def test_extra_protected_names_are_refused(data_dir: Path) -> None:
    (data_dir / "keys.json").write_text("{}")
    files = FileService(data_dir, max_upload_bytes=MIB, protected=["keys.json", "bot.db"])
    with pytest.raises(InvalidInputError):
        files.resolve("keys.json")
    with pytest.raises(InvalidInputError):
        files.resolve("link_db")


# !archive


async def test_archives_a_dataset_with_its_corrections(files: FileService, data_dir: Path) -> None:
    archive = await files.archive("smalltalk")
    match = ARCHIVE_NAME.fullmatch(archive.path_relative)
    assert match and match["stem"] == "smalltalk"
    on_disk = data_dir / archive.path_relative
    assert on_disk.read_bytes() == archive.data
    assert archive.size == on_disk.stat().st_size
    assert archive.uploadable and archive.files == 2
    assert _zip_contents(archive.data or b"") == {
        "smalltalk.csv": SMALLTALK.encode(),
        "smalltalk.corrections.csv": CORRECTIONS.encode(),
    }


async def test_archives_a_nested_folder(files: FileService) -> None:
    archive = await files.archive("exports")
    assert ARCHIVE_NAME.fullmatch(archive.path_relative)["stem"] == "exports"  # type: ignore[index]
    assert _zip_contents(archive.data or b"") == {
        "exports/top.txt": b"top level",
        "exports/2026/nov/report.txt": b"november report",
    }
    sub = await files.archive("exports/2026")
    assert ARCHIVE_NAME.fullmatch(sub.path_relative)["stem"] == "exports-2026"  # type: ignore[index]
    assert set(_zip_contents(sub.data or b"")) == {"2026/nov/report.txt"}


async def test_archives_a_single_file(files: FileService) -> None:
    archive = await files.archive("exports/top.txt")
    assert _zip_contents(archive.data or b"") == {"top.txt": b"top level"}


async def test_a_large_archive_is_kept_but_not_attached(data_dir: Path) -> None:
    (data_dir / "exports" / "noise.bin").write_bytes(os.urandom(4000))  # incompressible
    files = FileService(data_dir, max_upload_bytes=1000)
    archive = await files.archive("exports")
    assert not archive.uploadable and archive.data is None
    assert archive.size > 1000
    assert (data_dir / archive.path_relative).stat().st_size == archive.size


async def test_the_archives_folder_is_not_archived(files: FileService) -> None:
    first = await files.archive("smalltalk")
    for name in ("archives", first.path_relative):
        with pytest.raises(InvalidInputError) as caught:
            await files.archive(name)
        assert caught.value.message == ARCHIVES_REFUSED


async def test_unknown_and_empty_targets_are_explained(files: FileService) -> None:
    with pytest.raises(NotFoundError):
        await files.archive("no_such_dataset")
    with pytest.raises(InvalidInputError) as caught:
        await files.archive("empty")
    assert caught.value.message == EMPTY_ARCHIVE


async def test_simultaneous_archives_get_distinct_files(files: FileService, data_dir: Path) -> None:
    archives = await asyncio.gather(*(files.archive("smalltalk") for _ in range(5)))
    assert len({a.path_relative for a in archives}) == 5
    assert len(_archives(data_dir)) == 5  # and no temporary files left behind


async def test_a_failed_archive_leaves_nothing_behind(
    files: FileService, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(files_module.FileService, "_zip_into", explode)
    with pytest.raises(OSError):
        await files.archive("smalltalk")
    assert _archives(data_dir) == []


async def test_links_into_the_archives_folder_are_not_archived(
    files: FileService, data_dir: Path
) -> None:
    first = await files.archive("smalltalk")
    (data_dir / "exports" / "latest.zip").symlink_to(data_dir / first.path_relative)
    (data_dir / "exports" / "all_archives").symlink_to(data_dir / "archives")
    archive = await files.archive("exports")
    assert set(_zip_contents(archive.data or b"")) == {
        "exports/top.txt",
        "exports/2026/nov/report.txt",
    }


# A path swapped for something else between the check and the read


@pytest.mark.parametrize("swapped_in", ["link_secret", "pipe", "sock", "datasets"])
async def test_a_path_swapped_after_the_check_is_still_refused(
    files: FileService, data_dir: Path, monkeypatch: pytest.MonkeyPatch, swapped_in: str
) -> None:
    """resolve() passed, then the file became a symlink, FIFO, socket or folder."""
    monkeypatch.setattr(files, "resolve", lambda _path: data_dir / swapped_in)
    try:
        with pytest.raises(InvalidInputError):
            await asyncio.wait_for(files.read_for_upload("datasets/smalltalk.csv"), timeout=10)
    finally:
        _release_fifo_readers(data_dir / "pipe")


def _release_fifo_readers(fifo: Path) -> None:
    """If a broken read blocked opening the FIFO, opening it for writing frees that thread."""
    with contextlib.suppress(OSError):  # ENXIO: nobody waits to read, as it should be
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


async def test_an_archive_member_swapped_after_listing_is_skipped(
    files: FileService, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = files._folder_members(data_dir / "exports")
    swapped = [(data_dir / "link_secret", "exports/top.txt"), (data_dir / "pipe", "x"), *listed]
    monkeypatch.setattr(files, "_folder_members", lambda _target: swapped)
    try:
        archive = await asyncio.wait_for(files.archive("exports"), timeout=10)
    finally:
        _release_fifo_readers(data_dir / "pipe")
    contents = _zip_contents(archive.data or b"")
    assert not any(SECRET_MARKER.encode() in body for body in contents.values())
    assert archive.files == len(listed) == len(contents)
