"""Every Prometheus metric of the bot and its workers, declared once (issue #21).

The metrics live in one registry, `REGISTRY`, with the standard process and platform
collectors (RSS, CPU, open files). Code anywhere counts with them (`COMMANDS.labels(...)
.inc()`): counting costs about a microsecond and needs nothing running. They are *served*
only when `METRICS_PORT` is set (bot/services/ops/observe.py serves `/metrics`, `/healthz` and
`/readyz`), each process on its own port.

Names follow Prometheus' conventions (seconds, bytes; counters end in `_total`, which
prometheus-client adds). Where discord-ext-prometheus has a name for the same thing
(`discord_connected`, `discord_latency`, `discord_event_on_command`,
`discord_event_on_interaction`, `discord_stat_total_guilds`), it is used as is, so that
library's published Grafana dashboard works; the bot's own metrics start with `voicechat_`.
Labels are bounded: command names, engines, languages, shards, outcomes; never a server or a
user. docs/OPERATIONS.md lists every metric with its meaning.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Outcomes of a command, an interaction or a transcription.
OK = "ok"
USER_ERROR = "user_error"  # bad input, no permission, not found: the user can fix it
LIMITED = "limited"  # refused by a rate limit, an allowance or a full queue
FAILED = "failed"  # a bug or an engine down: the user got the apology
OUTCOMES = (OK, USER_ERROR, LIMITED, FAILED)
# ... of a transcription besides ok and failed:
NO_SPEECH = "no_speech"  # silent audio, or no engine understood a word
UNAVAILABLE = "unavailable"  # every engine down, or none for the language
# ... of an utterance heard while listening:
CAPTIONED, EMPTY, DROPPED = "captioned", "empty", "dropped"
# ... of a training besides ok and failed:
REFUSED = "refused"  # the dataset can't be trained (not found, one label): the user can fix it
# The model's answers.
SURE, NOT_SURE = "sure", "not_sure"

# Seconds: from a few ms (a command) to minutes (a long transcription, a training).
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
_RATIO = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
_LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# --- gateway (discord-ext-prometheus names) ---------------------------------------------------

CONNECTED = Gauge(
    "discord_connected", "1 while the shard is connected to the gateway", ["shard"],
    registry=REGISTRY,
)  # fmt: skip
LATENCY = Gauge(
    "discord_latency", "Gateway heartbeat latency of the shard, seconds", ["shard"],
    registry=REGISTRY,
)  # fmt: skip
GUILDS = Gauge("discord_stat_total_guilds", "Servers this process sees", registry=REGISTRY)
SHARDS = Gauge("voicechat_shards", "Shards this process runs", registry=REGISTRY)
ON_COMMAND = Counter(
    "discord_event_on_command", "`!` and hybrid commands invoked", ["command"], registry=REGISTRY
)
ON_INTERACTION = Counter(
    "discord_event_on_interaction",
    "Interactions received (slash commands, menus, autocomplete)",
    ["shard", "interaction", "command"],
    registry=REGISTRY,
)

# --- commands and interactions -------------------------------------------------------------------

COMMANDS = Counter(
    "voicechat_commands",
    "Commands answered, by name, kind (prefix, slash, menu) and outcome",
    ["command", "kind", "outcome"],
    registry=REGISTRY,
)
COMMAND_SECONDS = Histogram(
    "voicechat_command_duration_seconds",
    "Time from a command's arrival to its answer",
    ["command"],
    buckets=_FAST,
    registry=REGISTRY,
)

# --- speech ------------------------------------------------------------------------------------

TRANSCRIPTIONS = Counter(
    "voicechat_transcriptions",
    "Recordings transcribed, by engine, language (the one heard) and outcome",
    ["engine", "language", "outcome"],
    registry=REGISTRY,
)
AUDIO_SECONDS = Counter(
    "voicechat_audio_transcribed_seconds", "Seconds of audio transcribed", registry=REGISTRY
)
RECOGNITION_SECONDS = Histogram(
    "voicechat_recognition_duration_seconds",
    "Time to recognize one recording (all its pieces)",
    ["engine"],
    buckets=_SLOW,
    registry=REGISTRY,
)
RECOGNITION_RTF = Histogram(
    "voicechat_recognition_real_time_factor",
    "Recognition time divided by the audio's length",
    ["engine"],
    buckets=_RATIO,
    registry=REGISTRY,
)
FIRST_TEXT_SECONDS = Histogram(
    "voicechat_transcript_first_text_seconds",
    "Time from the start of a streamed transcription to its first text",
    buckets=_FAST,
    registry=REGISTRY,
)

# --- voice -------------------------------------------------------------------------------------

SAY_FIRST_PACKET_SECONDS = Histogram(
    "voicechat_say_first_audio_seconds",
    "Time from a spoken request (!say, a spoken reply) to its first audio being played",
    buckets=_FAST,
    registry=REGISTRY,
)
VOICE_QUEUE = Gauge(
    "voicechat_voice_queue_length",
    "Items waiting to be spoken, summed over the servers of this process",
    registry=REGISTRY,
)
VOICE_CONNECTIONS = Gauge(
    "voicechat_voice_connections", "Voice channels this process is connected to", registry=REGISTRY
)
UTTERANCES = Counter(
    "voicechat_listening_utterances",
    "Utterances heard while listening in voice, by outcome (captioned, empty, dropped)",
    ["outcome"],
    registry=REGISTRY,
)
CAPTION_SECONDS = Histogram(
    "voicechat_caption_latency_seconds",
    "Time from the end of an utterance to its caption being posted",
    buckets=_FAST,
    registry=REGISTRY,
)

# --- the chat model ----------------------------------------------------------------------------

TRAININGS = Counter(
    "voicechat_trainings", "Trainings finished, by outcome", ["outcome"], registry=REGISTRY
)
TRAINING_SECONDS = Histogram(
    "voicechat_training_duration_seconds", "Time a training took", buckets=_SLOW, registry=REGISTRY
)
PREDICTIONS = Counter(
    "voicechat_predictions",
    "Chat messages the model answered, by answer (sure or not_sure)",
    ["answer"],
    registry=REGISTRY,
)
LOADED_MODELS = Gauge(
    "voicechat_loaded_models", "Chat models loaded in this process", registry=REGISTRY
)
CACHED_TENANTS = Gauge(
    "voicechat_cached_tenants", "Servers whose services this process keeps", registry=REGISTRY
)

# --- tasks (workers) ---------------------------------------------------------------------------

TASKS_QUEUED = Gauge(
    "voicechat_tasks_queued", "Tasks sent to workers and not yet started", ["task"],
    registry=REGISTRY,
)  # fmt: skip
TASKS_RUNNING = Gauge(
    "voicechat_tasks_running", "Tasks running in this process", ["task"], registry=REGISTRY
)
TASKS = Counter(
    "voicechat_tasks", "Tasks finished, by task and outcome", ["task", "outcome"],
    registry=REGISTRY,
)  # fmt: skip
TASKS_REDELIVERED = Counter(
    "voicechat_tasks_redelivered",
    "Tasks taken over from a worker that died before finishing them",
    ["task"],
    registry=REGISTRY,
)

# --- the process -------------------------------------------------------------------------------

LOOP_LAG = Histogram(
    "voicechat_event_loop_lag_seconds",
    "How late a 100 ms ticker on the event loop wakes up",
    buckets=_LAG,
    registry=REGISTRY,
)
