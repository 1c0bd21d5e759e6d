"""The bot as a cluster, as scripts/cluster.sh runs it: a real PostgreSQL and Redis, two bot
processes (`python -m bot` with SANDBOX_URL, shard 0 and shard 1 of 2, each its own DATA_DIR)
and two workers (`python -m bot worker`), each serving its metrics on its own METRICS_PORT,
and a real Prometheus scraping them all. The sandbox lives in this test process, so the
tests act as its users. The cluster starts once for the module; the tests run in order (the
last two kill processes)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio

from bot import metrics
from bot.sandbox.server import Sandbox
from bot.sandbox.world import GUILDS, SandboxGuild
from bot.services.speech import audio
from tests.fixtures.recordings import recordings
from tests.postgres import PostgresServer
from tests.processes import free_port
from tests.prometheus_server import PrometheusServer
from tests.redis_server import RedisServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
IDLE_TIMEOUT = 10  # s before a dead worker's task goes to the other worker
START_TIMEOUT = 90.0
ANSWER_TIMEOUT = 60.0
RAN = re.compile(r"ran (?P<command>[\w ]+) in server (?P<guild>\d+) ")
TASK_DONE = re.compile(r"task (?P<job>\w+) \(transcribe\) done")
TASK_STARTED = re.compile(r"task (?P<job>\w+) \(transcribe\) started")
SCRAPED_TIMEOUT = 30.0  # Prometheus scrapes every second
T = TypeVar("T")


class Process:
    """A `python -m bot ...` subprocess whose output goes to a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.metrics_port = free_port()
        self.name, self.args = name, args
        self.env = env | {"METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(self.metrics_port)}
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", *self.args], cwd=ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> None:
        await until(lambda: pattern in self.text(), timeout, f"{self.name}: {pattern!r}", self)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def until(
    check: Callable[[], bool], timeout: float, what: str, process: Process | None = None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if process is not None and process.process and process.process.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.text()[-3000:]}")
        assert loop.time() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.1)


