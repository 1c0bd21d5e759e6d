"""Listening in a voice channel: what the bot hears, by consent, becomes captions and chat.

The receiving end (RTP, transport decryption, DAVE, Opus) lives in the sibling package
`hearing.receive` and the discord.py-facing voice client in `bot.cogs._receiver`; it hands
decoded audio to an `AudioSink` (sink.py). This package turns that audio into utterances,
captions and requests.
"""
