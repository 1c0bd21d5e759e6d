"""`python -m bot` with no token: the sandbox console, driven through its stdin like a user."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.services.storage import Storage
from tests.postgres import run_coroutine

REPO = Path(__file__).resolve().parents[2]


def console(data_dir: Path, database_url: str = "") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    env.update(
        DATA_DIR=str(data_dir), DISCORD_TOKEN="", LOG_LEVEL="WARNING", DATABASE_URL=database_url
    )
    return subprocess.Popen(
        [sys.executable, "-m", "bot"],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_console_answers_hi_and_quits_cleanly(tmp_path: Path) -> None:
    proc = console(tmp_path / "data")
    script = "!hi\n/as member\n!hi\n/upload tests/fixtures/none.ogg\n/nonsense\n"
    out, _ = proc.communicate(script, timeout=120)  # then end of input, like Ctrl-D
    assert proc.returncode == 0, out
    assert "Sandbox console" in out
    assert "bot: Hi owner! Type `!help` to see what I can do." in out
    assert "you are now member" in out
    assert "bot: Hi member!" in out
    assert "can't read tests/fixtures/none.ogg" in out
    assert "unknown console command" in out
    assert out.rstrip().endswith("Bye.")
    assert (tmp_path / "data" / "logs" / "bot.log").exists()


def test_bad_settings_are_reported_one_line_each(tmp_path: Path) -> None:
    env = dict(os.environ, DATA_DIR=str(tmp_path), MAX_AUDIO_MB="lots", COMMAND_PREFIX="")
    env.pop("DISCORD_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("The bot cannot start")
    assert any(line.strip().startswith("MAX_AUDIO_MB: is not a number") for line in lines)
    assert any(line.strip().startswith("COMMAND_PREFIX:") for line in lines)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acknowledged_feedback_survives_sigkill(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Kill the bot process mid-stream: every feedback it thanked for is in the database."""
    data = tmp_path / "data"
    database = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    proc = console(data, database)
    assert proc.stdin is not None and proc.stdout is not None
    for number in range(400):
        proc.stdin.write(f"!feedback durable note {number}\n")
    proc.stdin.flush()
    thanked = 0
    deadline = time.monotonic() + 120
    while thanked < 60 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "bot: Thank you for your feedback." in line:
            thanked += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert thanked >= 60
    assert _feedback_rows(database or data / "bot.db") >= thanked
    assert (data / "bot.db").exists() != bool(database)  # each backend holds the feedback


def _feedback_rows(location: str | Path) -> int:
    async def count() -> int:
        async with Storage(location) as storage:
            return len(await storage.list_feedback(None, limit=1_000_000))

    return run_coroutine(count())


def test_console_switches_between_the_two_servers(tmp_path: Path) -> None:
    proc = console(tmp_path / "data")
    script = (
        "/as alice\n/server second\n!hi\n/as member\n/as bob\n!feedback from second\n"
        "/server sandbox\n!hi\n!feedback list\n/server nowhere\n"
    )
    out, _ = proc.communicate(script, timeout=120)
    assert proc.returncode == 0, out
    assert "alice is not in Sandbox; choose from owner, moderator, member" in out
    assert "you are now alice in #general of Second" in out
    assert "bot: Hi alice!" in out
    assert "member is not in Second; choose from alice, bob" in out
    assert "you are now owner in #general of Sandbox" in out
    assert "bot: Hi owner!" in out
    assert "bot: There is no feedback yet." in out  # bob's feedback belongs to Second
    assert "no sandbox server 'nowhere'; choose from sandbox, second" in out


class Output:
    """The console's output, read line by line in a thread, so a wait can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        stdout = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stdout], daemon=True).start()

    def expect(self, text: str, timeout: float = 120) -> str:
        """Wait for a line that contains `text`; that line."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not in the console's output:\n{''.join(self.seen)}")


