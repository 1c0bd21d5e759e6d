"""Speech: audio a user sent, heard as text by an ordered chain of engines.

Owns: `audio` (ffmpeg decoding, length, silence, chunks, WAV), `recognizers` (`SpeechEngine`,
the Google and pocketsphinx engines, `build_engine`), `whisper` (faster-whisper) with
`whisper_models` (the pinned model files), `errors` (what the user is told), and `service`
(`SpeechService`, the engines at work: size checks, chunking, fallback, `auto` language,
translation; the `transcribe` task body calls it), `transcriber` (`Transcriber`, what the
cogs and listening call: a `transcribe` task on the bot's runner, here or on a worker) and
`transcript` (`Hearing`, `Transcript`, `Progress`, `AudioSource`). Nothing here imports
discord.
"""
