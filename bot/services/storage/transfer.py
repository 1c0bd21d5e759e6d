"""Copy a whole database into another one (`python -m bot db copy`), e.g. an install's SQLite
file into PostgreSQL. Either backend can be either side.

Both are opened with `Storage`, so both are migrated to the latest schema first. A PostgreSQL
source is read in one snapshot, so the copy is consistent even while the bot writes. The target
must hold no data yet (apart from `meta`, which a new database already has): the copy is one
transaction on the target, so a copy that fails leaves it empty, and running it again after a
success is refused instead of doubling the rows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import LargeBinary, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.services.storage.schema import COUNTED, meta, metadata
from bot.services.storage.store import Storage, upsert

log = logging.getLogger(__name__)

BATCH_ROWS = 500
BATCH_BYTES = 16 << 20  # blobs go over in batches of about this much


class TargetNotEmptyError(Exception):
    """The target database already holds data."""


def copied_tables() -> Sequence[Table]:
    """Every table of the schema, parents before children."""
    return metadata.sorted_tables


async def row_counts(conn: AsyncConnection) -> dict[str, int]:
    counts = {}
    for table in copied_tables():
        counts[table.name] = int(await conn.scalar(select(func.count()).select_from(table)) or 0)
    return counts


async def copy_database(source: Storage, target: Storage) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; return the rows copied per table.

    Raises TargetNotEmptyError (and copies nothing) when the target has data.
    """
    async with target.transaction(begin_first=True) as into:
        held = {name: n for name, n in (await row_counts(into)).items() if n and name != "meta"}
        if held:
            listed = ", ".join(f"{name}: {rows_text(n)}" for name, n in held.items())
            raise TargetNotEmptyError(
                f"the target database already holds data ({listed}); "
                "copy into a new, empty database"
            )
        copied: dict[str, int] = {}
        async with source.transaction(snapshot=True) as out:
            for table in copied_tables():
                copied[table.name] = await _copy_table(out, into, table)
        await _continue_counters(into)
    log.info("copied %s", copied)
    return copied


async def _batches(rows: Any, binary: bool) -> AsyncIterator[list[Any]]:
    """Rows in batches of BATCH_ROWS, or for a table of bytes of about BATCH_BYTES."""
    if not binary:
        async for batch in rows.partitions(BATCH_ROWS):
            yield batch
        return
    batch, size = [], 0
    async for row in rows:
        batch.append(row)
        size += sum(len(v) for v in row.values() if isinstance(v, bytes | bytearray))
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def rows_text(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


async def _copy_table(out: AsyncConnection, into: AsyncConnection, table: Table) -> int:
    rows = await out.stream(select(table).order_by(*table.primary_key.columns))
    binary = any(isinstance(c.type, LargeBinary) for c in table.columns)
    copied = 0
    async for batch in _batches(rows.mappings(), binary):
        values = [dict(row) for row in batch]
        if table is meta:  # the target's own meta rows give way to the source's
            for row in values:
                await into.execute(upsert(into, meta, row))
        else:
            await into.execute(insert(table), values)
        copied += len(values)
    return copied


async def _continue_counters(conn: AsyncConnection) -> None:
    """New rows must get ids after the copied ones. SQLite's AUTOINCREMENT already moved on
    when the ids were inserted; a PostgreSQL sequence has to be told."""
    if conn.dialect.name != "postgresql":
        return
    for table in COUNTED:
        sequence = func.pg_get_serial_sequence(table.name, table.c.id.name)
        following = func.coalesce(func.max(table.c.id), 0) + 1
        await conn.execute(select(func.setval(sequence, following, False)))
