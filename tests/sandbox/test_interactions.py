"""The sandbox's interaction side on the wire: command sync validated like Discord, the
callback, followups and @original, ephemeral messages and the 3-second rule.

Here the test plays the bot with plain HTTP, so each rule is checked on its own; the
end-to-end tests check the same routes with the real discord.py client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox import responses
from bot.sandbox.commands import InvalidFormBody, validate_commands
from bot.sandbox.interactions import EPHEMERAL, LOADING, is_ephemeral
from bot.sandbox.server import Sandbox

PING = {"name": "ping", "description": "Answers pong.", "type": 1, "options": []}
TRAIN = {
    "name": "train",
    "description": "Train a dataset.",
    "type": 1,
    "default_member_permissions": 32,
    "options": [
        {"name": "name", "description": "Dataset", "type": 3, "autocomplete": True},
        {"name": "file", "description": "A CSV file", "type": 11},
    ],
}
VOICE = {
    "name": "voice",
    "description": "Voice settings.",
    "type": 1,
    "options": [
        {"name": "show", "description": "Show them.", "type": 1, "options": []},
        {
            "name": "engine",
            "description": "Choose the engine.",
            "type": 1,
            "options": [
                {
                    "name": "name",
                    "description": "Engine",
                    "type": 3,
                    "required": True,
                    "choices": [
                        {"name": "auto", "value": "auto"},
                        {"name": "piper", "value": "piper"},
                    ],
                }
            ],
        },
    ],
}
MENU = {"name": "Transcribe", "type": 3}


class Bot:
    """Plays the bot against the sandbox with plain HTTP (no Authorization on webhooks)."""

    def __init__(self, sandbox: Sandbox, session: aiohttp.ClientSession) -> None:
        self.sandbox = sandbox
        self.session = session
        self.api = sandbox.api_base
        self.app = sandbox.APPLICATION_ID

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.api + path, json=body) as response:
            text = await response.text()
            if response.status != 204:
                assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(text) if text else None

    async def sync(
        self, commands: list[dict[str, Any]], guild: int | None = None
    ) -> tuple[int, Any]:
        where = f"/guilds/{guild}" if guild else ""
        return await self.call("PUT", f"/applications/{self.app}{where}/commands", commands)

    async def respond(
        self, record: Any, kind: int, data: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {"type": kind}
        if data is not None:
            body["data"] = data
        return await self.call("POST", f"/interactions/{record.id}/{record.token}/callback", body)

    async def followup(self, record: Any, data: dict[str, Any]) -> tuple[int, Any]:
        return await self.call("POST", f"/webhooks/{self.app}/{record.token}?wait=1", data)

    async def original(self, record: Any, method: str, data: Any = None) -> tuple[int, Any]:
        path = f"/webhooks/{self.app}/{record.token}/messages/@original"
        return await self.call(method, path, data)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as running:
        yield running


@pytest.fixture
async def bot(sandbox: Sandbox) -> AsyncIterator[Bot]:
    async with aiohttp.ClientSession() as session:
        player = Bot(sandbox, session)
        status, _ = await player.sync([PING, TRAIN, VOICE, MENU])
        assert status == 200
        yield player


# ----- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "path"),
    [
        ({**PING, "name": "Ping"}, ("0", "name")),
        ({**PING, "name": "two words"}, ("0", "name")),
        ({**PING, "name": "x" * 33}, ("0", "name")),
        ({**PING, "description": ""}, ("0", "description")),
        ({**PING, "description": "d" * 101}, ("0", "description")),
        ({**MENU, "description": "menus have none"}, ("0", "description")),
        (
            {
                **PING,
                "options": [{"name": f"o{i}", "description": "d", "type": 3} for i in range(26)],
            },
            ("0", "options"),
        ),
        (
            {
                **PING,
                "options": [
                    {"name": "a", "description": "d", "type": 3},
                    {"name": "b", "description": "d", "type": 3, "required": True},
                ],
            },
            ("0", "options", "1", "required"),
        ),
        (
            {
                **PING,
                "options": [
                    {
                        "name": "a",
                        "description": "d",
                        "type": 3,
                        "choices": [{"name": str(i), "value": str(i)} for i in range(26)],
                    }
                ],
            },
            ("0", "options", "0", "choices"),
        ),
        (
            {**PING, "options": [{"name": "a", "description": "d" * 101, "type": 3}]},
            ("0", "options", "0", "description"),
        ),
    ],
)
def test_definitions_discord_refuses_are_refused(command: dict[str, Any], path: tuple) -> None:
    with pytest.raises(InvalidFormBody) as refused:
        validate_commands([command])
    body = refused.value.body
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    node = body["errors"]
    for key in path:
        node = node[key]
    assert node["_errors"][0]["code"]


def test_duplicates_and_too_many_are_refused() -> None:
    with pytest.raises(InvalidFormBody, match="unique"):
        validate_commands([PING, PING])
    many = [{**PING, "name": f"c{i}"} for i in range(101)]
    with pytest.raises(InvalidFormBody, match="Too many"):
        validate_commands(many)
    validate_commands([PING, TRAIN, VOICE, MENU, {**MENU, "name": "Speak"}])  # all good


async def test_sync_echoes_commands_with_stable_ids_and_refuses_bad_ones(bot: Bot) -> None:
    status, first = await bot.sync([PING, TRAIN, MENU])
    assert status == 200
    assert [c["name"] for c in first] == ["ping", "train", "Transcribe"]
    assert all(c["application_id"] == str(bot.app) and c["id"] for c in first)
    assert first[2]["description"] == "" and first[1]["default_member_permissions"] == "32"
    assert all(o["description"] for o in first[1]["options"])
    _, again = await bot.sync([MENU, PING])
    assert {c["name"]: c["id"] for c in again} == {
        c["name"]: c["id"] for c in first if c["name"] != "train"
    }
    status, refused = await bot.sync([{**PING, "description": "d" * 101}])
    assert status == 400 and refused["code"] == 50035
    assert refused["errors"]["0"]["description"]["_errors"]
    assert [c["name"] for c in bot.sandbox.interactions.registry.global_commands] == [
        "Transcribe",
        "ping",
    ]  # the refused set changed nothing
    status, guild = await bot.sync([PING], guild=bot.sandbox.GUILD_ID)
    assert status == 200 and guild[0]["guild_id"] == str(bot.sandbox.GUILD_ID)
    status, _ = await bot.sync([PING], guild=999)
    assert status == 403


# ----- what users send -----------------------------------------------------------------------


async def test_slash_payload_has_what_discord_py_needs(bot: Bot) -> None:
    record = await bot.sandbox.slash("train", {"name": "weather", "file": ("w.csv", b"a,b\n")})
    payload = record.payload
    for key in ("id", "type", "token", "version", "application_id", "attachment_size_limit"):
        assert key in payload, key
    assert payload["version"] == 1 and payload["type"] == 2
    assert payload["channel"]["id"] == str(bot.sandbox.TEXT_CHANNEL_ID)
    assert payload["member"]["flags"] == 0 and "permissions" in payload["member"]
    options = {o["name"]: o for o in payload["data"]["options"]}
    attachment_id = options["file"]["value"]
    assert payload["data"]["resolved"]["attachments"][attachment_id]["filename"] == "w.csv"
    sub = await bot.sandbox.slash("voice engine", {"name": "piper"})
    assert sub.payload["data"]["options"] == [
        {"name": "engine", "type": 1, "options": [{"name": "name", "type": 3, "value": "piper"}]}
    ]
    dm = await bot.sandbox.slash("ping", dm=True)
    assert "user" in dm.payload and "member" not in dm.payload
    assert dm.payload["channel"]["type"] == 1


async def test_what_discords_client_would_not_send_is_refused(bot: Bot) -> None:
    with pytest.raises(ValueError, match="one of"):
        await bot.sandbox.slash("voice engine", {"name": "siri"})
    with pytest.raises(ValueError, match="needs the option"):
        await bot.sandbox.slash("voice engine", {})
    with pytest.raises(ValueError, match="no option"):
        await bot.sandbox.slash("ping", {"loud": "yes"})
    with pytest.raises(ValueError, match="needs a subcommand"):
        await bot.sandbox.slash("voice")
    with pytest.raises(LookupError):
        await bot.sandbox.slash("nothing", wait=0.1)
    # Manage Server is needed to see /train; the admin role was allowed it in Integrations.
    with pytest.raises(PermissionError):
        await bot.sandbox.slash("train", author="member")
    await bot.sandbox.slash("train", author="moderator")
    await bot.sandbox.slash("train", author="member", force=True)  # a stale client


async def test_menu_and_autocomplete_payloads(bot: Bot) -> None:
    message = await bot.sandbox.send("hello there", author="member")
    record = await bot.sandbox.menu("Transcribe", message["id"], author="owner")
    data = record.payload["data"]
    assert data["type"] == 3 and data["target_id"] == message["id"]
    assert data["resolved"]["messages"][message["id"]]["content"] == "hello there"

    async def answer() -> None:
        while not any(r.type == 4 for r in bot.sandbox.interactions.records.values()):
            await asyncio.sleep(0.01)
        found = next(r for r in bot.sandbox.interactions.records.values() if r.type == 4)
        focused = [o for o in found.payload["data"]["options"] if o.get("focused")]
        assert focused == [{"name": "name", "type": 3, "value": "we", "focused": True}]
        status, _ = await bot.respond(
            found, 8, {"choices": [{"name": "weather", "value": "weather"}]}
        )
        assert status == 200

    task = asyncio.create_task(answer())
    choices = await bot.sandbox.autocomplete("train", "name", "we", author="owner")
    await task
    assert choices == [{"name": "weather", "value": "weather"}]


# ----- what the bot answers ------------------------------------------------------------------


async def test_message_response_and_original(bot: Bot) -> None:
    record = await bot.sandbox.slash("ping")
    status, body = await bot.respond(record, 4, {"content": "pong"})
    assert status == 200
    assert body["interaction"]["id"] == str(record.id) and body["interaction"]["type"] == 2
    assert body["resource"]["type"] == 4 and body["resource"]["message"]["content"] == "pong"
    message_id = body["resource"]["message"]["id"]
    assert bot.sandbox.messages[int(message_id)]["content"] == "pong"  # public: in the channel
    status, again = await bot.respond(record, 4, {"content": "twice"})
    assert status == 400 and again["code"] == 40060
    status, got = await bot.original(record, "GET")
    assert status == 200 and got["id"] == message_id
    status, edited = await bot.original(record, "PATCH", {"content": "pong!"})
    assert status == 200 and edited["content"] == "pong!"
    status, _ = await bot.original(record, "DELETE")
    assert status == 204 and int(message_id) not in bot.sandbox.messages
    status, gone = await bot.original(record, "GET")
    assert status == 404 and gone["code"] == 10008


async def test_defer_then_followups(bot: Bot) -> None:
    record = await bot.sandbox.slash("ping")
    status, _ = await bot.followup(record, {"content": "too soon"})
    assert status == 404  # nothing to follow up yet
    status, body = await bot.respond(record, 5)
    assert status == 200 and body["interaction"]["response_message_loading"] is True
    loading = record.original
    assert loading is not None and loading["flags"] & LOADING and loading["content"] == ""
    status, first = await bot.followup(record, {"content": "done"})
    assert status == 200 and first["id"] == loading["id"]  # it replaced the loading message
    assert not first["flags"] & LOADING
    status, second = await bot.followup(record, {"content": "and more", "flags": EPHEMERAL})
    assert status == 200 and second["id"] != first["id"] and is_ephemeral(second)
    assert [m["content"] for m in record.messages] == ["done", "and more"]
    assert int(second["id"]) not in bot.sandbox.messages  # ephemeral: not in the channel


async def test_ephemeral_defer_keeps_its_followup_private(bot: Bot) -> None:
    published: list[tuple[str, str]] = []
    publish = bot.sandbox.publish

    async def spy(event: str, data: dict[str, Any]) -> None:
        published.append((event, data.get("id", "")))
        await publish(event, data)

    bot.sandbox.publish = spy  # type: ignore[method-assign]
    record = await bot.sandbox.slash("ping", author="member")
    await bot.respond(record, 5, {"flags": EPHEMERAL})
    status, reply = await bot.followup(record, {"content": "only you"})
    assert status == 200 and is_ephemeral(reply)
    assert int(reply["id"]) not in bot.sandbox.messages
    assert [event for event, _ in published] == ["INTERACTION_CREATE"]  # nothing on the gateway
    assert (await record.reply())["content"] == "only you"


async def test_a_first_response_after_three_seconds_is_refused(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(responses, "FIRST_RESPONSE_SECONDS", 0.2)
    record = await bot.sandbox.slash("ping")
    await asyncio.sleep(0.3)
    status, body = await bot.respond(record, 4, {"content": "late"})
    assert status == 404 and body == {"message": "Unknown interaction", "code": 10062}
    assert bot.sandbox.interactions.late == [record] and record.callback is None
    status, _ = await bot.followup(record, {"content": "later"})
    assert status == 404  # never acknowledged: no followups either


async def test_bad_callbacks_are_refused(bot: Bot) -> None:
    record = await bot.sandbox.slash("ping")
    status, body = await bot.respond(record, 8, {"choices": []})
    assert status == 400 and body["code"] == 50035  # choices answer autocomplete only
    modal = {"custom_id": "m", "title": "t" * 46, "components": []}
    status, body = await bot.respond(record, 9, modal)
    assert status == 400 and body["code"] == 50035
    status, body = await bot.call(
        "POST", f"/interactions/{record.id}/wrong-token/callback", {"type": 4}
    )
    assert status == 404 and body["code"] == 10062
    status, _ = await bot.respond(record, 4, {"content": "fine"})
    assert status == 200


async def test_modal_round_trip(bot: Bot) -> None:
    record = await bot.sandbox.slash("ping")
    modal = {
        "custom_id": "fix",
        "title": "Correct this reply",
        "components": [
            {
                "type": 1,
                "components": [
                    {"type": 4, "custom_id": "answer", "label": "The right answer", "style": 2}
                ],
            }
        ],
    }
    status, body = await bot.respond(record, 9, modal)
    assert status == 200 and body["resource"]["type"] == 9 and record.modal == modal
    with pytest.raises(ValueError, match="must be filled"):
        await bot.sandbox.submit_modal(record, "")
    submitted = await bot.sandbox.submit_modal(record, "Bring a coat.")
    assert submitted.type == 5 and submitted.payload["data"] == {
        "custom_id": "fix",
        "components": [
            {
                "type": 1,
                "components": [{"type": 4, "custom_id": "answer", "value": "Bring a coat."}],
            }
        ],
    }
    status, _ = await bot.respond(submitted, 4, {"content": "Thanks"})
    assert status == 200