async def settles(read: Callable[[], T], ok: Callable[[T], bool], what: str,
                  timeout: float = SCRAPED_TIMEOUT) -> T:  # fmt: skip
    """`read()` (blocking: run in a thread) once `ok` holds for its value; fails with the last
    value read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ok(value := await asyncio.to_thread(read)):
        assert loop.time() < deadline, f"not in time: {what}; last seen: {value}"
        await asyncio.sleep(0.5)
    return value


class Cluster:
    def __init__(self, sandbox: Sandbox, bots: list[Process], workers: list[Process],
                 prometheus: PrometheusServer) -> None:  # fmt: skip
        self.sandbox = sandbox
        self.bots = bots
        self.workers = workers
        self.prometheus = prometheus

    def bot_of(self, guild: SandboxGuild) -> Process:
        """The bot process whose shard serves `guild`."""
        return self.bots[(guild.id >> 22) % len(self.bots)]

    def served(self, process: Process) -> list[tuple[str, int]]:
        """(command, server id) of every command this bot process ran."""
        return [(m["command"], int(m["guild"])) for m in RAN.finditer(process.text())]

    def transcribed(self) -> dict[str, list[str]]:
        """Worker name -> ids of the transcription tasks it finished."""
        return {w.name: TASK_DONE.findall(w.text()) for w in self.workers}

    async def replies(self, sent: dict[str, Any], predicate: Callable[[dict], bool] = bool,
                      timeout: float = ANSWER_TIMEOUT) -> list[dict[str, Any]]:  # fmt: skip
        """Bot messages replying to `sent` that match, once the first has arrived."""

        def matches(m: dict[str, Any]) -> bool:
            reference = (m.get("message_reference") or {}).get("message_id")
            return reference == sent["id"] and predicate(m)

        await self.sandbox.wait_for_bot_message(
            after=sent, channel_id=int(sent["channel_id"]), predicate=matches, timeout=timeout
        )
        return [m for m in self.sandbox.bot_messages(int(sent["channel_id"])) if matches(m)]

    async def ask(self, text: str, guild: SandboxGuild, author: str | None = None,
                  **send: Any) -> dict[str, Any]:  # fmt: skip
        sent = await self.sandbox.send(
            text, author=author or guild.owner, channel_id=guild.text_channel_id, **send
        )
        return await self.sandbox.wait_for_bot_message(
            after=sent, channel_id=guild.text_channel_id, timeout=ANSWER_TIMEOUT
        )


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    env.pop("DISCORD_TOKEN", None)
    env.update(
        INSTRUCTIONS_FILE=str(ROOT / "instructions" / "bot_instruction.md"),
        STT_ENGINES="whisper",
        TTS_ENGINES="piper,espeak",
        WORKER_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT),
        LOG_LEVEL="DEBUG",  # the bots log each command they ran, with its server
    )
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    logs = tmp / "logs"
    logs.mkdir()
    database = postgres_server.create_database()
    redis = RedisServer.start()
    processes: list[Process] = []
    prometheus: PrometheusServer | None = None
    try:
        async with Sandbox(shard_count=2, max_concurrency=1, out_dir=tmp / "voice") as sandbox:
            env = base_env(tmp) | {
                "DATABASE_URL": database,
                "REDIS_URL": redis.url(0),
                "TASK_BROKER_URL": redis.url(1),
            }
            migrate = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "bot", "db", "upgrade"], cwd=ROOT,
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert migrate.returncode == 0, migrate.stderr
            workers = [
                Process(f"worker-{n}", ["worker"], env | {"DATA_DIR": str(tmp / f"w{n}")}, logs)
                for n in (1, 2)
            ]
            bots = [
                Process(f"bot-{shard}", [], env | {
                    "SANDBOX_URL": sandbox.base_url, "SHARD_COUNT": "2",
                    "SHARD_IDS": str(shard), "DATA_DIR": str(tmp / f"bot-{shard}"),
                    "WARM_UP": "off",
                }, logs)
                for shard in (0, 1)
            ]  # fmt: skip
            processes += workers + bots
            prometheus = await asyncio.to_thread(
                PrometheusServer.start, {p.name: f"127.0.0.1:{p.metrics_port}" for p in processes}
            )
            for process in processes:
                await process.wait_for("worker ready" if "worker" in process.name else "is ready")
            yield Cluster(sandbox, bots, workers, prometheus)
            for process in processes:
                await asyncio.to_thread(process.stop)
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
        if prometheus is not None:
            prometheus.stop()
        redis.stop()
        postgres_server.drop_database(database)


async def test_each_server_is_answered_by_exactly_one_process(cluster: Cluster) -> None:
    sent = {g.id: await cluster.sandbox.send("!hi", author=g.owner) for g in GUILDS}
    for guild in GUILDS:
        [reply] = await cluster.replies(sent[guild.id])
        assert reply["content"].startswith(f"Hi {guild.owner}!"), reply["content"]
    # A second round answered means a late duplicate of the first would have come already.
    for guild in GUILDS:
        await cluster.ask("!hi", guild)
    for guild in GUILDS:
        assert len(await cluster.replies(sent[guild.id])) == 1
        await until(lambda g=guild: ("hi", g.id) in cluster.served(cluster.bot_of(g)), 10, "log")
        others = [b for b in cluster.bots if b is not cluster.bot_of(guild)]
        assert all(("hi", guild.id) not in cluster.served(b) for b in others), guild.name
    assert sorted(cluster.sandbox.ready_shards) == [(0, 2), (1, 2)]
    assert cluster.sandbox.logins.refused == []


async def test_voice_messages_in_every_server_are_transcribed_by_the_workers(
    cluster: Cluster,
) -> None:
    voice = (FIXTURES / "hello.ogg").read_bytes()
    before = sum(len(done) for done in cluster.transcribed().values())
    sent = [
        await cluster.sandbox.send(author=g.owner, channel_id=g.text_channel_id,
                                   files=[("voice-message.ogg", voice)], voice_message=True)
        for g in GUILDS
    ]  # fmt: skip
    for message in sent:
        [reply] = await cluster.replies(message, lambda m: "Transcript" in m["content"])
        text = reply["content"].lower()
        assert reply["content"].startswith("**Transcript:** ") and "hello world" in text, text
    done = cluster.transcribed()
    assert sum(len(ids) for ids in done.values()) == before + len(GUILDS), done


async def test_prometheus_scrapes_every_process_and_sees_commands_and_transcriptions(
    cluster: Cluster,
) -> None:
    """The operator's view (issue #21): every process is a target that is up and ready, and
    what users do shows in Prometheus' queries."""
    prometheus = cluster.prometheus
    processes = cluster.bots + cluster.workers

    def health() -> dict[str, str]:
        return {
            t["labels"]["process"]: t["health"] + (f" ({t['lastError']})" if t["lastError"] else "")
            for t in prometheus.targets()
        }  # fmt: skip

    everyone_up = {p.name: "up" for p in processes}
    await settles(health, lambda h: h == everyone_up, "every process's target is up")
    async with aiohttp.ClientSession() as http:
        for process in processes:
            for path in ("/healthz", "/readyz"):
                url = f"http://127.0.0.1:{process.metrics_port}{path}"
                async with http.get(url) as answer:
                    assert answer.status == 200, (process.name, path, await answer.text())

    connected = await settles(
        lambda: prometheus.values("discord_connected", "shard"),
        lambda shards: shards == {"0": 1.0, "1": 1.0},
        "discord_connected is 1 for both shards",
    )
    assert connected == {"0": 1.0, "1": 1.0}

    for guild in GUILDS:
        reply = await cluster.ask("!hi", guild)
        assert reply["content"].startswith(f"Hi {guild.owner}!")
    hi = f'voicechat_commands_total{{command="hi", outcome="{metrics.OK}"}}'
    serving = {cluster.bot_of(g).name for g in GUILDS}
    await settles(
        lambda: prometheus.values(f"sum by (process) ({hi})", "process"),
        lambda by_process: set(by_process) == serving and min(by_process.values()) > 0,
        f"!hi counted by the processes serving the servers ({sorted(serving)})",
    )
    assert (prometheus.value(f"sum({hi})") or 0) >= len(GUILDS)

    sandbox = GUILDS[0]
    sent = await cluster.sandbox.send(
        author=sandbox.owner, channel_id=sandbox.text_channel_id, voice_message=True,
        files=[("voice-message.ogg", (FIXTURES / "hello.ogg").read_bytes())],
    )  # fmt: skip
    await cluster.replies(sent, lambda m: m["content"].startswith("**Transcript:** "))
    transcribed = f'sum(voicechat_transcriptions_total{{outcome="{metrics.OK}"}})'
    await settles(
        lambda: prometheus.value(transcribed), lambda n: (n or 0) > 0, f"{transcribed} > 0"
    )


