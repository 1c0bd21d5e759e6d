"""`python -m bot.sandbox` (the sandbox as its own process) and SANDBOX_URL's bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import SettingsError, load_settings
from bot.sandbox.runner import voice_ssl_of
from bot.sandbox.server import Sandbox
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def sandbox_process(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.sandbox", *args], cwd=ROOT, input=stdin,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_it_prints_its_url_serves_the_console_and_ends_with_the_input(tmp_path: Path) -> None:
    port = free_port()
    done = sandbox_process("--port", str(port), "--out-dir", str(tmp_path), stdin="/as carol\n")
    assert done.returncode == 0, done.stderr
    assert f"Sandbox at http://127.0.0.1:{port} (2 shard(s))" in done.stdout
    assert f"SANDBOX_URL=http://127.0.0.1:{port} SHARD_COUNT=2" in done.stdout
    assert "carol is not in Sandbox; choose from owner, moderator, member" in done.stdout
    assert done.stdout.rstrip().endswith("Bye.")


@pytest.mark.parametrize("args", [["--shards", "0"], ["--max-concurrency", "0"], ["--port", "-1"]])
def test_bad_options_get_one_line(args: list[str]) -> None:
    done = sandbox_process(*args)
    assert done.returncode == 2
    assert "must be 1 or more" in done.stderr and "Traceback" not in done.stderr


def test_a_taken_port_gets_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = sandbox_process("--port", str(taken.getsockname()[1]), "--out-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("The sandbox cannot start:") and "Traceback" not in done.stderr


async def test_it_serves_the_voice_ca_that_bots_in_other_processes_trust() -> None:
    async with Sandbox() as sandbox:
        context = await voice_ssl_of(sandbox.base_url)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"https://{sandbox.voice.endpoint}/", ssl=context) as response,
        ):
            assert response.status < 500  # the TLS handshake succeeded with the served CA


async def test_no_sandbox_at_the_url_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeError, match=f"no sandbox answers at SANDBOX_URL={url}"):
        await voice_ssl_of(url)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"SANDBOX_URL": "ws://127.0.0.1:1"}, "SANDBOX_URL: must start with http:// or https://"),
        ({"SANDBOX_URL": "127.0.0.1:1"}, "SANDBOX_URL: must start with http://"),
        (
            {"SANDBOX_URL": "http://127.0.0.1:1", "DISCORD_TOKEN": "x"},
            "SANDBOX_URL: only without DISCORD_TOKEN (it stands in for Discord)",
        ),
    ],
)
def test_bad_sandbox_urls_are_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(env, env_file=None)
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems


def test_a_sandbox_url_means_no_console_of_its_own() -> None:
    settings = load_settings({"SANDBOX_URL": "http://127.0.0.1:1/"}, env_file=None)
    assert settings.sandbox_url == "http://127.0.0.1:1" and not settings.console
    assert load_settings({}, env_file=None).console
