"""Event-loop lag of the bot while it works: `python -m bench.loop`.

The bot runs in a process of its own (`bench.bot_process`) with a 10 ms ticker in its event
loop; the sandbox and this driver run in the benchmark's process. So the figures are the
bot's alone: neither the sandbox's work nor the benchmark's data share the bot's loop or heap.

Scenarios, each timed from the user's first message to the bot's last reply:
- training a 100k-row, 10-label dataset (`!train big`) and activating it: the first chat
  message after the training loads the new model (the load included);
- four 30 s voice messages transcribed at once (whisper);
- speaking five sentences (`!say`, piper) in a voice channel;
- `!archive` of a 50 MB dataset;
- 50 `!feedback` at once.
Baseline in the same run: the idle bot, measured in the same process before the scenarios
(after its start-up warm-up of the speech engines has had time to finish).
Also: the bot's start → READY time. Idle memory is `bench.memory`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import string
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bot_process import INTERVAL, BotProcess
from bench.common import percentile, table
from bench.model import synthetic_rows
from bot.sandbox.server import Sandbox
from bot.services.model.datasets.parse import rows_to_csv

log = logging.getLogger(__name__)

MAX_TARGET_MS = 25.0
P99_TARGET_MS = 10.0
TIMEOUT = 180.0
ARCHIVE_MB = 50
FEEDBACKS = 50
TRANSCRIPTIONS = 4
SETTLE_S = 8.0
REPEATS = 2  # each scenario twice, in the same bot process: machine noise shows as a spread
TRAINING = "training 100k rows + activating the model"
SELECT = "`!select_dataset` of the 100k-row dataset (not one of the issue's scenarios)"
FIVE_SENTENCES = (
    "The weather today is calm and bright. A light breeze moves through the trees. "
    "People walk slowly along the river. Somewhere a dog is barking at a bird. "
    "In the evening the sky turns a soft orange."
)


@dataclass
class Window:
    name: str
    started: float
    ended: float
    note: str = ""

    def ticks(self, ticks: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
        """The ticks that went to sleep inside the window (a stall is counted by the tick
        it delayed, which wakes up after the stall)."""
        return [t for t in ticks if self.started <= t[0] - t[1] - INTERVAL <= self.ended]

    def lags_ms(self, ticks: list[tuple[float, ...]]) -> list[float]:
        return [t[1] * 1000 for t in self.ticks(ticks)]


def huge_csv(megabytes: int) -> bytes:
    """A dataset of about `megabytes` MB: varied short texts, 20 labels."""
    rng = random.Random(2)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(5000)]
    lines = ["text,label,reply"]
    size, target = 0, megabytes * 1024 * 1024
    while size < target:
        label = rng.randrange(20)
        line = f"{' '.join(rng.choices(words, k=rng.randint(4, 14)))},l{label},Reply {label}."
        lines.append(line)
        size += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def prepare(data_dir: Path) -> None:
    datasets = data_dir / "servers" / str(Sandbox.GUILD_ID) / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "big.csv").write_bytes(rows_to_csv(synthetic_rows()))
    (datasets / "huge.csv").write_bytes(huge_csv(ARCHIVE_MB))


async def timed(name: str, work: Callable[[], Awaitable[str | tuple[str, float]]]) -> Window:
    """Run one scenario; it returns a note, or a note and when it really ended."""
    started = time.monotonic()
    done = await work()
    note, ended = done if isinstance(done, tuple) else (done, time.monotonic())
    window = Window(name, started, ended, note)
    log.info("%s: %.1f s %s", name, window.ended - window.started, window.note)
    return window


def starts_with(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["content"].startswith(text)


async def select(sandbox: Sandbox) -> str:
    sent = await sandbox.send("!select_dataset big")
    reply = await sandbox.wait_for_bot_message(
        after=sent, predicate=starts_with("Dataset `big` selected"), timeout=TIMEOUT
    )
    await asyncio.sleep(0.5)  # what the command left behind (garbage) is collected meanwhile
    return reply["content"][:60]


async def train_and_activate(sandbox: Sandbox) -> str:
    sent = await sandbox.send("!train big")
    done = await sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "(train `big`): **" in m["content"], timeout=TIMEOUT
    )
    if "**done**" not in done["content"]:
        raise RuntimeError(done["content"])
    asked = await sandbox.send("hello there")
    await sandbox.wait_for_bot_message(after=asked, timeout=TIMEOUT)
    return done["content"].split("\n")[0]


def voice_message() -> bytes:
    from tests.fixtures import speech

    segment, _ = speech.sentences_for(30)
    return speech.voice_message(segment)


async def transcriptions(sandbox: Sandbox, data: bytes) -> str:
    authors = ["owner", "moderator", "member", "owner"]
    sent = [
        await sandbox.send(files=[("voice-message.ogg", data)], voice_message=True, author=a)
        for a in authors
    ]
    for message in sent:
        await sandbox.wait_for_bot_message(
            after=message,
            predicate=lambda m, ref=message["id"]: (
                m.get("message_reference", {}).get("message_id") == ref
                and "Transcript" in m["content"]
            ),
            timeout=TIMEOUT,
        )
    return f"{TRANSCRIPTIONS} voice messages of 30 s"


async def speaking(sandbox: Sandbox) -> tuple[str, float]:
    """`!say` five sentences; ends when the last of them has been played."""
    started = time.monotonic()
    await sandbox.send(f"!say {FIVE_SENTENCES}")
    heard: list[Any] = []
    quiet_since = time.monotonic()
    # Done when no new utterance has started for 3 s (sentences are separate utterances when
    # synthesis falls behind playback); the window ends with the last one.
    while not heard or time.monotonic() - quiet_since < 3.0:
        now = [u for u in sandbox.voice.utterances(Sandbox.GUILD_ID) if u.started_at >= started]
        if len(now) != len(heard):
            heard, quiet_since = now, time.monotonic()
        if time.monotonic() - started > TIMEOUT:
            raise TimeoutError("the bot said nothing")
        await asyncio.sleep(0.05)
    note = f"{sum(u.duration for u in heard):.1f} s of speech in {len(heard)} utterance(s)"
    return note, max(u.ended_at for u in heard)


async def archive(sandbox: Sandbox) -> str:
    sent = await sandbox.send("!archive huge")
    reply = await sandbox.wait_for_bot_message(after=sent, timeout=TIMEOUT)
    return reply["content"].split("\n")[0][:80]


async def feedback(sandbox: Sandbox) -> str:
    authors = ["owner", "moderator", "member"]
    sent = await asyncio.gather(
        *(sandbox.send(f"!feedback idea {i}", author=authors[i % 3]) for i in range(FEEDBACKS))
    )
    first = min(int(m["id"]) for m in sent)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        thanks = [
            m
            for m in sandbox.bot_messages()
            if int(m["id"]) > first and "Thank you" in m["content"]
        ]
        if len(thanks) >= FEEDBACKS:
            return f"{len(thanks)} replies"
        if loop.time() > deadline:
            raise TimeoutError(f"only {len(thanks)} feedback replies")
        await asyncio.sleep(0.02)


async def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        await asyncio.to_thread(prepare, data_dir)
        env = {
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING",
            "STT_ENGINES": "whisper",
            "TTS_ENGINES": "piper,espeak",
            "TRAIN_MAX_MB": "20",
            "MAX_SPOKEN_CHARS": "1000",
        }
        speech = await asyncio.to_thread(voice_message)
        async with (
            Sandbox() as sandbox,
            BotProcess(sandbox, env) as bot,
            BotProcess(None, {}) as probe,
        ):
            await asyncio.sleep(SETTLE_S)  # the engines' warm-up at start (WARM_UP) is done
            idle_started = time.monotonic()
            await asyncio.sleep(3)
            windows = [Window("idle bot (baseline)", idle_started, time.monotonic())]
            chat_on = await sandbox.send("!chat on")
            await sandbox.wait_for_bot_message(after=chat_on, timeout=TIMEOUT)
            await sandbox.join_voice("owner")
            windows.append(await timed(SELECT, lambda: select(sandbox)))
            scenarios: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                (TRAINING, lambda: train_and_activate(sandbox)),
                ("four transcriptions at once", lambda: transcriptions(sandbox, speech)),
                ("speaking five sentences", lambda: speaking(sandbox)),
                (f"`!archive` of a {ARCHIVE_MB} MB dataset", lambda: archive(sandbox)),
                (f"{FEEDBACKS} `!feedback` at once", lambda: feedback(sandbox)),
            ]
            for _ in range(REPEATS):
                for name, work in scenarios:
                    windows.append(await timed(name, work))
                    await asyncio.sleep(0.5)
            ticks = await bot.lags()
            collections = await bot.collections()
            probe_ticks = await probe.lags()
        return {
            "windows": windows,
            "ticks": ticks,
            "probe": probe_ticks,
            "collections": collections,
            "ready": bot.ready_seconds,
        }


def describe(window: Window, m: dict[str, Any]) -> tuple[float, float, str]:
    """(max, p99, where the worst tick's time went) of one window, and a log line."""
    ticks = window.ticks(m["ticks"])
    lags = [t[1] * 1000 for t in ticks]
    worst = max(ticks, key=lambda t: t[1], default=(0.0, 0.0, 0.0, 0.0))
    _, lag, loop, process = worst
    probe = max((t[1] * 1000 for t in window.ticks(m["probe"])), default=0.0)
    where = f"bot CPU {process * 1000:.0f} ms; idle probe's max {probe:.0f} ms"
    log.info(
        "%s: max %.1f ms (%s), %d ticks; slow collections %s",
        window.name,
        lag * 1000,
        where,
        len(ticks),
        [
            f"gen {gen} {took * 1000:.0f} ms at {at - window.started:.2f} s"
            for at, took, gen in m["collections"]
            if window.started <= at <= window.ended
        ],
    )
    return max(lags, default=0.0), percentile(lags, 99), where


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    m = asyncio.run(measure())
    by_name: dict[str, list[Window]] = {}
    for window in m["windows"]:
        by_name.setdefault(window.name, []).append(window)
    rows = []
    for name, windows in by_name.items():
        figures = [describe(window, m) for window in windows]
        maxima = " / ".join(f"{worst:.1f}" for worst, _, _ in figures)
        p99s = " / ".join(f"{p99:.1f}" for _, p99, _ in figures)
        wheres = "; ".join(where for _, _, where in figures)
        seconds = " / ".join(f"{w.ended - w.started:.1f}" for w in windows)
        scored = not (name.startswith("idle") or name == SELECT)
        passed = all(worst <= MAX_TARGET_MS and p99 <= P99_TARGET_MS for worst, p99, _ in figures)
        rows.append(
            (
                f"{name} ({seconds} s)",
                f"max ≤ {MAX_TARGET_MS:.0f} ms, p99 ≤ {P99_TARGET_MS:.0f} ms" if scored else "—",
                f"max {maxima} ms, p99 {p99s} ms ({wheres})",
                passed if scored else None,
            )
        )
    rows.append(
        ("bot start → READY (fresh process, sandbox running)", "—", f"{m['ready']:.2f} s", None)
    )
    notes = (
        "The bot runs in its own process (`bench/bot_process.py`) with a 10 ms ticker in its "
        "event loop; the sandbox and the driver run in the benchmark's process, so the lag is "
        "the bot's alone. Each scenario runs twice in the same bot process (figures: first / "
        "second run), from the first user message to the bot's last reply (training: `!train` "
        "→ job report → the first chat reply, which loads the new model; speaking: to the end "
        "of the last sentence played). In brackets, for each run: the CPU time the bot's "
        "process used while its worst tick was late (little CPU: the bot was waiting for a "
        "core, not working), and the worst lag of an idle probe process ticking at the same "
        "time (`python -m bench.bot_process probe`): what the machine's other processes cost "
        f"any process then. Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores."
    )
    return "## Event-loop lag of the bot process\n\n" + table(rows) + "\n\n" + notes


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    print(run())
