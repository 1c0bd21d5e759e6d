"""Storage shared by every feature: settings, feedback, corrections and the reply log, on
SQLite (the default, in DATA_DIR) or PostgreSQL (DATABASE_URL).

- `store.py`: `Storage`, the one interface the rest of the bot uses.
- `engine.py`: from a URL or path to an async engine (durability, no work on the loop).
- `schema.py` and `migrations/`: the tables, built by Alembic migrations (`migrate.py`).
- `transfer.py`: `python -m bot db copy`, from one database into another.
- `blobs.py`: bytes of datasets and models by namespace and path (`DatabaseBlobs(storage)`,
  built by wiring: storage itself never imports it).
"""

from bot.services.storage.engine import DatabaseUrlError, database_url, shown_url, storable
from bot.services.storage.migrate import SCHEMA_VERSION, SchemaTooNewError
from bot.services.storage.store import (
    Correction,
    Feedback,
    ReplyLog,
    Storage,
    StorageUnavailableError,
)

__all__ = [
    "SCHEMA_VERSION",
    "Correction",
    "DatabaseUrlError",
    "Feedback",
    "ReplyLog",
    "SchemaTooNewError",
    "Storage",
    "StorageUnavailableError",
    "database_url",
    "shown_url",
    "storable",
]
