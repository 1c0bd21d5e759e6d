"""Listening end to end: the bot (a process of its own) hears users speak in the sandbox.

- end of a 5 s utterance → its caption posted (what a reader waits for);
- end of a wake-word utterance → the first voice packet of the spoken answer;
- event-loop lag of the bot while four users speak at once for a minute (baseline: idle in
  voice, same run);
- RSS the bot gains by listening: before `!listen on`, with whisper, piper and the chat model
  loaded and the four speakers' clips already transcribed as uploaded voice messages (the
  speech engine's own working memory is the same either way), against after the minute of
  four speakers once all their captions are posted (as the baseline is taken once the
  uploads' transcripts are). Also shown: RSS when the minute ends, while whisper still works
  through its two-minute backlog (8 utterances of 30 s, 2 at a time), and the highest RSS
  sampled from the minute's start to its last caption, beside the highest while the uploads
  were transcribed (what transcription needs, heard or uploaded).

Users' audio is espeak-ng (whisper hears it reliably; the wake word is matched by sound).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import subprocess
import tempfile
import time
import wave

from bench.bot_process import BotProcess
from bench.common import median, percentile, table
from bot.sandbox.server import Sandbox
from bot.sandbox.world import SandboxUser

RUNS = 5
CROWD_SECONDS = 60.0
GUILD = Sandbox.GUILD_ID
SPEAKERS = ("owner", "moderator", "member", "guest")
FIVE_SECONDS = "The weather today is calm and bright, and people walk slowly along the river."
WAKE = "Hey bot, how are you?"
CROWD_TEXTS = (
    "In spring the tulips come up first, red and yellow, along the old stone wall.",
    "Ships passed far away on the horizon and none of them ever stopped at the island.",
    "My neighbour takes the extra vegetables to the market every Saturday morning.",
    "Every evening he climbed the long staircase and lit the lamp at the top.",
)
TARGET_CAPTION = 1.0
TARGET_ANSWER = 1.5
TARGET_LAG_MS = 20.0
TARGET_RSS_MB = 50.0


def espeak(text: str, pause_ms: int = 0, repeat_to: float = 0.0) -> bytes:
    """`text` spoken by espeak-ng as WAV bytes; repeated (with pauses) to `repeat_to` seconds."""
    clip = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(clip)) as source:
        rate, pcm = source.getframerate(), source.readframes(source.getnframes())
    pause = bytes(rate * pause_ms // 1000 * 2)
    whole = pcm
    while len(whole) / (2 * rate) < repeat_to:
        whole += pause + pcm
    out = io.BytesIO()
    with wave.open(out, "wb") as sink:
        sink.setnchannels(1)
        sink.setsampwidth(2)
        sink.setframerate(rate)
        sink.writeframes(whole)
    return out.getvalue()


def seconds(wav_bytes: bytes) -> float:
    with wave.open(io.BytesIO(wav_bytes)) as source:
        return source.getnframes() / source.getframerate()


def add_guest(sandbox: Sandbox) -> None:
    """A fourth person in the first server, for four speakers at once (this run only)."""
    world = sandbox.world
    world.users["guest"] = SandboxUser(1_100_000_000_000_000_299, "guest")
    home = world.guilds["sandbox"]
    world.guilds["sandbox"] = dataclasses.replace(home, members=(*home.members, "guest"))


async def say(sandbox: Sandbox, who: str, audio: bytes) -> float:
    """Speak; the monotonic time the audio ended (before the five closing silence frames)."""
    await sandbox.speak(who, audio)
    return time.monotonic() - 0.1


async def caption_after(sandbox: Sandbox, after: dict, who: str) -> tuple[dict, float]:
    message = await sandbox.wait_for_bot_message(
        after=after, predicate=lambda m: m["content"].startswith(f"**{who}:**"), timeout=60
    )
    return message, time.monotonic()


async def spoken_after(sandbox: Sandbox, since: float) -> float:
    """When the bot's first voice packet after `since` went out (waits for that utterance)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        later = [u for u in sandbox.voice.utterances(GUILD) if u.started_at >= since]
        if later:
            return later[0].started_at
        await asyncio.sleep(0.01)
    said = [m["content"][:80] for m in sandbox.bot_messages()][-4:]
    raise TimeoutError(f"the bot did not answer out loud; its last messages: {said}")


