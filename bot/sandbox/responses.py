"""The endpoints the bot answers interactions through, and command sync, as Discord has them.

- `PUT|GET /applications/{app}[/guilds/{guild}]/commands`: sync, validated like Discord
  (400, code 50035 on a bad definition; see `commands.py`).
- `POST /interactions/{id}/{token}/callback`: types 4 (message), 5 (deferred), 6 and 7
  (component updates), 8 (autocomplete choices) and 9 (modal), once per interaction and
  within FIRST_RESPONSE_SECONDS of its creation. A late first response gets 404, code 10062
  "Unknown interaction", and the interaction is kept in `Interactions.late` so tests fail on
  it. The answer is the 200 body discord.py reads (`interaction` and `resource`).
- `POST /webhooks/{app}/{token}`: followups for TOKEN_SECONDS. The first one after a type-5
  defer replaces the loading message, keeping the defer's ephemeral flag.
- `GET|PATCH|DELETE /webhooks/{app}/{token}/messages/@original` (or a followup's id).

Like Discord's webhook routes, none of these needs an Authorization header; the token in the
path is the credential.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from aiohttp import web

from bot.sandbox.commands import InvalidFormBody
from bot.sandbox.interactions import Interactions
from bot.sandbox.messages import deleted_event
from bot.sandbox.modals import text_inputs
from bot.sandbox.records import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    CHOICES,
    COMPONENT,
    DEFERRED,
    DEFERRED_UPDATE,
    EPHEMERAL,
    LOADING,
    MESSAGE_REPLY,
    MODAL,
    MODAL_SUBMIT,
    UPDATE,
    InteractionRecord,
    is_ephemeral,
    is_loading,
)
from bot.sandbox.rest import json_response, read_message_body

log = logging.getLogger(__name__)

ALLOWED_CALLBACKS = {
    APPLICATION_COMMAND: {MESSAGE_REPLY, DEFERRED, MODAL},
    COMPONENT: {MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE, MODAL},
    AUTOCOMPLETE: {CHOICES},
    MODAL_SUBMIT: {MESSAGE_REPLY, DEFERRED, DEFERRED_UPDATE, UPDATE},
}
FIRST_RESPONSE_SECONDS = 3.0
TOKEN_SECONDS = 15 * 60
MAX_MODAL_INPUTS = 5


def _error(status: int, code: int, message: str) -> web.Response:
    return json_response({"message": message, "code": code}, status=status)


class Endpoints:
    """The bot's side of interactions, served by the sandbox (see the module's docstring)."""

    def __init__(self, interactions: Interactions) -> None:
        self.interactions = interactions
        self.sandbox = interactions.sandbox

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
            stored = self.interactions.registry.replace(guild_id, await request.json())
        except InvalidFormBody as exc:
            log.info("sandbox refused a command sync: %s", exc)
            return json_response(exc.body, status=400)
        await self.interactions.notify()
        return json_response(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        known, guild_id = self._scope(request)
        if not known:
            return _error(403, 50001, "Missing Access")
        return json_response(self.interactions.registry.listing(guild_id))

    # ----- the bot's side: responses -----------------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        record = self.interactions.records.get(int(request.match_info["interaction_id"]))
        if record is None or not secrets.compare_digest(record.token, request.match_info["token"]):
            return _error(404, 10062, "Unknown interaction")
        body, uploads = await read_message_body(request)
        after = time.monotonic() - record.created
        if record.callback is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type")
        if after > FIRST_RESPONSE_SECONDS:
            record.refused.append((10062, f"callback type {kind}", after))
            self.interactions.late.append(record)
            log.warning(
                "interaction %s (%s) answered %.2f s after it was created: too late (10062)",
                record.id,
                record.name,
                after,
            )
            await self.interactions.notify()
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
            self.interactions.tell(
                "INTERACTION_CHOICES", {"id": str(record.id), "choices": record.choices}
            )
        elif kind == MODAL:
            record.modal = data
            self.interactions.tell("INTERACTION_MODAL", {"id": str(record.id), "modal": data})
        await self.interactions.notify()
        return json_response(self._callback_body(record, kind))

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
        record = next((r for r in self.interactions.records.values() if r.token == token), None)
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
        body, uploads = await read_message_body(request)
        original = record.original
        if original is not None and not record.original_deleted and is_loading(original):
            # The first followup after a defer replaces the loading message, flags and all.
            message = await self._edit(record, original, body, uploads)
        else:
            message = await self._new_message(record, body, uploads, body.get("flags", 0))
            record.followups.append(message)
        await self.interactions.notify()
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return web.Response(status=204)

    def _find(self, record: InteractionRecord, message_id: str) -> dict[str, Any] | None:
        if message_id == "@original":
            return None if record.original_deleted else record.original
        return next((m for m in record.messages if m["id"] == message_id), None)

    def _target(
        self, request: web.Request
    ) -> tuple[InteractionRecord, dict[str, Any]] | web.Response:
        """The interaction and message a webhook message route names, or Discord's error."""
        record = self._by_token(request)
        if isinstance(record, web.Response):
            return record
        message = self._find(record, request.match_info["message_id"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return record, message

    async def _get_message(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        return json_response(target[1])

    async def _edit_message(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        record, message = target
        body, uploads = await read_message_body(request)
        await self._edit(record, message, body, uploads)
        await self.interactions.notify()
        return json_response(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        record, message = target
        if message is record.original:
            record.original_deleted = True
        else:
            record.followups.remove(message)
        if is_ephemeral(message):
            self.interactions.ephemeral.pop(int(message["id"]), None)
            self.interactions.tell(
                "MESSAGE_DELETE", {"id": message["id"], "channel_id": message["channel_id"]}
            )
        else:
            self.sandbox.store.messages.pop(int(message["id"]), None)
            await self.sandbox.publish("MESSAGE_DELETE", deleted_event(message))
        await self.interactions.notify()
        return web.Response(status=204)

    # ----- messages ----------------------------------------------------------------------------

    async def _new_message(
        self, record: InteractionRecord, data: dict[str, Any], uploads: list[Any], flags: int
    ) -> dict[str, Any]:
        sandbox, store = self.sandbox, self.sandbox.store
        attachments = [store.store_file(f.filename, f.data) for f in uploads]
        message = store.message(
            sandbox.world.bot_user,
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
            store.messages.pop(int(message["id"]), None)  # never in the channel's history
            self.interactions.ephemeral[int(message["id"])] = message
            self.interactions.tell("MESSAGE_CREATE", message)
        else:
            await sandbox.publish("MESSAGE_CREATE", message)
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
                self.sandbox.store.store_file(f.filename, f.data) for f in uploads
            ]
        message["flags"] = message.get("flags", 0) & ~LOADING
        message["edited_timestamp"] = None if is_ephemeral(message) else message["timestamp"]
        if is_ephemeral(message):
            self.interactions.tell("MESSAGE_UPDATE", message)
        else:
            await self.sandbox.publish("MESSAGE_UPDATE", message)
        return message


def _invalid(path: tuple[str, ...], code: str, message: str) -> web.Response:
    return json_response(InvalidFormBody([(("data",) + path, code, message)]).body, status=400)


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
        inputs = list(text_inputs(data.get("components") or []))
        if not 1 <= len(inputs) <= MAX_MODAL_INPUTS:
            return ("components",), "BASE_TYPE_BAD_LENGTH", "1 to 5 components"
        for component, label in inputs:
            if not 1 <= len(label or "") <= 45:
                return ("components",), "BASE_TYPE_BAD_LENGTH", "a label of 1 to 45 characters"
            if component.get("max_length", 4000) > 4000:
                return ("components",), "NUMBER_TYPE_MAX", "max_length is at most 4000"
    return None
