"""Who and what exists in the sandbox: users, servers, their channels and voice states.

Four servers, each with a text and a voice channel and its own people:

- **Sandbox**: `owner` (the application's owner and the server's owner), `moderator` (holds
  the admin role) and `member`;
- **Second**: `alice` (the server's owner, holds the admin role) and `bob`;
- **Third**: `carol` (owner and admin) and `dave`;
- **Fourth**: `erin` (owner and admin) and `frank`.

Their ids spread them over shards (`(id >> 22) % count`): with 2 shards, Third and Fourth are
on shard 0 and Sandbox and Second on shard 1; with 4 shards each has its own (Third 0, Second
1, Fourth 2, Sandbox 3).

The payload builders give what Discord sends for these things (GUILD_CREATE, members, voice
states), with ids as strings as Discord sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class SandboxUser:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass(frozen=True)
class SandboxGuild:
    key: str  # how the console and tests name it: "sandbox", "second"
    id: int
    name: str
    text_channel_id: int
    voice_channel_id: int
    admin_role_id: int
    owner: str  # user key
    members: tuple[str, ...]  # user keys, the owner included
    admins: tuple[str, ...]  # user keys holding the admin role

    @property
    def channel_ids(self) -> tuple[int, int]:
        return (self.text_channel_id, self.voice_channel_id)


def _guild(
    key: str, name: str, base: int, owner: str, members: tuple[str, ...], admins: tuple[str, ...]
) -> SandboxGuild:
    return SandboxGuild(
        key=key,
        id=base + 1,
        name=name,
        text_channel_id=base + 10,
        voice_channel_id=base + 20,
        admin_role_id=base + 30,
        owner=owner,
        members=members,
        admins=admins,
    )


SANDBOX = _guild(
    "sandbox",
    "Sandbox",
    1_100_000_000_000_000_000,
    "owner",
    ("owner", "moderator", "member"),
    ("moderator",),
)
SECOND = _guild(
    "second", "Second", 1_200_000_000_000_000_000, "alice", ("alice", "bob"), ("alice",)
)
THIRD = _guild("third", "Third", 1_300_000_000_000_000_000, "carol", ("carol", "dave"), ("carol",))
FOURTH = _guild("fourth", "Fourth", 1_400_000_000_000_000_000, "erin", ("erin", "frank"), ("erin",))
GUILDS = (SANDBOX, SECOND, THIRD, FOURTH)


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that carries a server, as Discord computes it."""
    return (guild_id >> 22) % shard_count