def lag_ms(ticks: list[tuple[float, ...]], start: float, end: float) -> tuple[float, float]:
    lags = [tick[1] for tick in ticks if start <= tick[0] <= end]
    return percentile(lags, 99) * 1000, max(lags, default=0.0) * 1000


class Peak:
    """The bot's highest RSS, sampled every half second while `sample` runs."""

    def __init__(self, bot: BotProcess) -> None:
        self.bot = bot
        self.mb = 0.0

    async def sample(self) -> None:
        while True:
            self.mb = max(self.mb, (await self.bot.heap())["VmRSS"])
            await asyncio.sleep(0.5)


async def all_captioned(bot: BotProcess, timeout: float = 300) -> float:
    """When the bot had no utterance left to caption (it posts them in the order spoken)."""
    deadline = time.monotonic() + timeout
    while (pending := await bot.pending()) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    if pending:
        raise TimeoutError(f"{pending} utterances still not captioned after {timeout:.0f} s")
    return time.monotonic()


async def measure() -> dict[str, object]:
    five = espeak(FIVE_SECONDS)
    wake = espeak(WAKE)
    crowd = [espeak(t, 400, CROWD_SECONDS) for t in CROWD_TEXTS]
    figures: dict[str, object] = {"five_seconds": seconds(five)}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": tmp, "LOG_LEVEL": "WARNING", "STT_ENGINES": "whisper"}
        env["TTS_ENGINES"] = "piper"
        sandbox = Sandbox()
        add_guest(sandbox)
        async with sandbox, BotProcess(sandbox, env) as bot:
            for who in SPEAKERS:
                await sandbox.join_voice(who)
            last = await sandbox.send("!join")
            last = await sandbox.wait_for_bot_message(after=last, timeout=60)
            last = await sandbox.send(f"<@{sandbox.bot_user.id}> hello")  # loads the chat model
            last = await sandbox.wait_for_bot_message(after=last, timeout=60)
            await asyncio.sleep(8)  # warm-up (whisper, piper) and the spoken reply are done
            # The baseline has done the same speech work without listening: the crowd's four
            # clips uploaded as voice messages at once and transcribed. What is left is what
            # listening itself costs (receiving, decoding, segmenting, its queue).
            # The four at once, as the crowd will speak (30 s clips: a minute-long one would
            # stream its transcript and still be working when the wait ends).
            upload_peak = Peak(bot)
            sampling = asyncio.create_task(upload_peak.sample())
            sent = [
                await sandbox.send(files=[(f"{who}.wav", espeak(text, 400, 30.0))], author=who)
                for who, text in zip(SPEAKERS, CROWD_TEXTS, strict=True)
            ]
            for upload in sent:
                await sandbox.wait_for_bot_message(
                    after=upload,
                    predicate=lambda m, upload=upload: (
                        "Transcript" in m["content"]
                        and (m.get("message_reference") or {}).get("message_id") == upload["id"]
                    ),
                    timeout=180,
                )
            sampling.cancel()
            await asyncio.sleep(5)  # its chat answers are posted and spoken
            idle_start = time.monotonic()
            await asyncio.sleep(5)
            figures["idle_lag"] = lag_ms(await bot.lags(), idle_start, time.monotonic())
            figures["rss_before"] = await bot.rss()
            figures["rss_upload_peak"] = upload_peak.mb

            last = await sandbox.send("!listen on")
            last = await sandbox.wait_for_bot_message(after=last, timeout=60)
            await say(sandbox, "owner", wake)  # warm: the first recognition, the first answer
            last, _ = await caption_after(sandbox, last, "owner")
            await spoken_after(sandbox, time.monotonic() - 5)
            await asyncio.sleep(3)

            captions = []
            for _ in range(RUNS):
                ended = await say(sandbox, "owner", five)
                last, posted = await caption_after(sandbox, last, "owner")
                captions.append(posted - ended)
                await asyncio.sleep(0.5)
            figures["caption"] = captions
            figures["rss_captions"] = await bot.rss()

            answers = []
            for _ in range(RUNS):
                ended = await say(sandbox, "owner", wake)
                answers.append(await spoken_after(sandbox, ended) - ended)
                last, _ = await caption_after(sandbox, last, "owner")
                await asyncio.sleep(1.0)  # the answer is spoken to its end
            figures["answer"] = answers
            figures["rss_answers"] = await bot.rss()

            peak = Peak(bot)
            sampling = asyncio.create_task(peak.sample())
            crowd_start = time.monotonic()
            await asyncio.gather(
                *(sandbox.speak(w, a) for w, a in zip(SPEAKERS, crowd, strict=True))
            )
            crowd_end = time.monotonic()
            figures["crowd_lag"] = lag_ms(await bot.lags(), crowd_start, crowd_end)
            figures["crowd_seconds"] = crowd_end - crowd_start
            figures["rss_crowd_end"] = await bot.rss()
            figures["crowd_captioned_after"] = await all_captioned(bot) - crowd_end
            sampling.cancel()
            figures["rss_peak"] = peak.mb
            figures["captions_posted"] = sum(
                m["content"].startswith("**") for m in sandbox.bot_messages()
            )
            figures["rss_after"] = await bot.rss()
    return figures


