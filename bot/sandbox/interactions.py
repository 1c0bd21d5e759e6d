"""Interactions in the sandbox: `/` commands, context menus, autocomplete and modals.

What a user does (`slash`, `menu`, `autocomplete`, `submit_modal`) becomes INTERACTION_CREATE
as Discord sends it, and an `InteractionRecord` collects what the bot answers: the callback
type and how long after the interaction it came, the messages (original and followups, with
their flags), suggestions and forms. The bot answers through the endpoints in `responses.py`
(callback, followups, @original; a first response after 3 seconds is refused with 10062 and
kept in `late`, so the tests fail on it). The record and the interaction kinds are in
`records.py`, a form's inputs in `modals.py`; the sandbox is seen through `protocol.Host`.

Ephemeral messages (flag 64) are seen only by the user: they never reach the gateway or the
channel's history, only the interaction's record and the console. Commands registered with
`default_member_permissions` are hidden from members without those permissions, as Discord's
client hides them; the sandbox's server owners allowed ADMIN_ROLE the bot's commands (Server
Settings -> Integrations), so its holders see them too. `force=True` sends one anyway, as a
stale client could, to check that the bot still refuses it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from bot.sandbox.commands import (
    ATTACHMENT,
    BOOLEAN,
    CHAT_INPUT,
    INTEGER,
    MESSAGE,
    NUMBER,
    STRING,
    SUB_COMMAND,
    SUB_COMMAND_GROUP,
    Registry,
)
from bot.sandbox.modals import check_input, submitted, text_inputs
from bot.sandbox.protocol import Host
from bot.sandbox.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    APPLICATION_COMMAND,
    ATTACHMENT_SIZE_LIMIT,
    AUTOCOMPLETE,
    CHAT_INPUT_COMMAND_MESSAGE,
    CONTEXT_MENU_COMMAND_MESSAGE,
    DEFAULT_MESSAGE,
    DEFERRED,
    EPHEMERAL,
    LOADING,
    MESSAGE_REPLY,
    MODAL_SUBMIT,
    InteractionRecord,
    is_ephemeral,
    is_loading,
)
from bot.sandbox.world import SandboxGuild, SandboxUser

# The interaction's kinds and record live in records.py; tests and the console import these here.
__all__ = [
    "DEFERRED",
    "EPHEMERAL",
    "LOADING",
    "MESSAGE_REPLY",
    "InteractionRecord",
    "Interactions",
    "is_ephemeral",
    "is_loading",
]

log = logging.getLogger(__name__)


class Interactions:
    """The interaction side of the sandbox (see the module's docstring)."""

    def __init__(self, sandbox: Host) -> None:
        self.sandbox = sandbox
        self.registry = Registry(sandbox.APPLICATION_ID, sandbox.store.next_id)
        self.records: dict[int, InteractionRecord] = {}
        self.ephemeral: dict[int, dict[str, Any]] = {}  # message id -> ephemeral message
        self.late: list[InteractionRecord] = []  # first responses refused as too late
        self.admin_role_allowed = True  # Integrations: ADMIN_ROLE may use admin commands
        self.changed = asyncio.Condition()

    # ----- acting as a user ----------------------------------------------------------------

    async def slash(
        self,
        command: str,
        options: dict[str, Any] | None = None,
        *,
        author: str = "owner",
        channel_id: int | None = None,
        dm: bool = False,
        force: bool = False,
        wait: float = 10.0,
    ) -> InteractionRecord:
        """Run `/command` (e.g. "train" or "voice engine") with `options` by name.

        An attachment option takes `(filename, bytes)`. Raises ValueError for input Discord's
        client would not send (an unknown option, a missing required one, a value that is not
        one of the choices) and PermissionError for a command the user can't see.
        """
        user, channel_id, guild = self._where(author, channel_id, dm)
        path = command.split()
        definition = await self._registered(guild, CHAT_INPUT, path[0], wait)
        self._check_visible(definition, user, guild, force)
        leaf, nest = _leaf(definition, path)
        resolved: dict[str, Any] = {}
        built = self._options(command, leaf.get("options") or [], options or {}, resolved)
        data: dict[str, Any] = {
            "id": definition["id"],
            "name": path[0],
            "type": CHAT_INPUT,
            "options": nest(built),
        }
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in definition:
            data["guild_id"] = definition["guild_id"]
        return await self._create(
            APPLICATION_COMMAND, data, user, channel_id, guild, command, CHAT_INPUT_COMMAND_MESSAGE
        )

    async def autocomplete(
        self,
        command: str,
        option: str,
        text: str = "",
        *,
        options: dict[str, Any] | None = None,
        author: str = "owner",
        channel_id: int | None = None,
        dm: bool = False,
        force: bool = False,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Type `text` into `option` of `/command`; the choices the bot suggests."""
        user, channel_id, guild = self._where(author, channel_id, dm)
        path = command.split()
        definition = await self._registered(guild, CHAT_INPUT, path[0], timeout)
        self._check_visible(definition, user, guild, force)
        leaf, nest = _leaf(definition, path)
        defs = {d["name"]: d for d in leaf.get("options") or []}
        focused = defs.get(option)
        if focused is None or not focused.get("autocomplete"):
            raise ValueError(f"/{command} has no option {option!r} with autocomplete")
        built = [
            {"name": name, "type": defs[name]["type"], "value": value}
            for name, value in (options or {}).items()
            if name in defs and name != option
        ]
        built.append({"name": option, "type": focused["type"], "value": text, "focused": True})
        data = {"id": definition["id"], "name": path[0], "type": CHAT_INPUT, "options": nest(built)}
        record = await self._create(
            AUTOCOMPLETE, data, user, channel_id, guild, command, CHAT_INPUT_COMMAND_MESSAGE
        )
        await record.wait(lambda r: r.choices is not None, timeout)
        return list(record.choices or [])

    async def menu(
        self,
        name: str,
        message_id: int | str,
        *,
        author: str = "owner",
        force: bool = False,
        wait: float = 10.0,
    ) -> InteractionRecord:
        """Use the message context menu `name` on a message."""
        target = self.sandbox.store.messages.get(int(message_id))
        if target is None:
            raise ValueError(f"there is no message {message_id} to use {name!r} on")
        channel_id = int(target["channel_id"])
        dm = self.sandbox.store.is_dm(channel_id)
        user, channel_id, guild = self._where(author, channel_id, dm)
        definition = await self._registered(guild, MESSAGE, name, wait)
        self._check_visible(definition, user, guild, force)
        data = {
            "id": definition["id"],
            "name": name,
            "type": MESSAGE,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: copy.deepcopy(target)}},
        }
        if "guild_id" in definition:
            data["guild_id"] = definition["guild_id"]
        return await self._create(
            APPLICATION_COMMAND, data, user, channel_id, guild, name, CONTEXT_MENU_COMMAND_MESSAGE
        )

    async def submit_modal(
        self, shown: InteractionRecord, values: str | dict[str, str]
    ) -> InteractionRecord:
        """Fill in and submit the modal the bot showed in answer to `shown`.

        `values` maps each text input's custom_id or label to its text; a plain string fills
        the modal's only input.
        """
        if shown.modal is None:
            raise ValueError("the bot showed no modal for that interaction")
        inputs = list(text_inputs(shown.modal["components"]))
        if isinstance(values, str):
            if len(inputs) != 1:
                raise ValueError("that modal has several inputs: give them by name")
            values = {inputs[0][0]["custom_id"]: values}
        filled: dict[str, str] = {}
        for component, label in inputs:
            value = values.get(component["custom_id"], values.get(label or "", ""))
            check_input(component, label, value)
            filled[component["custom_id"]] = value
        data = {
            "custom_id": shown.modal["custom_id"],
            "components": submitted(shown.modal["components"], filled),
        }
        guild = self.sandbox.world.guild_by_id(shown.guild_id) if shown.guild_id else None
        return await self._create(
            MODAL_SUBMIT,
            data,
            shown.user,
            shown.channel_id,
            guild,
            shown.modal["custom_id"],
            DEFAULT_MESSAGE,
        )

    def options_of(self, command: str, guild_id: int | None) -> dict[str, dict[str, Any]]:
        """The options of `/command` (a subcommand too) as the bot synced them, by name."""
        path = command.split()
        definition = self.registry.find(guild_id, CHAT_INPUT, path[0]) if path else None
        if definition is None:
            raise LookupError(f"the bot has not registered /{command}")
        leaf, _ = _leaf(definition, path)
        return {o["name"]: o for o in leaf.get("options") or []}

    # ----- building what Discord sends -------------------------------------------------------

    def _where(
        self, author: str, channel_id: int | None, dm: bool
    ) -> tuple[SandboxUser, int, SandboxGuild | None]:
        user = self.sandbox.world.user(author)
        if dm:
            return user, self.sandbox.store.dm_channel(user.id), None
        world = self.sandbox.world
        channel_id = channel_id or world.home_guild(user).text_channel_id
        guild = world.guild_of_channel(channel_id)
        if guild is None or not world.is_member(user, guild):
            raise ValueError(f"{user.name} can't use commands in channel {channel_id}")
        return user, channel_id, guild

    async def _registered(
        self, guild: SandboxGuild | None, kind: int, name: str, wait: float
    ) -> dict[str, Any]:
        """The command as the bot synced it; waits up to `wait` s for the bot's first sync."""

        def find() -> dict[str, Any] | None:
            return self.registry.find(guild.id if guild else None, kind, name)

        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(lambda: find() is not None), wait)
        except TimeoutError:
            what = f"/{name}" if kind == CHAT_INPUT else f"the menu {name!r}"
            raise LookupError(f"the bot has not registered {what}") from None
        return find()  # type: ignore[return-value]

    def permissions(self, user: SandboxUser, guild: SandboxGuild) -> int:
        """The user's permissions in the server: everything for its owner, else @everyone's."""
        if self.sandbox.world.users[guild.owner] is user:
            return ALL_PERMISSIONS
        return int(self.sandbox.world.guild_payload(guild)["roles"][0]["permissions"])

    def _check_visible(
        self,
        command: dict[str, Any],
        user: SandboxUser,
        guild: SandboxGuild | None,
        force: bool,
    ) -> None:
        contexts = command.get("contexts")
        name = command["name"]
        if guild is None:
            if command.get("dm_permission") is False or (contexts and 1 not in contexts):
                raise PermissionError(f"{name} can't be used in direct messages")
            return
        if contexts and 0 not in contexts:
            raise PermissionError(f"{name} can't be used in a server")
        needed = command.get("default_member_permissions")
        if needed is None or force:
            return
        have = self.permissions(user, guild)
        admin_role = self.admin_role_allowed and any(
            self.sandbox.world.users[k] is user for k in guild.admins
        )
        if have & ADMINISTRATOR or have & int(needed) == int(needed) or admin_role:
            return
        raise PermissionError(f"{user.name} doesn't see {name} (it needs permissions {needed})")

    def _options(
        self,
        command: str,
        defs: list[dict[str, Any]],
        given: dict[str, Any],
        resolved: dict[str, Any],
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in defs}
        for name in given:
            if name not in by_name:
                raise ValueError(f"/{command} has no option {name!r}; it has {sorted(by_name)}")
        built = []
        for definition in defs:
            name = definition["name"]
            if name not in given or given[name] is None:
                if definition.get("required"):
                    raise ValueError(f"/{command} needs the option {name!r}")
                continue
            value = self._value(command, definition, given[name], resolved)
            built.append({"name": name, "type": definition["type"], "value": value})
        return built

    def _value(
        self, command: str, definition: dict[str, Any], raw: Any, resolved: dict[str, Any]
    ) -> Any:
        kind, name = definition["type"], definition["name"]
        if kind == ATTACHMENT:
            filename, data = raw
            attachment = self.sandbox.store.store_file(filename, data)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        value: Any
        if kind == STRING:
            value = str(raw)
            low, high = definition.get("min_length", 0), definition.get("max_length", 6000)
            if not low <= len(value) <= high:
                raise ValueError(f"/{command} {name}: {low} to {high} characters")
        elif kind == INTEGER:
            value = int(raw)
        elif kind == NUMBER:
            value = float(raw)
        elif kind == BOOLEAN:
            value = bool(raw)
        else:
            value = str(raw)  # users, channels, roles, mentionables: an id
        choices = definition.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            allowed = ", ".join(str(c["value"]) for c in choices)
            raise ValueError(f"/{command} {name} must be one of {allowed}")
        return value

    def _channel_payload(
        self, channel_id: int, guild: SandboxGuild | None, user: SandboxUser
    ) -> dict[str, Any]:
        if guild is None:
            return {
                "id": str(channel_id),
                "type": 1,
                "recipients": [user.payload()],
                "last_message_id": None,
                "flags": 0,
            }
        payload = next(
            c
            for c in self.sandbox.world.guild_payload(guild)["channels"]
            if c["id"] == str(channel_id)
        )
        return {**payload, "flags": 0, "last_message_id": None, "rate_limit_per_user": 0}

    async def _create(
        self,
        kind: int,
        data: dict[str, Any],
        user: SandboxUser,
        channel_id: int,
        guild: SandboxGuild | None,
        name: str,
        message_type: int,
    ) -> InteractionRecord:
        interaction_id = self.sandbox.store.next_id()
        token = f"interaction-{interaction_id}-{secrets.token_urlsafe(16)}"
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.sandbox.APPLICATION_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "channel_id": str(channel_id),
            "channel": self._channel_payload(channel_id, guild, user),
            "locale": "en-US",
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "entitlements": [],
            "app_permissions": str(ALL_PERMISSIONS),
            "context": 0 if guild else 1,
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
        }
        if guild is not None:
            member = self.sandbox.world.member(user, guild)
            member.update(
                permissions=str(self.permissions(user, guild)),
                avatar=None,
                premium_since=None,
                pending=False,
                communication_disabled_until=None,
            )
            payload.update(guild_id=str(guild.id), guild_locale="en-US", member=member)
            payload["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
        else:
            payload["user"] = user.payload()
        record = InteractionRecord(
            id=interaction_id,
            token=token,
            type=kind,
            name=name,
            user=user,
            channel_id=channel_id,
            guild_id=guild.id if guild else None,
            payload=payload,
            message_type=message_type,
            created=time.monotonic(),
            changed=self.changed,
        )
        self.records[interaction_id] = record
        await self.sandbox.publish("INTERACTION_CREATE", payload)
        return record

    def tell(self, event: str, data: dict[str, Any]) -> None:
        """What only the user sees (ephemeral messages, choices, modals): the console's
        listeners, never the gateway."""
        for listener in self.sandbox.listeners:
            listener(event, data)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


# ----- helpers ------------------------------------------------------------------------------


def _leaf(
    definition: dict[str, Any], path: list[str]
) -> tuple[dict[str, Any], Callable[[list[dict[str, Any]]], list[dict[str, Any]]]]:
    """The (sub)command that `path` names, and how to nest its options in the payload."""
    node, chain = definition, []
    for name in path[1:]:
        child = next(
            (
                o
                for o in node.get("options") or []
                if o["name"] == name and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if child is None:
            raise ValueError(f"/{' '.join(path)}: there is no subcommand {name!r}")
        chain.append(child)
        node = child
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in node.get("options") or []):
        names = [o["name"] for o in node.get("options") or []]
        raise ValueError(f"/{' '.join(path)} needs a subcommand: one of {names}")

    def nest(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for child in reversed(chain):
            options = [{"name": child["name"], "type": child["type"], "options": options}]
        return options

    return node, nest
