"""Audio plumbing for speech: find ffmpeg, decode anything to 16 kHz mono WAV, split at silences.

Decoding runs the ffmpeg binary directly on a temporary copy of the input, so it needs no
ffprobe (imageio-ffmpeg ships none) and no format hint. The result is a pydub `AudioSegment`
holding 16 kHz mono 16-bit samples; pydub slices it and writes the WAV chunks.

Every function here is blocking (ffmpeg, numpy over the whole file). Async callers run them
with `asyncio.to_thread`.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import shutil
import subprocess
import tempfile
import warnings
import wave
from pathlib import Path, PurePath

import numpy as np

from bot.errors import InvalidInputError, TooLargeError

with warnings.catch_warnings():
    # pydub warns at import when no ffmpeg is on PATH; this module never has pydub run ffmpeg.
    warnings.simplefilter("ignore", RuntimeWarning)
    from pydub import AudioSegment

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
SAMPLE_WIDTH = 2
DECODE_TIMEOUT_SECONDS = 300
FRAME_SECONDS = 0.01
# Below this level (dBFS) a 10 ms frame counts as silent whatever the recording's loudness.
SILENCE_FLOOR_DB = -60.0
# A pause is a frame this far (dB) below the loud parts of the recording.
PAUSE_BELOW_LOUD_DB = 30.0
# A frame this far (dB) below the typical level is a place to cut audio that has no pause.
QUIETER_BY_DB = 6.0
# Less decoded sound than this means the file held no usable audio.
MIN_DECODED_SECONDS = 0.1
# Audio longer than this is shown as it is transcribed (the text so far after each piece).
STREAM_AFTER_SECONDS = 60.0
# The first piece of such audio is at most this long, so its first words are ready within a
# second or so: whisper costs about as much for 5 s as for 10 s (it pads to 30 s), and a
# 50 s piece costs three times as much.
FIRST_PIECE_SECONDS = 10.0

AUDIO_EXTENSIONS = frozenset(
    {
        ".mp3", ".wav", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".flac", ".webm",
        ".mp4", ".wma", ".amr", ".3gp", ".mkv", ".mov",
    }
)  # fmt: skip
VIDEO_TYPES_WITH_AUDIO = frozenset({"video/mp4", "video/webm"})
# The first bytes of container formats that are audio or may carry it.
_AUDIO_MAGIC = (b"OggS", b"RIFF", b"ID3", b"fLaC", b"\x1aE\xdf\xa3", b"#!AMR", b"\xff\xf1")
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "apng", "tty")


def is_audio_attachment(filename: str, content_type: str | None) -> bool:
    """True for files worth transcribing: audio/*, mp4/webm video, or a known audio extension."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind.startswith("audio/") or kind in VIDEO_TYPES_WITH_AUDIO:
        return True
    return PurePath(filename.lower()).suffix in AUDIO_EXTENSIONS


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the one on PATH, else the static one of imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise RuntimeError("ffmpeg is not on PATH and imageio-ffmpeg is not installed") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def format_clock(seconds: float) -> str:
    """15:00, 1:02:03."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def decode(data: bytes, filename: str = "", max_seconds: float | None = None) -> AudioSegment:
    """Decode any audio (or video with sound) to 16 kHz mono 16-bit samples. Blocking.

    Raises InvalidInputError for empty, non-audio, damaged or soundless input, and
    TooLargeError when the audio runs longer than `max_seconds`. Decoding stops shortly past
    the limit, so an hours-long file costs no more than the limit's worth of work.
    """
    if not data:
        raise InvalidInputError("That file is empty.")
    suffix = PurePath(filename.lower()).suffix
    with tempfile.TemporaryDirectory(prefix="stt-") as folder:
        source = Path(folder) / ("input" + (suffix if suffix in AUDIO_EXTENSIONS else ""))
        source.write_bytes(data)
        pcm, report = _run_ffmpeg(source, max_seconds)
    _check_decoded(data, pcm, report)
    segment = AudioSegment(data=pcm, sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=1)
    if max_seconds is not None and segment.duration_seconds > max_seconds:
        raise TooLargeError(_too_long_message(report, max_seconds))
    return segment


def _run_ffmpeg(source: Path, max_seconds: float | None) -> tuple[bytes, str]:
    """Return (raw s16le PCM, ffmpeg's report on stderr).

    ffmpeg writes the samples to a file beside the input rather than to a pipe: reading a
    pipe to the end holds the data twice while the pieces are joined.
    """
    target = source.with_name("decoded.raw")
    command = [
        ffmpeg_exe(),
        *("-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"),
        *("-i", str(source)),
        *("-map", "0:a:0", "-vn", "-sn", "-dn"),
        *("-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le"),
    ]
    if max_seconds is not None:
        # A little past the limit, to tell "exactly at the limit" from "over it".
        command += ["-t", f"{max_seconds + 1:.3f}"]
    command += ["-y", str(target)]
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=DECODE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InvalidInputError("That audio took too long to decode.") from exc
    report = done.stderr.decode("utf-8", errors="replace")
    if done.returncode != 0 or not target.exists():
        log.info("ffmpeg could not decode the input (exit %d): %s", done.returncode, _tail(report))
        return b"", report
    return target.read_bytes(), report


def _check_decoded(data: bytes, pcm: bytes, report: str) -> None:
    if "matches no streams" in report:
        if _input_format(report).endswith(_IMAGE_FORMATS):
            raise InvalidInputError("That file is not audio I can read.")
        kind = "video" if re.search(r"Stream #\d+:\d+.*: Video:", report) else "file"
        raise InvalidInputError(f"That {kind} has no audio track.")
    if len(pcm) >= MIN_DECODED_SECONDS * SAMPLE_RATE * SAMPLE_WIDTH:
        return
    if _looks_like_audio(data) or "Audio:" in report:
        raise InvalidInputError("That audio file is damaged; I couldn't decode any sound from it.")
    raise InvalidInputError("That file is not audio I can read.")


def _looks_like_audio(data: bytes) -> bool:
    head = data[:16]
    is_mp3_frame = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp" or is_mp3_frame


def _input_format(report: str) -> str:
    found = re.search(r"Input #0, ([^ ]+), from", report)
    return found.group(1).rstrip(",") if found else ""


def _declared_duration(report: str) -> float | None:
    """The input's duration as its container states it, if it does."""
    found = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", report)
    if not found:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _too_long_message(report: str, max_seconds: float) -> str:
    limit = format_clock(max_seconds)
    declared = _declared_duration(report)
    if declared is not None and declared > max_seconds:
        return f"That audio is too long ({format_clock(declared)}; the limit is {limit})."
    return f"That audio is too long (over {limit}; the limit is {limit})."


def _tail(report: str, lines: int = 3) -> str:
    return " | ".join(report.strip().splitlines()[-lines:])


def to_wav(segment: AudioSegment) -> bytes:
    """The segment as a complete WAV file (pydub writes WAV itself, without ffmpeg)."""
    buffer = io.BytesIO()
    segment.export(buffer, format="wav")
    return buffer.getvalue()


def from_wav(wav: bytes) -> AudioSegment:
    """Read a WAV file made by `to_wav` (or any PCM WAV) into a segment."""
    return AudioSegment.from_wav(io.BytesIO(wav))


def frame_levels(segment: AudioSegment) -> np.ndarray:
    """Loudness of each 10 ms frame in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(segment.raw_data, dtype=np.int16)
    if segment.channels > 1:
        samples = samples.reshape(-1, segment.channels).mean(axis=1)
    size = max(1, int(segment.frame_rate * FRAME_SECONDS))
    count = len(samples) // size
    if count == 0:
        return np.full(1, -np.inf)
    frames = samples[: count * size].reshape(count, size)
    power = np.empty(count, dtype=np.float64)
    step = 6000  # frames per block (a minute): bounds the float copy of a long file
    for start in range(0, count, step):
        block = frames[start : start + step].astype(np.float32)
        power[start : start + step] = np.einsum("ij,ij->i", block, block) / size
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power / (32768.0 * 32768.0))


def is_silent(segment: AudioSegment) -> bool:
    """True when no 10 ms frame rises above the silence floor (-60 dBFS)."""
    return bool(np.max(frame_levels(segment)) < SILENCE_FLOOR_DB)


def split_on_silence(segment: AudioSegment, max_seconds: float = 50.0) -> list[AudioSegment]:
    """Cut the audio into consecutive pieces of at most `max_seconds`, at pauses where possible."""
    return [cut(segment, start, end) for start, end in chunk_bounds(segment, max_seconds)]


def cut(segment: AudioSegment, start_ms: int, end_ms: int) -> AudioSegment:
    """The samples from start_ms to end_ms; an end at `len(segment)` or beyond means the end.

    Unlike `segment[a:b]`, which pads to whole milliseconds, this adds and drops nothing.
    """
    per_ms = segment.frame_rate / 1000
    end = None if end_ms >= len(segment) else round(end_ms * per_ms)
    return segment.get_sample_slice(round(start_ms * per_ms), end)


def chunk_bounds(
    segment: AudioSegment, max_seconds: float = 50.0, first_seconds: float | None = None
) -> list[tuple[int, int]]:
    """(start, end) in milliseconds of consecutive pieces of at most `max_seconds`.

    Each cut lands in the middle of the longest pause within the last half of the allowed
    span; with no pause there, at its quietest 10 ms frame if that is clearly quieter than
    the rest, else exactly at the limit. Nothing is dropped: the pieces cover the input.
    Bounds rather than slices, so a caller can cut one piece at a time.

    With `first_seconds`, audio longer than STREAM_AFTER_SECONDS (shown as it grows) starts
    with a piece of at most `first_seconds`, cut the same way, so its first words are ready
    early; the pieces after it are as long as without.
    """
    total_ms = len(segment)
    first = max_seconds
    if first_seconds is not None and total_ms > STREAM_AFTER_SECONDS * 1000:
        first = min(first_seconds, max_seconds)
    elif total_ms <= max_seconds * 1000:
        return [(0, total_ms)]
    cuts = _cut_frames(
        frame_levels(segment),
        max_frames=int(max_seconds / FRAME_SECONDS),
        first_frames=int(first / FRAME_SECONDS),
    )
    bounds = [0, *(round(c * FRAME_SECONDS * 1000) for c in cuts), total_ms]
    return list(zip(bounds, bounds[1:], strict=False))


def _cut_frames(levels: np.ndarray, max_frames: int, first_frames: int) -> list[int]:
    finite = levels[np.isfinite(levels)]
    loud = float(np.percentile(finite, 95)) if finite.size else SILENCE_FLOOR_DB
    threshold = max(loud - PAUSE_BELOW_LOUD_DB, SILENCE_FLOOR_DB)
    quiet = levels < threshold
    cuts: list[int] = []
    start, span = 0, first_frames
    # The +1 covers the part-frame at the end that has no level of its own.
    while len(levels) + 1 - start > span:
        low, high = start + span // 2, start + span
        cut = _longest_pause_middle(quiet[low:high])
        if cut is None:
            cut = _quietest(levels[low:high])
        start = low + cut
        cuts.append(start)
        span = max_frames
    return cuts


def _longest_pause_middle(quiet: np.ndarray) -> int | None:
    """Middle index of the longest run of True (the later one on ties), or None."""
    best_len, best_mid, run_start = 0, None, None
    for index, value in enumerate([*quiet.tolist(), False]):
        if value and run_start is None:
            run_start = index
        elif not value and run_start is not None:
            if index - run_start >= best_len:
                best_len, best_mid = index - run_start, (run_start + index) // 2
            run_start = None
    return best_mid


def _quietest(levels: np.ndarray) -> int:
    """Index of a clearly quieter frame (the quietest), else len(levels): a hard cut at the end."""
    finite = levels[np.isfinite(levels)]
    if finite.size == 0:
        return len(levels)
    index = int(np.argmin(levels))
    if levels[index] > float(np.median(finite)) - QUIETER_BY_DB:
        return len(levels)
    return index


def audio_duration(path: Path) -> float:
    """Seconds of audio in a WAV (read from its header) or any other file (decoded). Blocking.

    Non-WAV files are decoded with ffmpeg rather than probed, as there is no ffprobe.
    """
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    rate = 8000
    command = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path)]
    command += ["-vn", "-ac", "1", "-ar", str(rate), "-f", "s16le", "pipe:1"]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise ValueError(f"undecodable audio: {done.stderr.decode(errors='replace')[:200]}")
    return len(done.stdout) / (2.0 * rate)
