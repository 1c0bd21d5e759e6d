from bot.services.text import human_size, split_message


def test_split_message_respects_the_limit_and_keeps_everything() -> None:
    text = "\n\n".join(f"para {i} " + "x" * 300 for i in range(20))
    chunks = split_message(text, 2000)
    assert all(len(c) <= 2000 for c in chunks)
    assert "".join(chunks).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(
        " ", ""
    )


def test_split_message_cuts_a_long_word_and_closes_code_fences() -> None:
    chunks = split_message("```\n" + "y" * 5000 + "\n```", 2000)
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.count("```") % 2 == 0 for c in chunks)


def test_short_text_is_one_chunk_and_helpers_format() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("   ") == []
    assert human_size(31 * 1024 * 1024) == "31 MB"
    assert human_size(1536 * 1024) == "1.5 MB"