def typer(proc: subprocess.Popen[str]) -> Callable[[str], None]:
    """Type a line into the console."""

    def send(line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    return send


@contextlib.contextmanager
def typing_console(
    data_dir: Path,
) -> Iterator[tuple[subprocess.Popen[str], Output, Callable[[str], None]]]:
    """A console to type into and read from; killed at the end if it is still running."""
    proc = console(data_dir)
    assert proc.stdin is not None
    try:
        yield proc, Output(proc), typer(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_console_runs_slash_commands_menus_and_forms(tmp_path: Path) -> None:
    with typing_console(tmp_path / "data") as (proc, output, send):
        send("//hi")
        output.expect("bot: Hi owner! Type `/help` to see what I can do.")
        send("//train name:small?")
        output.expect("suggestions: smalltalk")
        send("/as member")
        send("//language code:fr")
        output.expect("bot (only you): You don't have permission to use this command.")
        send("!hi")
        line = output.expect("bot: Hi member! Type `!help`")
        message_id = line.split("]")[0].lstrip("[")
        send(f"/menu Correct this reply {message_id}")
        output.expect("bot opened the form “Correct this reply” (The right answer): /modal TEXT")
        send("/modal Hello, member!")
        output.expect("bot: Thanks, your correction is saved.")
        send("//transcribe file:tests/fixtures/hello.ogg")
        output.expect("bot is thinking…")
        output.expect("bot: **Transcript:**")
        send("//voice engine name:siri")
        output.expect("/voice engine name must be one of auto, gtts, piper, espeak")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        output.expect("Bye.")


def test_console_says_a_file_in_voice(tmp_path: Path) -> None:
    with typing_console(tmp_path / "data") as (proc, output, send):
        send("/voice say tests/fixtures/hello.wav")
        output.expect("the bot is not in the voice channel here; join it and send !join first")
        send("/voice join")
        send("!join")
        output.expect("bot: Joined **Voice**.")
        send("/voice say tests/fixtures/hello.wav as member")
        output.expect("member joined the voice channel")
        line = output.expect("member said tests/fixtures/hello.wav in voice (")
        assert float(line.split("(")[1].split(" s")[0]) > 0.3
        send("/voice say tests/fixtures/hello.wav as alice")
        output.expect("alice is not in Sandbox; choose from owner, moderator, member")
        send("/voice say tests/fixtures/none.wav")
        output.expect("can't read tests/fixtures/none.wav")
        send("/voice say tests/fixtures/three_labels.csv")
        output.expect("can't say tests/fixtures/three_labels.csv in voice")
        send("/voice say tests/fixtures/hello.wav with member")
        output.expect("usage: /voice say PATH [as NAME]")
        send("/help")
        output.expect("/voice say PATH [as NAME]")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        output.expect("Bye.")


def test_console_tries_what_read_aloud_reads(tmp_path: Path) -> None:
    """Nicknames, a voice channel's text chat, edits, deletions and webhooks, against the bot."""
    with typing_console(tmp_path / "data") as (proc, output, send):
        send("/nick Boss")
        output.expect("owner is now called Boss in Sandbox")
        send("!hi")
        output.expect("bot: Hi Boss! Type `!help`")
        send("/vc !hi")
        output.expect("(voice chat) owner: !hi")
        output.expect("(voice chat) bot: Hi Boss!")  # the bot answered in the voice chat
        send("/nick off")
        output.expect("owner has no nickname in Sandbox now")
        send("typo here")
        message_id = output.expect("owner: typo here").split("]")[0].lstrip("[")
        send(f"/edit {message_id} fixed here")
        output.expect(f"[{message_id}] owner: (edited) fixed here")
        send(f"/delete {message_id}")
        output.expect(f"owner deleted message {message_id}")
        send("/webhook news from a feed")
        output.expect("webhook: news from a feed")
        send("/help")
        output.expect("/nick NAME|off")
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
        output.expect("Bye.")