async def test_a_training_becomes_active_in_the_process_serving_the_server(
    cluster: Cluster,
) -> None:
    third = next(g for g in GUILDS if g.name == "Third")
    lines = "\n".join(
        [f"what food is there {n} | food | Soup today." for n in range(4)]
        + [f"what can i drink {n} | drink | Water." for n in range(4)]
    )
    started = await cluster.ask(f"!train menu\n{lines}", third)
    job = re.search(r"Job ID: (\w+)", started["content"])
    assert job, started["content"]
    report = await cluster.sandbox.wait_for_bot_message(
        after=started, channel_id=third.text_channel_id, timeout=120,
        predicate=lambda m: m["content"].startswith(f"Job `{job[1]}`")
        and "**running**" not in m["content"],
    )  # fmt: skip
    assert "Model v1 of dataset menu is trained and active" in report["content"], report
    models = (await cluster.ask("!models menu", third))["content"].splitlines()
    assert models[0] == "**Models of `menu`**" and models[1].startswith("`v1` "), models
    assert models[1].endswith("← active")
    assert (await cluster.ask("!select_dataset menu", third))["content"]
    await cluster.ask("!chat on", third)
    assert (await cluster.ask("what food is there", third))["content"] == "Soup today."
    assert ("train", third.id) in cluster.served(cluster.bot_of(third))
    assert any(f"task {job[1]} (train) done" in w.text() for w in cluster.workers)


