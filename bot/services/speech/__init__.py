"""Speech: audio a user sent, heard as text by an ordered chain of engines.

Owns: `audio` (ffmpeg decoding, length, silence, chunks, WAV), `recognizers` (`SpeechEngine`,
the Google and pocketsphinx engines, `build_engine`), `whisper` (faster-whisper) with
`whisper_models` (the pinned model files), `errors` (what the user is told), and `service`
(`SpeechService`: size checks, chunking, fallback, `auto` language, translation), with
`by_task` (the same work as a `transcribe` task on a runner) and `transcript` (`Hearing`,
`Transcript`, `Progress`, `AudioSource`). Offers them to the cogs, listening, the task bodies
and wiring; nothing here imports discord.
"""
