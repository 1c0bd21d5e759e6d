"""What reading aloud needs from the sandbox, as discord.py itself sees it: a user edits or
deletes a message, takes a nickname, a webhook posts, and people type in a voice channel's
own text chat (where the bot can answer too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import discord
import pytest
import yarl

from bot.sandbox.server import Sandbox

TIMEOUT = 10


@pytest.fixture
async def connected(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Sandbox, Any]]:
    """A sandbox and a plain discord.py client logged in to it with every intent."""
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    async with Sandbox() as sandbox:
        discord.http.Route.BASE = sandbox.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sandbox.gateway_url)
        client = discord.Client(intents=discord.Intents.all())
        task = asyncio.create_task(client.start("any"))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 15)
            yield sandbox, client
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)


async def seen(client: discord.Client, event: str, action: Awaitable[Any]) -> Any:
    """What the client's `event` carries once `action` (what a user does) is done."""
    waiter = asyncio.ensure_future(client.wait_for(event, timeout=TIMEOUT))
    await asyncio.sleep(0)  # the listener is registered before the event can arrive
    await action
    return await waiter


async def test_an_edit_reaches_the_client_with_the_new_content(
    connected: tuple[Sandbox, discord.Client],
) -> None:
    sandbox, client = connected
    sent = await seen(client, "message", sandbox.send("hello", author="member"))
    raw = asyncio.ensure_future(client.wait_for("raw_message_edit", timeout=TIMEOUT))
    mention = f"hello <@{sandbox.bot_user.id}>"
    before, after = await seen(client, "message_edit", sandbox.edit(sent.id, mention))
    assert before.content == "hello" and after.content == mention
    assert after.edited_at is not None and after.author.id == sandbox.user("member").id
    assert isinstance(after.author, discord.Member) and after.guild.id == sandbox.GUILD_ID
    assert [u.id for u in after.mentions] == [sandbox.bot_user.id]  # mentions recomputed
    update = await raw
    assert update.message_id == sent.id and update.data["content"] == mention
    assert sandbox.messages[sent.id]["content"] == mention


async def test_a_deletion_reaches_the_client(connected: tuple[Sandbox, discord.Client]) -> None:
    sandbox, client = connected
    sent = await seen(client, "message", sandbox.send("oops", author="owner"))
    deleted = await seen(client, "raw_message_delete", sandbox.delete(sent.id))
    assert deleted.message_id == sent.id
    assert (deleted.channel_id, deleted.guild_id) == (sandbox.TEXT_CHANNEL_ID, sandbox.GUILD_ID)
    assert deleted.cached_message is not None and deleted.cached_message.content == "oops"
    assert sent.id not in sandbox.messages


async def test_an_unknown_message_can_be_neither_edited_nor_deleted() -> None:
    async with Sandbox() as sandbox:
        with pytest.raises(ValueError, match="no message 12345"):
            await sandbox.edit(12345, "new")
        with pytest.raises(ValueError, match="no message 12345"):
            await sandbox.delete(12345)
        sent = await sandbox.send("once")
        await sandbox.delete(int(sent["id"]))
        with pytest.raises(ValueError):
            await sandbox.delete(int(sent["id"]))


async def test_a_nickname_becomes_the_members_display_name(
    connected: tuple[Sandbox, discord.Client],
) -> None:
    sandbox, client = connected
    bob = sandbox.user("bob")
    _, after = await seen(client, "member_update", sandbox.set_nick("bob", "Bobby"))
    assert after.id == bob.id and after.nick == "Bobby" and after.display_name == "Bobby"
    guild = client.get_guild(sandbox.SECOND_GUILD_ID)
    assert guild is not None and guild.get_member(bob.id).display_name == "Bobby"  # type: ignore[union-attr]
    message = await seen(client, "message", sandbox.send("hi", author="bob"))
    assert message.author.display_name == "Bobby"  # messages carry the nick from now on
    _, after = await seen(client, "member_update", sandbox.set_nick("bob", None))
    assert after.nick is None and after.display_name == "bob"
    with pytest.raises(ValueError, match="not a member of Sandbox"):
        await sandbox.set_nick("bob", "Intruder", guild="sandbox")


async def test_a_webhook_message_has_a_webhook_id_and_no_member(
    connected: tuple[Sandbox, discord.Client],
) -> None:
    sandbox, client = connected
    message = await seen(client, "message", sandbox.send("from a feed", webhook=True))
    payload = sandbox.messages[message.id]
    assert message.webhook_id is not None and str(message.webhook_id) == payload["webhook_id"]
    assert message.author.bot and message.author.id == message.webhook_id
    assert not isinstance(message.author, discord.Member) and "member" not in payload
    assert message.content == "from a feed" and message.channel.id == sandbox.TEXT_CHANNEL_ID
    with pytest.raises(ValueError, match="direct messages"):
        await sandbox.send("no", webhook=True, dm=True)


async def test_text_in_a_voice_channel_and_the_bots_answer_there(
    connected: tuple[Sandbox, discord.Client],
) -> None:
    sandbox, client = connected
    with pytest.raises(ValueError, match="in no voice channel"):
        sandbox.voice_channel_of("owner")
    await sandbox.join_voice("owner")
    assert sandbox.voice_channel_of("owner") == sandbox.VOICE_CHANNEL_ID
    channel_id = sandbox.voice_channel_of("owner")
    message = await seen(client, "message", sandbox.send("read me", channel_id=channel_id))
    assert isinstance(message.channel, discord.VoiceChannel)
    assert message.channel.id == sandbox.VOICE_CHANNEL_ID and message.content == "read me"
    reply = await message.channel.send("heard you")  # through REST, in the voice channel
    answer = await sandbox.wait_for_bot_message(after=int(message.id), channel_id=channel_id)
    assert answer["content"] == "heard you" and int(answer["id"]) == reply.id
    history = [m.content async for m in message.channel.history(limit=10)]
    assert history == ["heard you", "read me"]