class World:
    """The users and servers of the sandbox, and who is in which voice channel."""

    def __init__(self, admin_role: str = "Bot Admin") -> None:
        self.admin_role = admin_role
        self.bot_user = SandboxUser(1_100_000_000_000_000_100, "VoiceChatBot", bot=True)
        self.users = {
            "owner": SandboxUser(1_100_000_000_000_000_201, "owner"),
            "moderator": SandboxUser(1_100_000_000_000_000_202, "moderator"),
            "member": SandboxUser(1_100_000_000_000_000_203, "member"),
            "alice": SandboxUser(1_200_000_000_000_000_201, "alice"),
            "bob": SandboxUser(1_200_000_000_000_000_202, "bob"),
            "carol": SandboxUser(1_300_000_000_000_000_201, "carol"),
            "dave": SandboxUser(1_300_000_000_000_000_202, "dave"),
            "erin": SandboxUser(1_400_000_000_000_000_201, "erin"),
            "frank": SandboxUser(1_400_000_000_000_000_202, "frank"),
        }
        self.guilds = {g.key: g for g in GUILDS}
        self.voice_states: dict[int, int] = {}  # user id -> voice channel id (one at a time)
        self.bot_voice: dict[int, int] = {}  # guild id -> the bot's voice channel there
        self.bot_self_deaf: dict[int, bool] = {}  # guild id -> the bot shows itself deafened
        self.nicks: dict[tuple[int, int], str] = {}  # (guild id, user id) -> server nickname

    # ----- lookups -----------------------------------------------------------------------

    def user(self, name: str) -> SandboxUser:
        try:
            return self.users[name]
        except KeyError:
            choices = ", ".join(self.users)
            raise ValueError(f"no sandbox user {name!r}; choose from {choices}") from None

    def user_by_id(self, user_id: int) -> SandboxUser:
        if user_id == self.bot_user.id:
            return self.bot_user
        return next(u for u in self.users.values() if u.id == user_id)

    def guild(self, key: str) -> SandboxGuild:
        try:
            return self.guilds[key]
        except KeyError:
            choices = ", ".join(self.guilds)
            raise ValueError(f"no sandbox server {key!r}; choose from {choices}") from None

    def guild_by_id(self, guild_id: int) -> SandboxGuild:
        return next(g for g in self.guilds.values() if g.id == guild_id)

    def guild_of_channel(self, channel_id: int) -> SandboxGuild | None:
        return next((g for g in self.guilds.values() if channel_id in g.channel_ids), None)

    def home_guild(self, user: SandboxUser) -> SandboxGuild:
        """The first server the user is a member of."""
        key = next(k for k, u in self.users.items() if u is user)
        return next(g for g in self.guilds.values() if key in g.members)

    def is_member(self, user: SandboxUser, guild: SandboxGuild) -> bool:
        return user is self.bot_user or any(self.users[k] is user for k in guild.members)

    # ----- payloads ----------------------------------------------------------------------

    def member(
        self, user: SandboxUser, guild: SandboxGuild, with_user: bool = True
    ) -> dict[str, Any]:
        admin = any(self.users[k] is user for k in guild.admins)
        member: dict[str, Any] = {
            "roles": [str(guild.admin_role_id)] if admin else [],
            "joined_at": now_iso(),
            "deaf": False,
            "mute": False,
            "nick": self.nicks.get((guild.id, user.id)),
            "flags": 0,
        }
        if with_user:
            member["user"] = user.payload()
        return member

    def voice_state(
        self,
        user: SandboxUser,
        guild: SandboxGuild,
        channel_id: int | None,
        with_member: bool = True,
    ) -> dict[str, Any]:
        state: dict[str, Any] = {
            "guild_id": str(guild.id),
            "channel_id": str(channel_id) if channel_id else None,
            "user_id": str(user.id),
            "session_id": f"session-{user.id}",
            "deaf": False,
            "mute": False,
            "self_deaf": user is self.bot_user and self.bot_self_deaf.get(guild.id, False),
            "self_mute": False,
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }
        if with_member:
            state["member"] = self.member(user, guild)
        return state

    def guild_payload(self, guild: SandboxGuild) -> dict[str, Any]:
        everyone = {"id": str(guild.id), "name": "@everyone", "permissions": "104324673"}
        admin = {"id": str(guild.admin_role_id), "name": self.admin_role, "permissions": "0"}
        roles = [
            {**r, "position": i, "color": 0, "hoist": False, "managed": False, "mentionable": False}
            for i, r in enumerate([everyone, admin])
        ]
        channels: list[dict[str, Any]] = [
            {"id": str(guild.text_channel_id), "type": 0, "name": "general", "position": 0},
            {
                "id": str(guild.voice_channel_id),
                "type": 2,
                "name": "Voice",
                "position": 1,
                "bitrate": 64000,
                "user_limit": 0,
            },
        ]
        for channel in channels:
            channel.update(guild_id=str(guild.id), permission_overwrites=[], nsfw=False)
        people = [self.bot_user, *(self.users[k] for k in guild.members)]
        members = [self.member(u, guild) for u in people]
        in_voice = [
            self.voice_state(self.user_by_id(uid), guild, cid, with_member=False)
            for uid, cid in self.voice_states.items()
            if cid == guild.voice_channel_id
        ]
        if guild.id in self.bot_voice:
            in_voice.append(
                self.voice_state(self.bot_user, guild, self.bot_voice[guild.id], with_member=False)
            )
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "owner_id": str(self.users[guild.owner].id),
            "roles": roles,
            "channels": channels,
            "members": members,
            "member_count": len(members),
            "voice_states": in_voice,
            "presences": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "premium_tier": 0,
            "nsfw_level": 0,
            "preferred_locale": "en-US",
            "joined_at": now_iso(),
            "system_channel_flags": 0,
        }
