"""The operator's view: `doctor` checks an install before it goes live (`python -m bot
doctor`); `observe` serves /metrics, /healthz and /readyz (METRICS_PORT) and answers
`python -m bot health`."""
