"""The chat model through the sandbox: !train, jobs, versions, !test and chat replies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.core.checks import NO_PERMISSION
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E

TRAINING_TIMEOUT = 60.0
GREETING = "Hello! Nice to see you. Ask me anything, or type !help to see what I can do."
NOT_SURE = (
    "I'm not sure what you mean. You can teach me: reply to this message with `!correct` "
    "and the answer you expected."
)
FIRST_TRAINING = re.compile(
    r"One moment: I'm learning dataset `[\w-]+` for the first time \(job `[0-9a-f]{8}`\)\. "
    r"I'll answer as soon as it's done\."
)
JOB_STARTED = re.compile(r"Model training started\. Job ID: (?P<id>[0-9a-f]{6,8})\b")
# greeting, weather and goodbye, 10 rows each
THREE_LABELS = Path(__file__).resolve().parents[1] / "fixtures" / "three_labels.csv"


def menu_csv(food_reply: str) -> bytes:
    rows = [
        ("what food do you have", "food", food_reply),
        ("what can i eat", "food", food_reply),
        ("i am hungry", "food", food_reply),
        ("what is for dinner", "food", food_reply),
        ("what can i drink", "drink", "Water and juice."),
        ("i am thirsty", "drink", "Water and juice."),
        ("do you have drinks", "drink", "Water and juice."),
        ("something to drink please", "drink", "Water and juice."),
    ]
    return ("text,label,reply\n" + "".join(f"{t},{lab},{r}\n" for t, lab, r in rows)).encode()


MENU = menu_csv("Pizza is on the menu.")


def job_report_pattern(job_id: str, dataset: str, version: str, rows: int, labels: int) -> str:
    """What the bot posts when a training job ends well: status, timings and the metrics."""
    return (
        rf"Job `{job_id}` \(train `{dataset}`\): \*\*done\*\*(, waited \d+\.\d s)?, ran \d+\.\d s\n"
        rf"Model {version} of dataset {dataset} is trained and active: {rows} rows, "
        rf"{labels} labels, cross-validated accuracy \d+\.\d%, macro-F1 [01]\.\d\d "
        rf"\(\d-fold\), \d+\.\d s\."
    )


async def start_training(env: E2E, text: str = "!train", **send: Any) -> tuple[dict, str, str]:
    """Send a !train command: (the user's message, the bot's reply text, the job id)."""
    sent = await env.sandbox.send(text, **send)
    reply = await env.sandbox.wait_for_bot_message(
        after=sent, channel_id=int(sent["channel_id"]), timeout=TRAINING_TIMEOUT
    )
    found = JOB_STARTED.search(reply["content"])
    assert found, reply["content"]
    return sent, reply["content"], found["id"]


async def job_report(env: E2E, sent: dict, job_id: str) -> str:
    """The message the bot posts in the channel once job `job_id` has ended."""
    message = await env.sandbox.wait_for_bot_message(
        after=sent,
        channel_id=int(sent["channel_id"]),
        predicate=lambda m: (
            m["content"].startswith(f"Job `{job_id}`") and "**running**" not in m["content"]
        ),
        timeout=TRAINING_TIMEOUT,
    )
    return message["content"]


async def train(env: E2E, text: str = "!train", **send: Any) -> str:
    """Train through the chat and wait for the metrics message; returns it."""
    sent, _, job_id = await start_training(env, text, **send)
    report = await job_report(env, sent, job_id)
    assert "**done**" in report, report
    return report


async def chat(env: E2E, text: str, **send: Any) -> str:
    return await env.ask_text(text, timeout=TRAINING_TIMEOUT, **send)


@pytest.fixture
async def env(make_settings: Callable[..., Settings]) -> AsyncIterator[E2E]:
    """The bot with the test settings (`e2e` under the name these tests use)."""
    async with sandboxed_bot(make_settings()) as (sandbox, bot):
        yield E2E(sandbox, bot)


# ----- training ----------------------------------------------------------------------------


async def test_train_an_attached_csv_then_follow_the_job(env: E2E) -> None:
    sent, reply, job_id = await start_training(env, "!train", files=[("menu.csv", MENU)])
    assert reply == (
        f"Saved 8 rows with 2 labels as dataset `menu`. Model training started. Job ID: {job_id}"
    )
    report = await job_report(env, sent, job_id)
    assert re.fullmatch(job_report_pattern(job_id, "menu", "v1", 8, 2), report), report

    status = await env.ask_text(f"!job {job_id}")
    assert re.fullmatch(job_report_pattern(job_id, "menu", "v1", 8, 2), status), status
    jobs = await env.ask_text("!jobs")
    assert re.fullmatch(rf"Job `{job_id}` \(train `menu`\): \*\*done\*\*.*, ran \d+\.\d s", jobs)
    assert await env.ask_text("!job nope") == "Job `nope` not found. `!jobs` lists the latest."
    assert "`menu`: 8 rows, 2 labels" in await env.ask_text("!datasets")


async def test_train_inline_lines_with_and_without_a_name(env: E2E) -> None:
    lines = (
        "cat | animal\ndog | animal\nrose | plant\ntulip | plant\noak | tree | A tree!\nelm | tree"
    )
    sent, reply, job_id = await start_training(env, f"!train garden\n{lines}")
    assert reply == (
        f"Saved 6 rows with 3 labels as dataset `garden`. Model training started. Job ID: {job_id}"
    )
    report = await job_report(env, sent, job_id)
    assert re.fullmatch(job_report_pattern(job_id, "garden", "v1", 6, 3), report), report

    sent, reply, job_id = await start_training(
        env, "!train\nyes | answer\nno | answer\nhm | noise\neh | noise"
    )
    assert reply.startswith("Saved 4 rows with 2 labels as dataset `custom`. ")
    assert "**done**" in await job_report(env, sent, job_id)
    listing = await env.ask_text("!datasets")
    assert "`garden`: 6 rows, 3 labels" in listing and "`custom`: 4 rows, 2 labels" in listing


MB = 1024 * 1024
BAD_INPUTS = {
    "not utf-8": (
        "!train",
        ("bad.csv", b"text,label\nhello,greeting\nhi,greeting\n\xff\xfeoops,greeting\nbye,bye\n"),
        {},
        "Line 4 is not valid UTF-8 text. Save the file as UTF-8 and send it again.",
    ),
    "missing column": (
        "!train",
        ("cols.csv", b"text,category\nhello,greeting\nhi,greeting\nbye,bye\nciao,bye\n"),
        {},
        "Line 1: the first row must be the header text,label (or text,label,reply); "
        "the label column is missing.",
    ),
    "one label": (
        "!train",
        ("one.csv", b"text,label\nhello,greeting\nhi,greeting\nhey,greeting\n"),
        {},
        "The dataset needs at least 2 different labels; it has only 1 (greeting).",
    ),
    "label with one row": (
        "!train",
        ("single.csv", b"text,label\nhello,greeting\nhi,greeting\nbye,goodbye\n"),
        {},
        "Line 4: label 'goodbye' has only 1 row; every label needs at least 2.",
    ),
    "empty label": (
        "!train",
        ("gap.csv", b"text,label\nhello,greeting\nhi,\nbye,goodbye\nciao,goodbye\n"),
        {},
        "Line 3: the label is empty.",
    ),
    "too large": (
        "!train",
        ("big.csv", b"text,label\n" + b"a" * (MB + MB // 2 - 11)),
        {"TRAIN_MAX_MB": "1"},
        "That file is too large (1.5 MB; the limit is 1 MB).",
    ),
    "bad json": (
        "!train",
        (
            "broken.json",
            b'[\n{"text": "hello", "label": "greeting"},\n{"text": "hi" "label": "greeting"}\n]',
        ),
        {},
        "Line 3, column 15: invalid JSON (Expecting ',' delimiter).",
    ),
    "unsupported type": (
        "!train",
        ("notes.txt", b"hello,greeting\n"),
        {},
        "Unsupported file type '.txt'. Send a .csv, .json or .jsonl file.",
    ),
    "inline line without a label": (
        "!train lines\nhello | greeting\nhi greeting",
        None,
        {},
        "Line 2: expected `text | label` (or `text | label | reply`).",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_training_data_is_refused_and_nothing_is_trained(
    case: str, make_settings: Callable[..., Settings]
) -> None:
    command, upload, settings, expected = BAD_INPUTS[case]
    async with sandboxed_bot(make_settings(**settings)) as (sandbox, bot):
        env = E2E(sandbox, bot)
        assert await env.ask_text(command, files=[upload] if upload else None) == expected
        assert await env.ask_text("!jobs") == "No jobs yet."
        listing = await env.ask_text("!datasets")
        assert listing.splitlines()[1:] == [
            "`smalltalk` (sample): 147 rows, 16 labels ← active here"
        ]


async def test_an_admin_can_train_again_right_away(e2e: E2E) -> None:
    rejected = await e2e.ask_text("!train", files=[("menu.csv", b"text,label\nhello,\n")])
    assert rejected == "Line 2: the label is empty."
    first, reply, first_id = await start_training(e2e, "!train", files=[("menu.csv", MENU)])
    assert reply.startswith("Saved 8 rows with 2 labels as dataset `menu`.")
    second, _, second_id = await start_training(e2e, "!train menu")  # no cooldown
    for sent, job_id in ((first, first_id), (second, second_id)):
        assert "**done**" in await job_report(e2e, sent, job_id)


async def test_a_second_training_of_a_dataset_queues_and_both_finish(env: E2E) -> None:
    first, reply, first_id = await start_training(env, "!train smalltalk")
    assert reply == f"Model training started. Job ID: {first_id}"
    second, reply, second_id = await start_training(env, "!train smalltalk")
    assert reply == (
        f"Model training started. Job ID: {second_id} "
        "It is queued behind another training of this dataset."
    )
    reports = await asyncio.gather(
        job_report(env, first, first_id), job_report(env, second, second_id)
    )
    assert re.fullmatch(job_report_pattern(first_id, "smalltalk", "v1", 147, 16), reports[0])
    assert re.fullmatch(job_report_pattern(second_id, "smalltalk", "v2", 147, 16), reports[1])
    assert re.search(r"waited \d+\.\d s", reports[1]), reports[1]


# ----- versions ----------------------------------------------------------------------------


async def test_models_lists_versions_and_use_model_rolls_back(env: E2E) -> None:
    await train(env, "!train", files=[("menu.csv", MENU)])
    await train(env, "!train", files=[("menu.csv", menu_csv("Only soup today."))])
    await env.ask_text("!select_dataset menu")
    await env.ask_text("!chat on")
    assert await chat(env, "what food do you have") == "Only soup today."

    versions = (await env.ask_text("!models")).splitlines()
    assert versions[0] == "**Models of `menu`**"
    assert re.fullmatch(
        r"`v1` .* UTC: 8 rows, 2 labels, accuracy \d+\.\d%, macro-F1 .*", versions[1]
    )
    assert versions[2].startswith("`v2` ") and versions[2].endswith("← active")
    assert not versions[1].endswith("← active")

    assert await env.ask_text("!use_model v1") == "Dataset `menu` now uses model `v1`."
    assert (await env.ask_text("!models")).splitlines()[1].endswith("← active")
    assert await chat(env, "what food do you have") == "Pizza is on the menu."
    assert await env.ask_text("!use_model v9") == "Model version v9 not found for dataset menu."


async def test_models_of_a_dataset_without_a_model(e2e: E2E) -> None:
    text = await e2e.ask_text("!models")
    assert text == "Dataset `smalltalk` has no trained model yet. Train it with `!train smalltalk`."


# ----- !test -------------------------------------------------------------------------------


@pytest.fixture
async def trained(env: E2E) -> E2E:
    await train(env, "!train smalltalk")
    return env


async def test_test_with_json_strings_shows_predictions_and_confidence(trained: E2E) -> None:
    reply = await trained.ask('!test ["hello", "tell me a joke"]')
    lines = reply["content"].splitlines()
    assert re.fullmatch(r"`hello` → \*\*greeting\*\* \(\d{1,3}%\)", lines[0]), lines
    assert re.fullmatch(r"`tell me a joke` → \*\*joke\*\* \(\d{1,3}%\)", lines[1]), lines
    assert len(lines) == 2 and reply["attachments"] == []
    single = await trained.ask_text('!test "see you later"')
    assert re.fullmatch(r"`see you later` → \*\*goodbye\*\* \(\d{1,3}%\)", single), single


async def test_test_with_labels_gives_accuracy_a_report_and_the_confusion_matrix(
    trained: E2E,
) -> None:
    data = (
        '[{"text": "hello", "label": "greeting"}, {"text": "tell me a joke", "label": "joke"},'
        ' {"text": "thank you so much", "label": "greeting"}]'
    )
    reply = await trained.ask(f"!test {data}")
    text = reply["content"]
    assert re.search(r"^`hello` → \*\*greeting\*\* \(\d+%\) ✓$", text, re.M), text
    assert re.search(
        r"^`thank you so much` → \*\*thanks\*\* \(\d+%\) ✗ expected greeting$", text, re.M
    )
    assert "**Accuracy: 66.7%** on 3 labelled items" in text
    assert "precision" in text and "macro avg" in text
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "confusion_matrix.png"
    assert trained.sandbox.file(attachment).startswith(b"\x89PNG\r\n\x1a\n")


async def test_test_with_an_attached_file(trained: E2E) -> None:
    data = b"text,label\nhow are you,how_are_you\nwhat is your name,name\nbye bye,goodbye\n"
    reply = await trained.ask("!test", files=[("check.csv", data)])
    assert "**Accuracy: 100.0%** on 3 labelled items" in reply["content"]
    assert "`what is your name` → **name**" in reply["content"]
    assert reply["attachments"][0]["filename"] == "confusion_matrix.png"


async def test_test_with_bad_json_says_what_is_wrong(e2e: E2E) -> None:
    text = await e2e.ask_text('!test ["hello", tell me]')
    assert text == (
        "Invalid test data format: Expecting value at line 1, column 11. Send a JSON string, a "
        'list of strings, or a list of objects with "text" and an optional "label".'
    )
    assert (await e2e.ask_text("!test {}")).startswith(
        'Invalid test data format: the data has no "text"'
    )


async def test_test_without_a_trained_model_says_how_to_train(e2e: E2E) -> None:
    # The sample's model ships trained, so it can be tested at once.
    assert (await e2e.ask_text('!test "hello"')).startswith("`hello` → **greeting**")
    datasets = e2e.server_dir() / "datasets"
    (datasets / "fresh.csv").write_bytes(b"text,label\na,x\nb,x\nc,y\nd,y\n")
    selected = await e2e.ask_text("!select_dataset fresh")
    assert selected == (
        "Dataset `fresh` selected (4 rows, 2 labels). It has no model yet: train it with "
        "`!train fresh`."
    )
    assert await e2e.ask_text('!test ["a"]') == (
        "No model is trained for dataset fresh yet. An admin can run `!train fresh`. "
        "Then try `!test` again."
    )


# ----- chat --------------------------------------------------------------------------------


async def test_chat_on_answers_at_once_with_the_sample_model_and_admits_when_unsure(
    e2e: E2E,
) -> None:
    assert (
        await e2e.ask_text("!chat on")
        == "Chat is on here: I answer plain messages in this channel."
    )
    sent = await e2e.sandbox.send("hello")
    # The sample's model ships trained: the server gets its own copy, nothing to learn first.
    [answer] = await e2e.replies(sent, 1)
    assert answer["content"] == GREETING
    assert answer["message_reference"]["message_id"] == sent["id"]
    assert (e2e.server_dir() / "models" / "smalltalk" / "v1.npz").is_file()
    assert await e2e.ask_text("!jobs") == "No jobs yet."
    assert await chat(e2e, "how are you doing") == (
        "I'm doing well, thank you for asking! How are you?"
    )
    assert await chat(e2e, "qwxz zzkv plomb") == NOT_SURE


async def test_a_three_label_model_says_when_it_does_not_know(e2e: E2E) -> None:
    await train(e2e, "!train", files=[("three_labels.csv", THREE_LABELS.read_bytes())])
    assert (await e2e.ask_text("!select_dataset three_labels")).startswith("Dataset `three")
    await e2e.ask_text("!chat on")
    gibberish, out_of_domain = "qwv zzkx plorf", "explain quantum chromodynamics"
    for text in (gibberish, out_of_domain, "what is the capital of mongolia"):
        assert await chat(e2e, text) == NOT_SURE, text
    assert await chat(e2e, "hey there, good morning") == "Hi! Ask me about the weather."
    assert await chat(e2e, "will it rain later today") == "Sunny all day."
    assert await chat(e2e, "see you tomorrow, bye") == "Bye! Take care."
    shown = await e2e.ask_text('!test ["what is the capital of mongolia", "is it raining"]')
    first, second = shown.splitlines()
    assert re.fullmatch(r"`what is the capital of mongolia` → \*\*\w+\*\* \(0%, not sure\)", first)
    assert re.fullmatch(r"`is it raining` → \*\*weather\*\* \(\d{2,3}%\)", second), second


async def test_with_chat_off_only_mentions_and_dms_get_replies(env: E2E) -> None:
    await train(env, "!train smalltalk")
    assert await env.ask_text("!chat off") == "Chat is off here: I answer only when mentioned."
    quiet = await env.sandbox.send("hello")
    mention = await env.ask(f"<@{env.sandbox.bot_user.id}> hello", timeout=TRAINING_TIMEOUT)
    assert mention["content"] == GREETING
    # DMs are the user's own namespace, with its own copy of the sample model.
    sent = await env.sandbox.send("hello", dm=True)
    [dm] = await env.replies(sent, 1)
    assert dm["content"] == GREETING and dm["channel_id"] != quiet["channel_id"]
    owner = env.sandbox.user("owner").id
    dm_models = env.bot.settings.data_dir / "servers" / f"dm-{owner}" / "models" / "smalltalk"
    assert (dm_models / "manifest.json").is_file()
    assert (await env.ask_text("!hi")).startswith("Hi owner!")
    answered = {
        m.get("message_reference", {}).get("message_id") for m in env.sandbox.bot_messages()
    }
    assert quiet["id"] not in answered


# ----- datasets and permissions ------------------------------------------------------------


async def test_select_dataset(e2e: E2E) -> None:
    assert await e2e.ask_text("!select_dataset smalltalk", author="member") == NO_PERMISSION
    assert await e2e.ask_text("!select_dataset nope") == (
        "Dataset `nope` not found. `!datasets` lists them."
    )
    assert await e2e.ask_text("!select_dataset ../../etc") == (
        "A dataset name must be 1 to 40 letters, digits, '_' or '-' (like smalltalk)."
    )
    (e2e.server_dir() / "datasets" / "menu.csv").write_bytes(MENU)
    assert (await e2e.ask_text("!select_dataset menu")).startswith(
        "Dataset `menu` selected (8 rows, 2 labels)."
    )
    listing = await e2e.ask_text("!datasets")
    assert "`menu`: 8 rows, 2 labels ← active here" in listing
    assert "`smalltalk` (sample): 147 rows, 16 labels\n" in listing + "\n"


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("!train", None),
        ("!train", [("menu.csv", MENU)]),
        ("!train garden\ncat | animal\ndog | animal\nrose | plant\ntulip | plant", None),
        ("!use_model v1", None),
        ("!chat on", None),
    ],
    ids=["train", "train-upload", "train-inline", "use_model", "chat"],
)
async def test_non_admin_is_refused(e2e: E2E, command: str, files: list | None) -> None:
    assert await e2e.ask_text(command, author="member", files=files) == NO_PERMISSION
    assert await e2e.ask_text("!jobs", author="member") == "No jobs yet."
    listing = await e2e.ask_text("!datasets", author="member")
    assert listing.splitlines()[1:] == ["`smalltalk` (sample): 147 rows, 16 labels ← active here"]


async def test_two_first_messages_at_once_start_one_training(e2e: E2E) -> None:
    (e2e.server_dir() / "datasets" / "menu.csv").write_bytes(MENU)
    assert (await e2e.ask_text("!select_dataset menu")).startswith("Dataset `menu` selected")
    await e2e.ask_text("!chat on")
    first, second = await asyncio.gather(
        e2e.sandbox.send("what food do you have"), e2e.sandbox.send("i am hungry", author="member")
    )
    await e2e.sandbox.wait_for_bot_message(
        after=first, predicate=lambda m: m["content"] == "Pizza is on the menu.", timeout=60
    )
    texts = [m["content"] for m in e2e.sandbox.bot_messages()]
    assert sum(bool(FIRST_TRAINING.fullmatch(t)) for t in texts) == 1
    assert "I'm still learning dataset `menu`; ask me again in a moment." in texts
    jobs = await e2e.ask_text("!jobs")
    assert jobs.count("train `menu`") == 1
