"""Interactions in the sandbox: `/` commands, context menus, autocomplete and modals.

What a user does (`slash`, `menu`, `autocomplete`, `submit_modal`) becomes INTERACTION_CREATE
as Discord sends it; the bot answers through the endpoints Discord offers, with Discord's rules:

- `POST /interactions/{id}/{token}/callback`: types 4 (message), 5 (deferred), 6 and 7
  (component updates), 8 (autocomplete choices) and 9 (modal), once per interaction and within
  3 seconds of its creation. A late first response gets 404, code 10062 "Unknown interaction",
  and is kept in `late` so the tests fail on it. The answer is the 200 body discord.py reads.
- `POST /webhooks/{app}/{token}`: followups for 15 minutes. The first one after a type-5 defer
  replaces the loading message, keeping the defer's ephemeral flag.
- `GET|PATCH|DELETE /webhooks/{app}/{token}/messages/@original` (or a followup's id).

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
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

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
    InvalidFormBody,
    Registry,
)
from bot.sandbox.world import SandboxGuild, SandboxUser

if TYPE_CHECKING:
    from bot.sandbox.server import Sandbox

log = logging.getLogger(__name__)

APPLICATION_COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE, CHOICES, MODAL = 4, 5, 6, 7, 8, 9
ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {MESSAGE_REPLY, DEFERRED, MODAL},
    COMPONENT: {MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE, MODAL},
    AUTOCOMPLETE: {CHOICES},
    MODAL_SUBMIT: {MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE},
}
EPHEMERAL = 1 << 6
LOADING = 1 << 7
FIRST_RESPONSE_SECONDS = 3.0
TOKEN_SECONDS = 15 * 60
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
# Message types of responses: to a slash command, to a context menu, anything else.
CHAT_INPUT_COMMAND_MESSAGE, CONTEXT_MENU_COMMAND_MESSAGE, DEFAULT_MESSAGE = 20, 23, 0
MAX_MODAL_INPUTS = 5


def _json(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


def is_ephemeral(message: dict[str, Any]) -> bool:
    return bool(message.get("flags", 0) & EPHEMERAL)


def is_loading(message: dict[str, Any]) -> bool:
    return bool(message.get("flags", 0) & LOADING)


@dataclass
class InteractionRecord:
    """One interaction and everything the bot answered to it, for tests and the console."""

    id: int
    token: str
    type: int
    name: str  # "train", "voice engine", "Transcribe", or a modal's custom_id
    user: SandboxUser
    channel_id: int
    guild_id: int | None
    payload: dict[str, Any]
    message_type: int
    created: float  # monotonic
    changed: asyncio.Condition
    callback: int | None = None  # the callback type of the first response
    callback_after: float | None = None  # seconds from creation to the first response
    original: dict[str, Any] | None = None
    original_deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    modal: dict[str, Any] | None = None
    refused: list[tuple[int, str, float]] = field(default_factory=list)  # code, what, after

    @property
    def deferred(self) -> bool:
        return self.callback == DEFERRED

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The original response (unless deleted) and the followups, in order."""
        first = [self.original] if self.original is not None and not self.original_deleted else []
        return first + self.followups

    def finished_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if not is_loading(m)]

    async def wait(self, check: Callable[[InteractionRecord], bool], timeout: float = 15.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: check(self)), timeout)

    async def responded(self, timeout: float = 15.0) -> InteractionRecord:
        """Wait for the first response (any callback type)."""
        await self.wait(lambda r: r.callback is not None, timeout)
        return self

    async def reply(
        self,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The first finished message of this interaction (original or followup) matching."""

        def find() -> dict[str, Any] | None:
            return next(
                (m for m in self.finished_messages() if predicate is None or predicate(m)), None
            )

        await self.wait(lambda _r: find() is not None, timeout)
        return find()  # type: ignore[return-value]

    async def replies(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        await self.wait(lambda r: len(r.finished_messages()) >= count, timeout)
        return self.finished_messages()[:count]


class Interactions:
    """The interaction side of the sandbox (see the module's docstring)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.registry = Registry(sandbox.APPLICATION_ID, sandbox._next_id)
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
        target = self.sandbox.messages.get(int(message_id))
        if target is None:
            raise ValueError(f"there is no message {message_id} to use {name!r} on")
        channel_id = int(target["channel_id"])
        user, channel_id, guild = self._where(author, channel_id, self.sandbox._is_dm(channel_id))
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
        inputs = list(_text_inputs(shown.modal["components"]))
        if isinstance(values, str):
            if len(inputs) != 1:
                raise ValueError("that modal has several inputs: give them by name")
            values = {inputs[0][0]["custom_id"]: values}
        filled: dict[str, str] = {}
        for component, label in inputs:
            value = values.get(component["custom_id"], values.get(label or "", ""))
            _check_input(component, label, value)
            filled[component["custom_id"]] = value
        data = {
            "custom_id": shown.modal["custom_id"],
            "components": _submitted(shown.modal["components"], filled),
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
        user = self.sandbox.user(author)
        if dm:
            return user, self.sandbox._dm_channel(user.id), None
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
            attachment = self.sandbox._store_file(filename, data)
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
        interaction_id = self.sandbox._next_id()
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
        await self.sandbox._publish("INTERACTION_CREATE", payload)
        return record

    # ----- the bot's side: sync ----------------------------------------------------------------

    def routes(self, prefix: str) -> list[web.RouteDef]:
        app = prefix + "/applications/{application_id}"
        hook = prefix + "/webhooks/{application_id}/{token}"
        return [
            web.put(app + "/commands", self._put_commands),
            web.get(app + "/commands", self._get_commands),
            web.put(app + "/guilds/{guild_id}/commands", self._put_commands),
            web.get(app + "/guilds/{guild_id}/commands", self._get_commands),
            web.post(prefix + "/interactions/{interaction_id}/{token}/callback", self._callback),
            web.post(hook, self._followup),
            web.get(hook + "/messages/{message_id}", self._get_message),
            web.patch(hook + "/messages/{message_id}", self._edit_message),
            web.delete(hook + "/messages/{message_id}", self._delete_message),
        ]

    def _scope(self, request: web.Request) -> tuple[bool, int | None]:
        """(known application and server?, the server's id or None for global)."""
        if request.match_info["application_id"] != str(self.sandbox.APPLICATION_ID):
            return False, None
        raw = request.match_info.get("guild_id")
        if raw is None:
            return True, None
        known = raw.isdigit() and any(g.id == int(raw) for g in self.sandbox.world.guilds.values())
        return known, int(raw) if raw.isdigit() else None

    async def _put_commands(self, request: web.Request) -> web.Response:
        known, guild_id = self._scope(request)
        if not known:
            return _error(403, 50001, "Missing Access")
        try:
            stored = self.registry.replace(guild_id, await request.json())
        except InvalidFormBody as exc:
            log.info("sandbox refused a command sync: %s", exc)
            return _json(exc.body, status=400)
        async with self.changed:
            self.changed.notify_all()
        return _json(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        known, guild_id = self._scope(request)
        if not known:
            return _error(403, 50001, "Missing Access")
        return _json(self.registry.listing(guild_id))

    # ----- the bot's side: responses -----------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        record = self.records.get(int(request.match_info["interaction_id"]))
        if record is None or not secrets.compare_digest(record.token, request.match_info["token"]):
            return _error(404, 10062, "Unknown interaction")
        body, uploads = await self.sandbox._read_message_body(request)
        after = time.monotonic() - record.created
        if record.callback is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type")
        if after > FIRST_RESPONSE_SECONDS:
            record.refused.append((10062, f"callback type {kind}", after))
            self.late.append(record)
            log.warning(
                "interaction %s (%s) answered %.2f s after it was created: too late (10062)",
                record.id,
                record.name,
                after,
            )
            await self._notify()
            return _error(404, 10062, "Unknown interaction")
        if kind not in ALLOWED_CALLBACKS[record.type]:
            return _invalid(
                ("type",), "INTERACTION_RESPONSE_TYPE_INVALID", f"Type {kind} not allowed"
            )
        data = body.get("data") or {}
        problem = _check_callback(kind, data)
        if problem is not None:
            return _invalid(*problem)
        record.callback, record.callback_after = kind, after
        if kind == MESSAGE_REPLY:
            record.original = await self._new_message(record, data, uploads, data.get("flags", 0))
        elif kind == DEFERRED:
            flags = LOADING | (data.get("flags", 0) & EPHEMERAL)
            record.original = await self._new_message(record, {}, [], flags)
        elif kind == CHOICES:
            record.choices = list(data.get("choices") or [])
            self._tell("INTERACTION_CHOICES", {"id": str(record.id), "choices": record.choices})
        elif kind == MODAL:
            record.modal = data
            self._tell("INTERACTION_MODAL", {"id": str(record.id), "modal": data})
        await self._notify()
        return _json(self._callback_body(record, kind))

    def _callback_body(self, record: InteractionRecord, kind: int) -> dict[str, Any]:
        original = record.original
        interaction: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "activity_instance_id": None,
            "response_message_id": original["id"] if original else None,
            "response_message_loading": kind == DEFERRED,
            "response_message_ephemeral": bool(original and is_ephemeral(original)),
        }
        resource: dict[str, Any] = {"type": kind}
        if kind == MESSAGE_REPLY and original is not None:
            resource["message"] = original
        return {"interaction": interaction, "resource": resource}

    def _by_token(self, request: web.Request) -> InteractionRecord | web.Response:
        token = request.match_info["token"]
        record = next((r for r in self.records.values() if r.token == token), None)
        if record is None or request.match_info["application_id"] != str(
            self.sandbox.APPLICATION_ID
        ):
            return _error(404, 10015, "Unknown Webhook")
        if time.monotonic() - record.created > TOKEN_SECONDS:
            return _error(401, 50027, "Invalid Webhook Token")
        if record.callback is None:
            return _error(404, 10015, "Unknown Webhook")  # followups need a first response
        return record

    async def _followup(self, request: web.Request) -> web.Response:
        record = self._by_token(request)
        if isinstance(record, web.Response):
            return record
        body, uploads = await self.sandbox._read_message_body(request)
        original = record.original
        if original is not None and not record.original_deleted and is_loading(original):
            # The first followup after a defer replaces the loading message, flags and all.
            message = await self._edit(record, original, body, uploads)
        else:
            message = await self._new_message(record, body, uploads, body.get("flags", 0))
            record.followups.append(message)
        await self._notify()
        if request.query.get("wait") in ("1", "true", "True"):
            return _json(message)
        return web.Response(status=204)

    def _find(self, record: InteractionRecord, message_id: str) -> dict[str, Any] | None:
        if message_id == "@original":
            return None if record.original_deleted else record.original
        return next((m for m in record.messages if m["id"] == message_id), None)

    async def _get_message(self, request: web.Request) -> web.Response:
        record = self._by_token(request)
        if isinstance(record, web.Response):
            return record
        message = self._find(record, request.match_info["message_id"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return _json(message)

    async def _edit_message(self, request: web.Request) -> web.Response:
        record = self._by_token(request)
        if isinstance(record, web.Response):
            return record
        message = self._find(record, request.match_info["message_id"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        body, uploads = await self.sandbox._read_message_body(request)
        await self._edit(record, message, body, uploads)
        await self._notify()
        return _json(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        record = self._by_token(request)
        if isinstance(record, web.Response):
            return record
        message = self._find(record, request.match_info["message_id"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        if message is record.original:
            record.original_deleted = True
        else:
            record.followups.remove(message)
        if is_ephemeral(message):
            self.ephemeral.pop(int(message["id"]), None)
            self._tell("MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"]})
        else:
            self.sandbox.messages.pop(int(message["id"]), None)
            deleted = {"id": message["id"], "channel_id": message["channel_id"]}
            if "guild_id" in message:
                deleted["guild_id"] = message["guild_id"]
            await self.sandbox._publish("MESSAGE_DELETE", deleted)
        await self._notify()
        return web.Response(status=204)

    # ----- messages ----------------------------------------------------------------------------

    async def _new_message(
        self, record: InteractionRecord, data: dict[str, Any], uploads: list[Any], flags: int
    ) -> dict[str, Any]:
        sandbox = self.sandbox
        attachments = [sandbox._store_file(f.filename, f.data) for f in uploads]
        message = sandbox._message(
            sandbox.bot_user,
            record.channel_id,
            data.get("content") or "",
            attachments=attachments,
            flags=flags & (EPHEMERAL | LOADING),
            embeds=data.get("embeds"),
        )
        message.update(
            type=record.message_type,
            application_id=str(sandbox.APPLICATION_ID),
            webhook_id=str(sandbox.APPLICATION_ID),
            interaction_metadata={
                "id": str(record.id),
                "type": record.type,
                "user": record.user.payload(),
                "authorizing_integration_owners": record.payload["authorizing_integration_owners"],
            },
        )
        if is_ephemeral(message):
            sandbox.messages.pop(int(message["id"]), None)  # never in the channel's history
            self.ephemeral[int(message["id"])] = message
            self._tell("MESSAGE_CREATE", message)
        else:
            await sandbox._publish("MESSAGE_CREATE", message)
        return message

    async def _edit(
        self,
        record: InteractionRecord,
        message: dict[str, Any],
        body: dict[str, Any],
        uploads: list[Any],
    ) -> dict[str, Any]:
        for key in ("content", "embeds"):
            if key in body:
                message[key] = body[key] or ([] if key == "embeds" else "")
        if "attachments" in body or uploads:
            kept = {str(a.get("id")) for a in body.get("attachments") or []}
            message["attachments"] = [a for a in message["attachments"] if a["id"] in kept] + [
                self.sandbox._store_file(f.filename, f.data) for f in uploads
            ]
        message["flags"] = message.get("flags", 0) & ~LOADING
        message["edited_timestamp"] = None if is_ephemeral(message) else message["timestamp"]
        if is_ephemeral(message):
            self._tell("MESSAGE_UPDATE", message)
        else:
            await self.sandbox._publish("MESSAGE_UPDATE", message)
        return message

    def _tell(self, event: str, data: dict[str, Any]) -> None:
        """What only the user sees (ephemeral messages, choices, modals): the console's
        listeners, never the gateway."""
        for listener in self.sandbox.listeners:
            listener(event, data)

    async def _notify(self) -> None:
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


def _invalid(path: tuple[str, ...], code: str, message: str) -> web.Response:
    return _json(InvalidFormBody([(("data",) + path, code, message)]).body, status=400)


def _check_callback(kind: int, data: dict[str, Any]) -> tuple[tuple[str, ...], str, str] | None:
    """What Discord would refuse in a callback's data: too many or bad choices, a bad modal."""
    if kind == CHOICES:
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) > 25:
            return ("choices",), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
        for i, choice in enumerate(choices):
            if not 1 <= len(str(choice.get("name", ""))) <= 100:
                return ("choices", str(i), "name"), "BASE_TYPE_BAD_LENGTH", "1 to 100 characters"
            if isinstance(choice.get("value"), str) and len(choice["value"]) > 100:
                return ("choices", str(i), "value"), "BASE_TYPE_BAD_LENGTH", "1 to 100 characters"
    if kind == MODAL:
        if not 1 <= len(str(data.get("custom_id", ""))) <= 100:
            return ("custom_id",), "BASE_TYPE_BAD_LENGTH", "1 to 100 characters"
        if not 1 <= len(str(data.get("title", ""))) <= 45:
            return ("title",), "BASE_TYPE_BAD_LENGTH", "1 to 45 characters"
        inputs = list(_text_inputs(data.get("components") or []))
        if not 1 <= len(inputs) <= MAX_MODAL_INPUTS:
            return ("components",), "BASE_TYPE_BAD_LENGTH", "1 to 5 components"
        for component, label in inputs:
            if not 1 <= len(label or "") <= 45:
                return ("components",), "BASE_TYPE_BAD_LENGTH", "a label of 1 to 45 characters"
            if component.get("max_length", 4000) > 4000:
                return ("components",), "NUMBER_TYPE_MAX", "max_length is at most 4000"
    return None


def _text_inputs(components: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(text input, its label) in a modal: in action rows (type 1) or labels (type 18)."""
    for component in components:
        if component.get("type") == 1:
            for child in component.get("components") or []:
                if child.get("type") == 4:
                    yield child, child.get("label")
        elif component.get("type") == 18 and component.get("component", {}).get("type") == 4:
            yield component["component"], component.get("label")


def _check_input(component: dict[str, Any], label: str | None, value: str) -> None:
    """What Discord's client enforces before it lets a user submit."""
    required = component.get("required", True)
    low, high = component.get("min_length", 0), component.get("max_length", 4000)
    if required and not value:
        raise ValueError(f"the modal's {label!r} must be filled in")
    if value and not low <= len(value) <= high:
        raise ValueError(f"the modal's {label!r} takes {low} to {high} characters")


def _submitted(components: list[dict[str, Any]], filled: dict[str, str]) -> list[dict[str, Any]]:
    """The modal's components as Discord sends them back on submit: ids and values."""
    out: list[dict[str, Any]] = []
    for component in components:
        if component.get("type") == 1:
            children = [
                {"type": 4, "custom_id": c["custom_id"], "value": filled.get(c["custom_id"], "")}
                for c in component.get("components") or []
                if c.get("type") == 4
            ]
            out.append({"type": 1, "components": children})
        elif component.get("type") == 18:
            inner = component.get("component", {})
            out.append(
                {
                    "type": 18,
                    "id": component.get("id"),
                    "component": {
                        "type": inner.get("type"),
                        "custom_id": inner.get("custom_id"),
                        "value": filled.get(inner.get("custom_id", ""), ""),
                    },
                }
            )
    return out
