"""The English path before and after issue 19: `python -m bench english`.

Issue 19 brought multilingual whisper, engines chosen by language and a per-server language
lookup on every recording and spoken reply. For an English server (LANGUAGE=en-US), this
measures the current tree against BASELINE_REF, in the same run:

- a 10 s voice message → its transcript reply, bot running with its models loaded (as the
  warm figure of bench.stream);
- `!say` of a sentence → the first voice packet in the sandbox's voice channel (piper, as
  bench.voice);
- `!hi` → its reply (as bench.hi).

Settings: STT_ENGINES=whisper, TTS_ENGINES=piper,espeak (piper speaks English in both trees),
WARM_UP=on and awaited, chat off (the default); spoken replies off (`!voice autospeak off`),
or the user in voice for `!say` would hear every transcript and `!hi` reply read aloud.

Each tree runs in a child process (`python -m bench.english child OUT VOICE`) whose working
directory is the tree, so `import bot` there is that tree's code; the baseline is a detached
git worktree, removed afterwards. The parent alternates the two trees for ROUNDS rounds so
that noise on the machine falls on both alike, and every child sends the same voice message
(made once by the parent). The child's code is this file alone (copied into the worktree's
bench/) and uses only what both trees have: the sandbox, `sandboxed_bot` and settings.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# main before issue 19 (multilingual whisper, language-aware engines, per-server language
# lookups): the last commit before that work.
BASELINE_REF = "373c5fc"
REPO = Path(__file__).resolve().parents[1]
ROUNDS = 4  # each tree runs this many children, alternating
VOICE_SECONDS = 10
# In each child, after one unmeasured go of each figure: REPEATS times a voice message, a
# `!say` and HI_PER_REPEAT `!hi`s, so the three figures interleave.
REPEATS = 5
HI_PER_REPEAT = 25
HI_WARMUP = 10
SENTENCE = "Hello there, nice to meet you."
CHILD_TIMEOUT_S = 240
# "Within noise": the current p50 at most 10 % over the baseline's, or over it by no more
# than the noise measured in the same run: the gap between the highest and lowest p50 of the
# baseline's own rounds (the same code, run alternately with the current tree). On a quiet
# machine that gap is small and 10 % decides; on a busy one, children of the same code differ
# by more than 10 % (the p50 of 12 `!say`s: 109 to 183 ms in one trial), and a fixed ratio
# would report the machine, not the code.
MAX_RATIO = 1.10
FIGURES = {
    "voice": f"{VOICE_SECONDS} s voice message → transcript reply, warm",
    "say": "`!say` → first voice packet (piper)",
    "hi": "`!hi` → reply",
}
Samples = dict[str, list[float]]


# --- the child: runs in the tree measured, imports only from that tree -------------------


def child_settings(folder: str):  # type: ignore[no-untyped-def]
    from bot.config import load_settings

    return load_settings(
        {
            "DATA_DIR": folder,
            "LANGUAGE": "en-US",
            "STT_ENGINES": "whisper",
            "TTS_ENGINES": "piper,espeak",
            "LOG_LEVEL": "WARNING",
            "WARM_UP": "on",
            "SAY_REFILL_SECONDS": "0",
        },
        env_file=None,
    )


async def reply_time(sandbox, voice: bytes) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    sent = await sandbox.send(files=[("voice.ogg", voice)], voice_message=True)
    reply = await sandbox.wait_for_bot_message(after=sent, timeout=120)
    assert reply["content"].startswith("**Transcript:**"), reply["content"]
    return time.perf_counter() - started


async def say_time(sandbox, bot, text: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds from sending `!say text` to the first packet of what the bot said."""
    started = time.monotonic()
    await sandbox.send(f"!say {text}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (
        heard := [u for u in sandbox.voice.utterances(sandbox.GUILD_ID) if u.started_at >= started]
    ):
        if loop.time() > deadline:
            raise TimeoutError("the bot said nothing")
        await asyncio.sleep(0.01)
    await bot.get_cog("Voice").queue.wait_idle(sandbox.GUILD_ID)
    await asyncio.sleep(0.6)  # let the sandbox close the last utterance
    return heard[0].started_at - started


