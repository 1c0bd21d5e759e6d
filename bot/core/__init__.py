"""The bot itself and what the cogs share; the one layer that imports discord.py besides them.

Owns: `bot.VoiceChatBot` (loads the cogs, owns the services and the `speaker`), `context`
(`VoiceContext`: the one way to answer), `checks` (permissions and scopes), `replies` (what a
failure tells the user), `speaker` (joining voice, the playback queue), `voice_client`
(receiving voice), `gateway` (shards' login turns), `scope_option` (the owners' scope of a
command, declared once), `help`, `suggest`, `messages`, `jobs` and `command_metrics`.
Imports services and `bot.config`; never a cog.
"""
