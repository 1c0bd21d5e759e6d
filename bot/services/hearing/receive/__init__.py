"""Receiving voice: RTP parsing and transport decryption, DAVE, a jitter buffer, Opus decoding.

No discord import: `bot.cogs._receiver` feeds raw UDP datagrams and voice-gateway facts
(SSRC → user) into `ReceivePipeline`, which hands 20 ms mono frames to an `AudioSink`.
"""
