"""The sandbox answers for the bot's token and its application as Discord does: the
application's flags say whether the Message Content intent is on (what `python -m bot doctor`
reads), a refused token gets 401 from REST and 4004 from the gateway, and asking for the
intent while it is off closes the gateway with 4014. discord.py itself is the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
import yarl
from discord.flags import ApplicationFlags

from bot.sandbox.server import Sandbox


async def _get(sandbox: Sandbox, path: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(sandbox.api_base + path) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def endpoints(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """discord.py's REST base and gateway are class attributes: restored after the test."""
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    yield


def _point_at(sandbox: Sandbox) -> None:
    discord.http.Route.BASE = sandbox.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sandbox.gateway_url)


async def test_the_application_flags_say_the_message_content_intent_is_on() -> None:
    async with Sandbox() as sandbox:
        status, application = await _get(sandbox, "/applications/@me", "any")
    assert status == 200
    flags = ApplicationFlags._from_value(application["flags"])
    assert flags.gateway_message_content_limited and not flags.gateway_message_content


async def test_with_the_intent_off_the_flags_have_neither_bit() -> None:
    async with Sandbox(message_content_intent=False) as sandbox:
        _, application = await _get(sandbox, "/applications/@me", "any")
        _, oauth = await _get(sandbox, "/oauth2/applications/@me", "any")
    for flags in (ApplicationFlags._from_value(a["flags"]) for a in (application, oauth)):
        assert not flags.gateway_message_content and not flags.gateway_message_content_limited


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_missing_or_wrong_token_gets_401(token: str | None) -> None:
    async with Sandbox(token="right") as sandbox:
        for path in ("/users/@me", "/applications/@me"):
            assert await _get(sandbox, path, token) == (
                401,
                {"message": "401: Unauthorized", "code": 0},
            )
        assert (await _get(sandbox, "/users/@me", "right"))[0] == 200


async def test_discord_py_refuses_to_log_in_with_a_refused_token(endpoints: None) -> None:
    async with Sandbox(token="right") as sandbox:
        _point_at(sandbox)
        client = discord.Client(intents=discord.Intents.none())
        try:
            with pytest.raises(discord.LoginFailure):
                await client.login("wrong")
        finally:
            await client.close()


async def test_asking_for_message_content_while_it_is_off_closes_with_4014(
    endpoints: None,
) -> None:
    async with Sandbox(message_content_intent=False) as sandbox:
        _point_at(sandbox)
        intents = discord.Intents.none()
        intents.guilds = intents.message_content = True
        client = discord.Client(intents=intents)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(client.start("any"), 15)
        finally:
            await client.close()
        assert not sandbox.connected


async def test_without_message_content_the_bot_still_connects(endpoints: None) -> None:
    async with Sandbox(message_content_intent=False) as sandbox:
        _point_at(sandbox)
        client = discord.Client(intents=discord.Intents(guilds=True))
        task = asyncio.create_task(client.start("any"))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 15)
            assert sandbox.connected
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)
