"""The bot's voice: text made speakable, spoken by an engine, and played in a voice channel.

Owns: the synthesis engines (`gtts`, `piper` with `piper_voice`, `espeak`, sharing `clips`),
`synthesis.SynthesisService` (fallback order, sentence streaming, voices per language),
`spoken_text` (Discord markup to speakable text), `sentences`, `player.PlaybackQueue` (one
queue per server), and `reading` (a text channel read aloud: turns, names, edits).
Offers them to the voice cog; nothing here imports discord.
"""
