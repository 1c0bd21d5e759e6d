"""The sandbox's REST routes under /api/v10, as Discord answers them.

The gateway's address (`/gateway`, `/gateway/bot` with the shard count and login limits),
the bot's user and application (401 for a token the sandbox refuses), DM channels, messages
(create, list, get, edit, delete; in text channels, the text chat of voice channels and DMs),
typing, reactions and attachment downloads, and the voice endpoint's CA. The interaction
routes live in `responses.py`; anything else is a logged 404.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from bot.sandbox.gateway import Application, Gateway
from bot.sandbox.messages import MessageStore, SentFile, deleted_event
from bot.sandbox.voice import VoiceServer
from bot.sandbox.world import now_iso

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# The certificate authority of the voice endpoint's TLS, for bots in other processes.
CA_PATH = "/sandbox/ca.pem"
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
UNKNOWN_MESSAGE = {"message": "Unknown Message", "code": 10008}


def json_response(data: Any, status: int = 200) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly application/json.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


async def read_message_body(request: web.Request) -> tuple[dict[str, Any], list[SentFile]]:
    """A message's JSON body and the files uploaded with it (multipart or plain JSON)."""
    if not request.content_type.startswith("multipart/"):
        return await request.json(), []
    body: dict[str, Any] = {}
    uploads: list[SentFile] = []
    reader = await request.multipart()
    async for part in reader:
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.filename:
            data = bytes(await part.read())
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            uploads.append(SentFile(part.filename, data, content_type))
    return body, uploads


class Rest:
    """The REST routes (see the module's docstring)."""

    def __init__(
        self,
        store: MessageStore,
        gateway: Gateway,
        application: Application,
        voice: VoiceServer,
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.application = application
        self.voice = voice
        self.world = store.world
        self.typing: list[tuple[int, float]] = []  # (channel id, monotonic time)
        self.reactions: list[tuple[int, str]] = []  # (message id, emoji)

    def routes(self, *more: web.RouteDef) -> list[web.RouteDef]:
        """Every route: the gateway's websocket, these, `more` (the interactions' endpoints),
        and a 404 for the rest of the API."""
        p = API_PREFIX
        return [
            web.get("/gateway", self.gateway.connect),
            web.get(p + "/gateway", self._get_gateway),
            web.get(p + "/gateway/bot", self._get_gateway_bot),
            web.get(p + "/users/@me", self._get_me),
            web.get(p + "/oauth2/applications/@me", self._get_application),
            web.get(p + "/applications/@me", self._get_application),
            web.post(p + "/users/@me/channels", self._create_dm),
            web.post(p + "/channels/{channel_id}/messages", self._create_message),
            web.get(p + "/channels/{channel_id}/messages", self._list_messages),
            web.get(p + "/channels/{channel_id}/messages/{message_id}", self._get_message),
            web.patch(p + "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            web.delete(p + "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            web.post(p + "/channels/{channel_id}/typing", self._typing),
            web.put(
                p + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._add_reaction,
            ),
            web.get("/attachments/{attachment_id}/{filename}", self._download),
            web.get(CA_PATH, self._voice_ca),
            *more,
            web.route("*", p + "/{tail:.*}", self._not_found),
        ]

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway.url()})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(self.gateway.logins.gateway_bot(self.gateway.url()))

    def _authorized(self, request: web.Request) -> bool:
        """Whether the request carries a bot token the sandbox accepts (`token`, else any)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bot" and self.application.accepts(token)

    async def _get_me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, status=401)
        bot_user = self.world.bot_user
        return json_response({**bot_user.payload(), "verified": True, "mfa_enabled": False})

    async def _get_application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return json_response(UNAUTHORIZED, status=401)
        return json_response(
            {
                "id": str(self.application.id),
                "name": self.world.bot_user.name,
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.world.users["owner"].payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": self.application.flags,
                "summary": "",
            }
        )

    async def _create_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        return json_response(self.store.dm_payload(int(body["recipient_id"])))

    async def _create_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        body, uploads = await read_message_body(request)
        attachments = [self.store.store_file(f.filename, f.data) for f in uploads]
        reference = (body.get("message_reference") or {}).get("message_id")
        message = self.store.message(
            self.world.bot_user,
            channel_id,
            body.get("content") or "",
            attachments=attachments,
            reference=int(reference) if reference else None,
            embeds=body.get("embeds"),
        )
        # Discord echoes the bot's own messages
        await self.gateway.publish("MESSAGE_CREATE", message)
        return json_response(message)

    def _find_message(self, request: web.Request) -> dict[str, Any] | None:
        message = self.store.messages.get(int(request.match_info["message_id"]))
        if message and message["channel_id"] == request.match_info["channel_id"]:
            return message
        return None

    async def _get_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return json_response(UNKNOWN_MESSAGE, status=404)
        return json_response(message)

    async def _list_messages(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel_id"]
        limit = int(request.query.get("limit", "50"))
        found = [m for m in self.store.messages.values() if m["channel_id"] == channel]
        return json_response(sorted(found, key=lambda m: int(m["id"]), reverse=True)[:limit])

    async def _edit_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return json_response(UNKNOWN_MESSAGE, status=404)
        body, uploads = await read_message_body(request)
        for key in ("content", "embeds"):
            if key in body:
                message[key] = body[key]
        if "attachments" in body:  # the ones listed by id stay; new files are added
            keep = {str(a.get("id")) for a in body["attachments"]}
            kept = [a for a in message["attachments"] if a["id"] in keep]
            added = [self.store.store_file(f.filename, f.data) for f in uploads]
            message["attachments"] = kept + added
        message["edited_timestamp"] = now_iso()
        await self.gateway.publish("MESSAGE_UPDATE", message)
        return json_response(message)

    async def _delete_message(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return json_response(UNKNOWN_MESSAGE, status=404)
        del self.store.messages[int(message["id"])]
        await self.gateway.publish("MESSAGE_DELETE", deleted_event(message))
        return web.Response(status=204)

    async def _typing(self, request: web.Request) -> web.Response:
        self.typing.append((int(request.match_info["channel_id"]), time.monotonic()))
        return web.Response(status=204)

    async def _add_reaction(self, request: web.Request) -> web.Response:
        message = self._find_message(request)
        if message is None:
            return json_response(UNKNOWN_MESSAGE, status=404)
        self.reactions.append((int(message["id"]), request.match_info["emoji"]))
        return web.Response(status=204)

    async def _download(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['attachment_id']}/{request.match_info['filename']}"
        sent = self.store.files.get(key)
        if sent is None:
            return web.Response(status=404)
        return web.Response(body=sent.data, headers={"Content-Type": sent.content_type})

    async def _voice_ca(self, request: web.Request) -> web.Response:
        """The voice endpoint's CA (PEM): a bot in another process (SANDBOX_URL) trusts it.
        Served over plain loopback HTTP, like everything of the sandbox but voice."""
        return web.Response(body=self.voice.ca_pem, content_type="application/x-pem-file")

    async def _not_found(self, request: web.Request) -> web.Response:
        log.warning("sandbox has no route for %s %s", request.method, request.path)
        return json_response({"message": "404: Not Found", "code": 0}, status=404)
