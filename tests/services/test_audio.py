"""Decoding, duration, silence splitting and bad-input detection of bot.services.speech.audio."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

from bot.errors import InvalidInputError, TooLargeError
from bot.services.speech import audio
from tests.fixtures import speech as samples

PHRASE_SECONDS = samples.hello().duration_seconds
AudioSegment = audio.AudioSegment  # pydub's, imported through audio (which quiets its warning)


def silent(seconds: float) -> AudioSegment:
    return AudioSegment.silent(duration=int(seconds * 1000), frame_rate=audio.SAMPLE_RATE)


def tone(seconds: float, volume_db: float = -12.0) -> AudioSegment:
    from pydub.generators import Sine

    return Sine(440, sample_rate=audio.SAMPLE_RATE).to_audio_segment(seconds * 1000, volume_db)


def noise(seconds: float, volume_db: float) -> AudioSegment:
    from pydub.generators import WhiteNoise

    return WhiteNoise(sample_rate=audio.SAMPLE_RATE).to_audio_segment(seconds * 1000, volume_db)


def assert_speech_format(segment: AudioSegment) -> None:
    assert (segment.frame_rate, segment.channels, segment.sample_width) == (16000, 1, 2)


@pytest.mark.parametrize(
    ("filename", "content_type", "expected"),
    [
        ("voice-message.ogg", "audio/ogg", True),
        ("clip", "audio/mpeg", True),
        ("clip.bin", "audio/ogg; codecs=opus", True),
        ("video.mp4", "video/mp4", True),
        ("video.webm", "video/webm", True),
        ("holiday.MOV", "application/octet-stream", True),
        ("song.flac", None, True),
        ("notes.txt", "text/plain", False),
        ("photo.png", "image/png", False),
        ("film.avi", "video/x-msvideo", False),
    ],
)
def test_is_audio_attachment(filename: str, content_type: str | None, expected: bool) -> None:
    assert audio.is_audio_attachment(filename, content_type) is expected


@pytest.mark.parametrize("name", ["hello.wav", "hello.ogg", "hello.mp3"])
def test_decodes_each_fixture_to_16k_mono_wav(name: str) -> None:
    segment = audio.decode(samples.fixture(name), name)
    assert_speech_format(segment)
    assert segment.duration_seconds == pytest.approx(PHRASE_SECONDS, abs=0.1)
    assert not audio.is_silent(segment)
    wav = audio.to_wav(segment)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert audio.from_wav(wav).raw_data == segment.raw_data


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".m4a", ["-c:a", "aac", "-b:a", "48k"]),
        (".webm", ["-c:a", "libopus", "-b:a", "24k"]),
        (".flac", ["-c:a", "flac"]),
        (".wav", ["-ac", "2", "-ar", "44100", "-c:a", "pcm_s24le"]),
        (".mkv", ["-c:a", "libvorbis"]),
        (
            ".mp4",
            ["-f", "lavfi", "-i", "testsrc=size=32x32:rate=5", "-map", "1:v", "-map", "0:a"]
            + ["-shortest", "-c:v", "mpeg4", "-c:a", "aac"],
        ),
    ],
    ids=["m4a-aac", "webm-opus", "flac", "wav-stereo-44k-24bit", "mkv-vorbis", "mp4-with-video"],
)
def test_decodes_other_formats_without_hints(hello, suffix, options) -> None:
    data = samples.encode(hello, suffix, *options)
    # No filename: the format is found from the bytes alone.
    segment = audio.decode(data)
    assert_speech_format(segment)
    assert segment.duration_seconds == pytest.approx(PHRASE_SECONDS, abs=0.15)


def test_decodes_with_no_ffmpeg_or_ffprobe_on_path(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    audio.ffmpeg_exe.cache_clear()
    try:
        exe = audio.ffmpeg_exe()
        assert "imageio_ffmpeg" in exe and os.access(exe, os.X_OK)
        segment = audio.decode(samples.fixture("hello.ogg"), "voice-message.ogg")
    finally:
        audio.ffmpeg_exe.cache_clear()
    assert segment.duration_seconds == pytest.approx(PHRASE_SECONDS, abs=0.1)


def test_zero_bytes_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="That file is empty"):
        audio.decode(b"", "empty.ogg")


@pytest.mark.parametrize(
    "data",
    [
        b"Dear diary, today I recorded nothing at all.\n" * 20,
        bytes(random.Random(7).randrange(256) for _ in range(20_000)),
    ],
    ids=["text", "random-bytes"],
)
def test_non_audio_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="not audio"):
        audio.decode(data, "upload.ogg")


def test_image_is_rejected_as_not_audio() -> None:
    picture = samples.encode(
        silent(0.1), ".png", "-f", "lavfi", "-i", "testsrc=size=32x32", "-map", "1:v",
        "-frames:v", "1",
    )  # fmt: skip
    assert picture[:4] == b"\x89PNG"
    with pytest.raises(InvalidInputError, match="not audio"):
        audio.decode(picture, "photo.png")


def test_truncated_audio_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="damaged"):
        audio.decode(samples.fixture("hello.ogg")[:300], "voice-message.ogg")


@pytest.mark.parametrize("name", ["hello.ogg", "hello.mp3"])
def test_corrupt_audio_is_rejected(name: str) -> None:
    data = bytearray(samples.fixture(name))
    rng = random.Random(3)
    for index in range(200, len(data)):
        data[index] = rng.randrange(256)
    with pytest.raises(InvalidInputError, match="damaged"):
        audio.decode(bytes(data), name)


def test_video_without_audio_track_is_rejected() -> None:
    video = samples.encode(
        silent(0.1), ".mp4", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=5", "-t", "1",
        "-map", "1:v", "-c:v", "mpeg4",
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match="That video has no audio track"):
        audio.decode(video, "clip.mp4")


def test_too_long_audio_names_its_length_and_the_limit() -> None:
    twenty_minutes = samples.encode(silent(1), ".flac", "-af", "apad=whole_dur=1200", "-ar", "8000")
    with pytest.raises(TooLargeError) as caught:
        audio.decode(twenty_minutes, "long.flac", max_seconds=900)
    assert caught.value.message == "That audio is too long (20:00; the limit is 15:00)."


def test_audio_at_the_limit_is_accepted() -> None:
    segment = audio.decode(audio.to_wav(tone(60)), "a.wav", max_seconds=60)
    assert segment.duration_seconds == pytest.approx(60, abs=0.01)


def test_temporary_files_are_removed_in_every_case(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    audio.decode(samples.fixture("hello.mp3"), "hello.mp3")
    with pytest.raises(InvalidInputError):
        audio.decode(b"not audio at all", "x.ogg")
    with pytest.raises(TooLargeError):
        audio.decode(samples.fixture("hello.wav"), "hello.wav", max_seconds=1)
    assert list(Path(tmp_path).iterdir()) == []


def test_silence_detection(hello) -> None:
    assert audio.is_silent(silent(3))
    assert audio.is_silent(noise(2, volume_db=-75))
    assert not audio.is_silent(hello)
    assert not audio.is_silent(silent(5) + hello[1000:1500] + silent(5))


def test_short_audio_is_one_chunk(hello) -> None:
    assert audio.chunk_bounds(hello, 50) == [(0, len(hello))]
    (piece,) = audio.split_on_silence(hello, 50)
    assert piece.raw_data == hello.raw_data


def test_long_speech_is_split_at_pauses() -> None:
    long = samples.sentences_for(180)[0]
    pieces = audio.split_on_silence(long, 50)
    assert len(pieces) >= 4
    assert all(len(p) <= 50_000 for p in pieces)
    assert sum(len(p) for p in pieces) == len(long)
    assert b"".join(p.raw_data for p in pieces) == long.raw_data
    # Every cut lands in a pause: the 100 ms on each side of it are silent.
    for before, after in zip(pieces, pieces[1:], strict=False):
        assert audio.is_silent(before[-100:]) and audio.is_silent(after[:100])


def test_audio_without_pauses_is_cut_hard_at_the_limit() -> None:
    steady = tone(120)
    pieces = audio.split_on_silence(steady, 50)
    assert [len(p) for p in pieces] == [50_000, 50_000, 20_000]


def test_noisy_audio_is_cut_at_its_quietest_point() -> None:
    track = noise(30, -20) + noise(0.3, -35) + noise(30, -20)  # no pause, a softer bit at 30 s
    pieces = audio.split_on_silence(track, 50)
    assert len(pieces) == 2
    assert 30_000 < len(pieces[0]) < 30_300


def pieces_of(segment: AudioSegment, bounds: list[tuple[int, int]]) -> list[AudioSegment]:
    return [audio.cut(segment, start, end) for start, end in bounds]


def test_audio_long_enough_to_stream_starts_with_a_short_piece_cut_at_a_pause() -> None:
    long = samples.sentences_for(180)[0]
    pieces = pieces_of(long, audio.chunk_bounds(long, 50, first_seconds=10))
    assert 5_000 <= len(pieces[0]) <= 10_000
    assert b"".join(p.raw_data for p in pieces) == long.raw_data
    # After the first piece, pieces are as long as without it: each cut in the last half.
    assert all(25_000 <= len(p) <= 50_000 for p in pieces[1:-1])
    assert len(pieces[-1]) <= 50_000
    for before, after in zip(pieces, pieces[1:], strict=False):
        assert audio.is_silent(before[-100:]) and audio.is_silent(after[:100])


def test_a_short_first_piece_is_only_for_audio_long_enough_to_stream() -> None:
    for seconds in (40, audio.STREAM_AFTER_SECONDS - 1):
        clip = samples.sentences_for(seconds)[0]
        assert audio.chunk_bounds(clip, 50, first_seconds=10) == audio.chunk_bounds(clip, 50)
    steady = tone(120)
    pieces = pieces_of(steady, audio.chunk_bounds(steady, 50, first_seconds=10))
    assert [len(p) for p in pieces] == [10_000, 50_000, 50_000, 10_000]


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0:00"), (59.6, "1:00"), (900, "15:00"), (3723, "1:02:03")]
)
def test_format_clock(seconds: float, shown: str) -> None:
    assert audio.format_clock(seconds) == shown
