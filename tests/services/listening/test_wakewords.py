"""Wake words match by sound: what whisper makes of espeak's "hey bot" still wakes the bot."""

from __future__ import annotations

import pytest

from bot.services.hearing.listening.wakewords import (
    check_wake_phrase,
    match_wake_word,
    phonetic_key,
)

PHRASES = ["hey bot", "voicechatbot"]


@pytest.mark.parametrize(
    ("heard", "rest"),
    [
        ("hey bot what time is it", "what time is it"),
        ("Hey Matt, what time is it?", "what time is it?"),  # whisper tiny.en on espeak
        ("Hey man, tell me a joke.", "tell me a joke."),
        ("Hey, Mark, how are you?", "how are you?"),  # whisper tiny.en on espeak, too
        ("Hey, but how are you?", "how are you?"),  # whisper tiny.en on piper
        ("Hello, Matt. How are you?", "How are you?"),  # "hello bot", any greeting
        ("Hi bot! Good morning", "Good morning"),
        ("Hey, bot!", ""),  # the phrase alone: nothing to answer yet
        ("Voice chat bot, what is the weather", "what is the weather"),
        ("VoiceChatBot: hello", "hello"),
    ],
)
def test_wake_word_variants_match_and_give_the_rest(heard: str, rest: str) -> None:
    assert match_wake_word(heard, PHRASES) == rest


@pytest.mark.parametrize(
    "heard",
    [
        "hey everyone",
        "hello there, how are you",
        "hey Sarah, are you coming",
        "the bot is slow today",  # not at the start
        "Matt said hi",  # a name without the greeting the phrase has
        "hey",
        "okay so what now",
        "",
    ],
)
def test_other_utterances_do_not_wake_the_bot(heard: str) -> None:
    assert match_wake_word(heard, PHRASES) is None


def test_keys_group_sounds_not_spellings() -> None:
    assert phonetic_key("bot") == phonetic_key("Matt") == phonetic_key("man")
    assert phonetic_key("voice chat bot") == phonetic_key("VoiceChatBot")
    assert phonetic_key("everyone") != phonetic_key("bot")


def test_custom_wake_words() -> None:
    assert match_wake_word("Computer, lights on", ["computer"]) == "lights on"
    assert match_wake_word("ok computer play music", ["ok computer"]) == "play music"
    assert match_wake_word("play music", ["ok computer"]) is None
    assert match_wake_word("anything", []) is None


@pytest.mark.parametrize(
    ("phrase", "problem"),
    [
        ("", "letters"),
        ("!!!", "letters"),
        ("hey", "more than a greeting"),
        ("one two three four", "at most 3 words"),
        ("x" * 41, "at most 40 characters"),
    ],
)
def test_bad_wake_phrases_are_refused(phrase: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_wake_phrase(phrase)


def test_wake_phrases_are_stored_normalised() -> None:
    assert check_wake_phrase("  Hey,  BOT! ") == "hey bot"
