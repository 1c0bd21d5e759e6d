"""Logging, configured once at start: console and a rotating file under DATA_DIR/logs."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str, log_dir: Path, console: bool = True) -> None:
    """`console=False` keeps the terminal for the sandbox chat; warnings still show there."""
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.handlers.RotatingFileHandler(
        log_dir / "bot.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
    )
    file_handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(file_handler)
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter(FORMAT))
    stream.setLevel(level if console else logging.WARNING)
    root.addHandler(stream)
    # discord.py logs every gateway event at DEBUG; keep its INFO and above.
    logging.getLogger("discord").setLevel(max(logging.INFO, root.level))