def run() -> str:
    logging.getLogger("discord").setLevel(logging.WARNING)
    f = asyncio.run(measure())
    caption, answer = f["caption"], f["answer"]
    idle_p99, idle_max = f["idle_lag"]
    crowd_p99, crowd_max = f["crowd_lag"]
    added = f["rss_after"] - f["rss_before"]
    rows = [
        (
            f"end of a {f['five_seconds']:.1f} s utterance → caption posted, p50",
            f"≤ {TARGET_CAPTION} s",
            f"{median(caption):.2f} s",
            median(caption) <= TARGET_CAPTION,
        ),
        ("same, max", "—", f"{max(caption):.2f} s", None),
        (
            "end of “hey bot, how are you” → first voice packet of the answer, p50",
            f"≤ {TARGET_ANSWER} s",
            f"{median(answer):.2f} s",
            median(answer) <= TARGET_ANSWER,
        ),
        ("same, max", "—", f"{max(answer):.2f} s", None),
        ("event-loop lag p99, idle in voice (baseline)", "—", f"{idle_p99:.1f} ms", None),
        (
            f"event-loop lag p99, four users speaking at once for {f['crowd_seconds']:.0f} s",
            f"≤ {TARGET_LAG_MS:.0f} ms",
            f"{crowd_p99:.1f} ms",
            crowd_p99 <= TARGET_LAG_MS,
        ),
        ("same, max", "—", f"{crowd_max:.1f} ms", None),
        ("captions posted in the whole run", "—", str(f["captions_posted"]), None),
        (
            "RSS before `!listen on` (models loaded, the same audio transcribed from uploads)",
            "—",
            f"{f['rss_before']:.0f} MB",
            None,
        ),
        (
            "highest RSS while the uploads were transcribed (before `!listen on`)",
            "—",
            f"{f['rss_upload_peak']:.0f} MB",
            None,
        ),
        (
            "RSS after the 5 captions, after the 5 spoken answers",
            "—",
            f"{f['rss_captions'] - f['rss_before']:+.0f} MB, "
            f"{f['rss_answers'] - f['rss_before']:+.0f} MB",
            None,
        ),
        (
            "last caption of the four speakers posted, after the minute ends",
            "—",
            f"{f['crowd_captioned_after']:.0f} s",
            None,
        ),
        (
            "RSS added at the end of the minute (their captions still being made); highest RSS",
            "—",
            f"{f['rss_crowd_end'] - f['rss_before']:+.0f} MB; {f['rss_peak']:.0f} MB",
            None,
        ),
        (
            "RSS added by listening (after the four speakers, their captions posted)",
            f"≤ {TARGET_RSS_MB:.0f} MB",
            f"{added:+.0f} MB",
            added <= TARGET_RSS_MB,
        ),
    ]
    return f"## Listening in voice ({RUNS} runs each; users' voice: espeak-ng)\n\n" + table(rows)


if __name__ == "__main__":
    print(run())
