"""Shards end to end: one process running two shards, and two bot instances (each its own
AutoShardedBot, DATA_DIR and shard) that together answer every server exactly once and take
turns logging in through a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.core.bot import VoiceChatBot
from bot.sandbox.runner import bot_on, sandboxed_bot
from bot.sandbox.server import Sandbox
from bot.sandbox.world import GUILDS
from bot.wiring import Services, build_services

# A user of each server (its owner) who says !hi there.
SPEAKERS = {g.id: g.owner for g in GUILDS}


async def hi_everywhere(sandbox: Sandbox) -> dict[int, dict[str, Any]]:
    """`!hi` in every server's #general; the message sent in each, by server id."""
    return {gid: await sandbox.send("!hi", author=author) for gid, author in SPEAKERS.items()}


async def replies_to(sandbox: Sandbox, sent: dict[str, Any]) -> list[dict[str, Any]]:
    """Every bot message that replies to `sent` (after the first one arrived)."""
    await sandbox.wait_for_bot_message(after=sent, channel_id=int(sent["channel_id"]))
    return [
        m
        for m in sandbox.bot_messages(int(sent["channel_id"]))
        if (m.get("message_reference") or {}).get("message_id") == sent["id"]
    ]


def record_commands(bot: VoiceChatBot, into: list[tuple[str, int]], name: str) -> None:
    """Which instance ran a command in which server."""

    async def on_command_completion(ctx: Any) -> None:
        into.append((name, ctx.guild.id if ctx.guild else 0))

    bot.add_listener(on_command_completion)


async def test_one_process_with_two_shards_answers_in_all_four_servers(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(SHARD_COUNT="2", SHARD_IDS="0-1")
    async with sandboxed_bot(settings, voice_out_dir=tmp_path / "v", shard_count=2) as (sb, bot):
        assert sorted(sb.ready_shards) == [(0, 2), (1, 2)]
        assert sorted(bot.shards) == [0, 1] and len(bot.guilds) == len(GUILDS)
        sent = await hi_everywhere(sb)
        for gid, message in sent.items():
            [reply] = await replies_to(sb, message)
            assert reply["content"].startswith(f"Hi {SPEAKERS[gid]}!"), reply["content"]
        dm = await sb.send("!hi", author="dave", dm=True)  # DMs reach shard 0
        answer = await sb.wait_for_bot_message(after=dm, channel_id=int(dm["channel_id"]))
        assert answer["content"].startswith("Hi dave!")
        assert not sb.logins.refused


@contextlib.asynccontextmanager
async def two_instances(
    sandbox: Sandbox, make_settings: Callable[..., Settings], tmp_path: Path, **env: str
) -> AsyncIterator[list[VoiceChatBot]]:
    """Two bots started at the same time on one sandbox: shard 0 and shard 1 of 2."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(shard: int, services: Services) -> VoiceChatBot:
            running = bot_on(sandbox, services.settings, ready_timeout=40, services=services)
            return await stack.enter_async_context(running)

        built = []
        for shard in (0, 1):  # each its own DATA_DIR and database, built one after the other
            data = str(tmp_path / f"data-{shard}")
            settings = make_settings(DATA_DIR=data, SHARD_COUNT="2", SHARD_IDS=str(shard), **env)
            built.append(await build_services(settings))
        yield list(await asyncio.gather(*(start(i, s) for i, s in enumerate(built))))


async def test_two_processes_answer_every_server_exactly_once_taking_turns_to_log_in(
    make_settings: Callable[..., Settings], tmp_path: Path, redis_url: str
) -> None:
    ran: list[tuple[str, int]] = []
    async with (
        Sandbox(shard_count=2, max_concurrency=1, out_dir=tmp_path / "v") as sandbox,
        two_instances(sandbox, make_settings, tmp_path, REDIS_URL=redis_url) as bots,
    ):
        for name, bot in zip(("shard 0", "shard 1"), bots, strict=True):
            record_commands(bot, ran, name)
        first = await hi_everywhere(sandbox)
        for message in first.values():
            await replies_to(sandbox, message)
        # A second round, answered after the first: a late second answer to the first
        # round would already have arrived (each instance answers in order).
        for message in (await hi_everywhere(sandbox)).values():
            await replies_to(sandbox, message)
        counts = {gid: len(await replies_to(sandbox, m)) for gid, m in first.items()}
        owners = {bot.shard_ids[0]: {g.id for g in bot.guilds} for bot in bots}

    assert counts == {g.id: 1 for g in GUILDS}
    assert owners[0].isdisjoint(owners[1]) and owners[0] | owners[1] == {g.id for g in GUILDS}
    handled = {gid: {name for name, g in ran if g == gid} for gid in SPEAKERS}
    assert all(len(names) == 1 for names in handled.values()), handled
    # Both logins went through the one bucket (max_concurrency 1), one after the other, and
    # the gateway refused neither.
    taken = [key for bot in bots for key, _shard in bot.login_turns.taken]  # type: ignore[union-attr]
    assert len(taken) == 2 and len(set(taken)) == 1
    assert sorted(sandbox.logins.accepted) == [(0, 2), (1, 2)]
    assert sandbox.logins.refused == []


async def test_without_redis_two_processes_collide_at_login_and_recover(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """What the Redis turns prevent: both log in at once, the gateway refuses one (op 9), and
    discord.py identifies again later."""
    async with (
        Sandbox(shard_count=2, max_concurrency=1, out_dir=tmp_path / "v") as sandbox,
        two_instances(sandbox, make_settings, tmp_path) as bots,
    ):
        assert len(sandbox.logins.refused) >= 1
        assert sorted(sandbox.ready_shards) == [(0, 2), (1, 2)]
        sent = await sandbox.send("!hi", author="carol")
        [reply] = await replies_to(sandbox, sent)
        assert reply["content"].startswith("Hi carol!")
        assert all(bot.login_turns is None for bot in bots)