async def hi_times(sandbox, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(count):
        started = time.perf_counter()
        sent = await sandbox.send("!hi")
        await sandbox.wait_for_bot_message(after=sent, timeout=10)
        times.append(time.perf_counter() - started)
    return times


async def measure(voice: bytes) -> Samples:
    from bot.sandbox.runner import sandboxed_bot

    samples: Samples = {name: [] for name in FIGURES}
    with tempfile.TemporaryDirectory() as folder:
        async with sandboxed_bot(child_settings(folder)) as (sandbox, bot):
            if bot.warming is not None:
                await bot.warming
            # Replies spoken aloud to a user in voice would queue before the `!say`s; as in
            # bench.stream and bench.hi, the voice message and `!hi` are answered in text only.
            off = await sandbox.send("!voice autospeak off")
            await sandbox.wait_for_bot_message(after=off, timeout=10)
            await sandbox.join_voice("owner")
            await reply_time(sandbox, voice)
            await say_time(sandbox, bot, SENTENCE)  # also joins the voice channel
            await hi_times(sandbox, HI_WARMUP)
            for _ in range(REPEATS):
                samples["voice"].append(await reply_time(sandbox, voice))
                samples["say"].append(await say_time(sandbox, bot, SENTENCE))
                samples["hi"] += await hi_times(sandbox, HI_PER_REPEAT)
    return samples


def child(out: Path, voice: Path) -> None:
    import logging

    import bot

    logging.getLogger("discord").setLevel(logging.WARNING)
    samples = asyncio.run(measure(voice.read_bytes()))
    out.write_text(json.dumps({"bot": bot.__file__, "samples": samples}), encoding="utf-8")


# --- the parent: the worktree, the alternating children, the table -----------------------


def run_child(tree: Path, voice: Path) -> tuple[str, Samples]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "samples.json"
        done = subprocess.run(
            [sys.executable, "-m", "bench.english", "child", str(out), str(voice)],
            cwd=tree,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"the child in {tree} failed:\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text(encoding="utf-8"))
    return result["bot"], result["samples"]


def baseline_worktree(folder: Path) -> Path:
    """BASELINE_REF checked out at `folder`, with this file in its bench/."""
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), BASELINE_REF],
        check=True,
        capture_output=True,
    )
    shutil.copyfile(Path(__file__), folder / "bench" / "english.py")
    return folder


def remove_worktree(folder: Path) -> None:
    removed = subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
        check=False,
        capture_output=True,
    )
    if removed.returncode != 0:  # never added, or its folder already gone
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=False)


def voice_message(folder: Path) -> Path:
    from tests.fixtures import speech

    clip, _ = speech.sentences_for(VOICE_SECONDS)
    path = folder / "voice.ogg"
    path.write_bytes(speech.voice_message(clip))
    return path


def compare(trees: dict[str, Path], voice: Path) -> dict[str, list[Samples]]:
    """Per tree, the samples of each of its ROUNDS children, the two trees alternating."""
    rounds: dict[str, list[Samples]] = {name: [] for name in trees}
    for number in range(ROUNDS):
        # Who goes first alternates too, so neither tree always runs on a cooler machine.
        order = list(trees) if number % 2 == 0 else list(reversed(trees))
        for name in order:
            imported, samples = run_child(trees[name], voice)
            if not Path(imported).resolve().is_relative_to(trees[name].resolve()):
                raise RuntimeError(f"the {name} child imported bot from {imported}")
            if number == 0:
                print(f"  {name}: bot from {imported}", file=sys.stderr, flush=True)
            rounds[name].append(samples)
    return rounds


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


def _round_p50s(runs: list[Samples], figure: str) -> list[float]:
    from bench.common import median

    return [median(samples[figure]) for samples in runs]


def _spread(runs: list[Samples], figure: str) -> float:
    p50s = _round_p50s(runs, figure)
    return max(p50s) - min(p50s)


def _rounds(runs: list[Samples], figure: str) -> str:
    p50s = _round_p50s(runs, figure)
    return f"rounds {_ms(min(p50s))}–{_ms(max(p50s))}"


def rows(rounds: dict[str, list[Samples]]):  # type: ignore[no-untyped-def]
    from bench.common import median

    table_rows = []
    for figure, label in FIGURES.items():
        now = [v for samples in rounds["current"] for v in samples[figure]]
        then = [v for samples in rounds["baseline"] for v in samples[figure]]
        ratio = median(now) / median(then)
        difference = median(now) - median(then)
        noise = _spread(rounds["baseline"], figure)
        within = ratio <= MAX_RATIO or difference <= noise
        table_rows += [
            (
                f"{label}, p50, current",
                "—",
                f"{_ms(median(now))} ({len(now)}; {_rounds(rounds['current'], figure)})",
                None,
            ),
            (
                f"{label}, p50, baseline ({BASELINE_REF})",
                "—",
                f"{_ms(median(then))} ({len(then)}; {_rounds(rounds['baseline'], figure)})",
                None,
            ),
            (
                f"{label}: current ÷ baseline",
                f"≤ {MAX_RATIO:.2f} or ≤ +{_ms(noise)} (noise)",
                f"{ratio:.2f} ({'+' if difference >= 0 else '−'}{_ms(abs(difference))})",
                within,
            ),
        ]
    return table_rows


def run() -> str:
    from bench.common import table

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        voice = voice_message(folder)
        worktree = folder / "baseline"
        try:
            trees = {"current": REPO, "baseline": baseline_worktree(worktree)}
            rounds = compare(trees, voice)
        finally:
            remove_worktree(worktree)
    return "\n".join(
        [
            "## The English path before and after issue 19",
            "",
            f"An en-US server, whisper tiny.en, piper; the current tree against {BASELINE_REF} "
            f"(before issue 19) in a git worktree, each in its own process, alternating for "
            f"{ROUNDS} rounds; per child {REPEATS} voice messages, {REPEATS} `!say`s and "
            f"{REPEATS * HI_PER_REPEAT} `!hi`s, interleaved, after one unmeasured go of each. "
            f"In brackets: the count of samples, and the lowest and highest p50 of a tree's "
            f"rounds. Within noise: the current p50 at most {MAX_RATIO - 1:.0%} over the "
            f"baseline's, or over it by no more than the noise of this run, the gap between the "
            f"highest and lowest p50 of the baseline's own rounds.",
            "",
            table(rows(rounds)),
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(run())
