"""Hearing: what people say in a voice channel, received and, by consent, understood.

Owns: `receive` (RTP parsing, transport decryption, DAVE, a jitter buffer, Opus decoding into
20 ms mono frames) and `listening` (voice activity, utterances, wake words, captions and
requests). Offers `receive.pipeline.ReceivePipeline` to the voice client in `bot.cogs._receiver`
and `listening.service.ListeningService` to the listen cog; nothing here imports discord.
"""