async def test_listening_captions_are_heard_by_the_workers_in_the_speakers_server(
    cluster: Cluster,
) -> None:
    """Listening with workers: each utterance is a transcribe task in the namespace of the
    server it was said in (its audio goes there), and the caption comes back."""
    second = next(g for g in GUILDS if g.key == "second")
    await cluster.sandbox.join_voice(second.owner)
    listening = await cluster.ask("!listen on", second)
    assert listening["content"].startswith("🎙️ I'm now listening in **Voice**"), listening
    await until(lambda: not cluster.sandbox.bot_self_deaf(second.id), 30, "undeafened")
    [person] = recordings("en")
    wav = await asyncio.to_thread(lambda: audio.to_wav(audio.decode(person.data(), person.file)))
    await cluster.sandbox.speak(second.owner, wav, guild_id=second.id)

    def caption() -> str | None:
        found = cluster.sandbox.bot_messages(second.text_channel_id)
        return next((m["content"] for m in found if m["content"].startswith("**alice:**")), None)

    await until(lambda: caption() is not None, ANSWER_TIMEOUT, "a caption")
    assert "gospel" in (caption() or "").lower()
    started = [w.text() for w in cluster.workers]
    assert any(f"(transcribe) started in namespace {second.id}" in t for t in started)
    assert not any("started in namespace shared" in t for t in started)
    await cluster.ask("!listen off", second)


def long_speech() -> bytes:
    phrase = audio.decode((FIXTURES / "hello.wav").read_bytes(), "hello.wav")
    return audio.to_wav(phrase * 30)  # over a minute: whisper takes seconds


async def test_a_worker_killed_during_a_transcription_leaves_exactly_one_transcript(
    cluster: Cluster,
) -> None:
    second = next(g for g in GUILDS if g.name == "Second")
    started = {w.name: len(TASK_STARTED.findall(w.text())) for w in cluster.workers}
    sent = await cluster.sandbox.send(
        author=second.owner, channel_id=second.text_channel_id, files=[("long.wav", long_speech())]
    )

    def busy() -> list:
        return [
            w for w in cluster.workers
            if len(TASK_STARTED.findall(w.text())) > started[w.name]
        ]  # fmt: skip

    await until(lambda: bool(busy()), ANSWER_TIMEOUT, "a worker takes the task")
    [victim] = busy()
    victim.kill()
    job = TASK_STARTED.findall(victim.text())[-1]
    assert job not in TASK_DONE.findall(victim.text())  # killed before it finished
    [survivor] = [w for w in cluster.workers if w is not victim]
    transcripts = await cluster.replies(
        sent, lambda m: "Transcript" in m["content"] and "still transcribing" not in m["content"],
        timeout=IDLE_TIMEOUT + 120,
    )  # fmt: skip
    assert len(transcripts) == 1 and "hello" in transcripts[0]["content"].lower()
    assert job in TASK_DONE.findall(survivor.text())  # the other worker took it over
    # Anything more for that upload would come before the answer to a later message.
    await cluster.ask("!hi", second)
    assert len(await cluster.replies(sent, lambda m: "Transcript" in m["content"])) == 1
    victim.start()
    await victim.wait_for("worker ready")


async def test_a_killed_bot_process_comes_back_with_its_servers_and_acknowledged_writes(
    cluster: Cluster,
) -> None:
    fourth = next(g for g in GUILDS if g.name == "Fourth")
    bot = cluster.bot_of(fourth)
    shard = cluster.bots.index(bot)
    thanks = await cluster.ask("!feedback kept across a crash", fourth, author="frank")
    assert thanks["content"].startswith("Thank you for your feedback")
    bot.kill()
    await until(lambda: (shard, 2) not in cluster.sandbox.ready_shards, 30, "session closed")
    bot.start()
    await until(lambda: (shard, 2) in cluster.sandbox.ready_shards, START_TIMEOUT, "back", bot)
    reply = await cluster.ask("!hi", fourth)
    assert reply["content"].startswith(f"Hi {fourth.owner}!")
    listed = (await cluster.ask("!feedback list", fourth))["content"]
    assert "kept across a crash" in listed, listed
