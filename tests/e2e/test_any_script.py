"""Chat in Japanese through the sandbox: a server uploads and trains its own dataset, then
talks to the bot in sentences the dataset does not contain."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.e2e.conftest import E2E
from tests.e2e.test_model import NOT_SURE, chat, train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
JA_CHAT = FIXTURES / "ja_chat.csv"  # greeting, thanks, weather, name and goodbye: 68 rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as file:
        return list(csv.DictReader(file))


async def test_a_japanese_server_trains_its_dataset_and_gets_answers(e2e: E2E) -> None:
    report = await train(e2e, "!train", files=[("ja_chat.csv", JA_CHAT.read_bytes())])
    assert "Model v1 of dataset ja_chat is trained and active: 68 rows, 5 labels" in report
    assert (await e2e.ask_text("!select_dataset ja_chat")).startswith("Dataset `ja_chat` selected")
    await e2e.ask_text("!chat on")

    replies = {row["label"]: row["reply"] for row in read_csv(JA_CHAT)}
    wrong = []
    for row in read_csv(FIXTURES / "ja_chat_paraphrases.csv"):  # none is a training row
        answer = await chat(e2e, row["text"])
        if answer != replies[row["label"]]:
            wrong.append(f"{row['text']} ({row['label']}): {answer}")
    assert len(wrong) <= 3, wrong  # 27 of 30 (8 when a sentence was one word)

    # Gibberish in kana, in ideographs never seen and in Cyrillic; what is Mongolia's capital.
    for text in (
        "ぬぽぺらむにょ",
        "ゲロッパホニャララ",
        "麒麟龍鳳凰",
        "жвпрщ ыклмн",
        "モンゴルの首都はどこですか",
    ):
        assert await chat(e2e, text) == NOT_SURE, text
