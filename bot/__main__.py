"""Entry point: `python -m bot`.

Reads the settings, sets up logging, builds the services and runs the bot: against
Discord when DISCORD_TOKEN is set, otherwise against the local sandbox with a console, or
against the sandbox at SANDBOX_URL (`python -m bot.sandbox` runs one on its own).

`python -m bot worker` runs tasks for the bot (bot/worker.py).
`python -m bot db upgrade` migrates the database (DATABASE_URL, else DATA_DIR/bot.db) and
stops; `python -m bot db copy --to URL [--from URL_OR_PATH]` copies it into another one;
`python -m bot db backup FILE` snapshots it into a new SQLite file and `python -m bot db restore
FILE` brings such a file back into an empty database.
`python -m bot doctor` checks the install (bot/services/ops/doctor.py), one line per check.
`python -m bot health` asks this machine's process on METRICS_PORT whether it is alive and
ready (bot/services/ops/observe.py): exit code 0 or 1, for a container's HEALTHCHECK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import SettingsError, load_settings
from bot.logs import setup_logging
from bot.memory import tune_malloc

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services.ops.doctor import DiscordApi
    from bot.services.ops.report import CheckResult

log = logging.getLogger("bot")

# How each `db` command says that it failed, before the reason.
FAILED = {
    "upgrade": "The upgrade failed",
    "copy": "Nothing was copied",
    "backup": "No backup was written",
    "restore": "Nothing was restored",
}


async def run_discord(settings) -> None:  # type: ignore[no-untyped-def]
    from bot.core.bot import VoiceChatBot, use_endpoints
    from bot.wiring import build_services

    use_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    services = await build_services(settings)
    async with VoiceChatBot(settings, services) as bot:
        await bot.start(settings.discord_token)


async def until_terminated(main: Coroutine[Any, Any, None]) -> None:
    """Run the bot; SIGTERM stops it as Ctrl-C does, closing it (jobs, connections) first."""
    task = asyncio.ensure_future(main)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def db_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot db", description="The bot's database.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "upgrade", help="migrate the database to the latest schema (the bot also does at start)"
    )
    copy = commands.add_parser(
        "copy", help="copy every table into another, empty database (stop the bot first)"
    )
    copy.add_argument("--to", required=True, help="target: postgresql://... or a SQLite path")
    copy.add_argument(
        "--from",
        dest="source",
        help="source (default: DATABASE_URL, else the SQLite file in DATA_DIR)",
    )
    backup = commands.add_parser(
        "backup",
        help="write a consistent snapshot of the database, blobs included, into a new SQLite "
        "file (the bot may keep running)",
    )
    backup.add_argument("file", type=Path, help="the new backup file (never overwritten)")
    restore = commands.add_parser(
        "restore", help="restore a backup into the configured database, which must be empty"
    )
    restore.add_argument("file", type=Path, help="a file written by `db backup`")
    return parser


def print_rows(heading: str, counts: dict[str, int]) -> None:
    from bot.services.storage.transfer import rows_text

    print(heading)
    for table, rows in counts.items():
        print(f"  {table}: {rows_text(rows)}")


async def run_backup(args: argparse.Namespace, settings) -> int:  # type: ignore[no-untyped-def]
    from bot.services.storage import shown_url
    from bot.services.storage.backup import backup_database, restore_database
    from bot.wiring import storage_location

    location = storage_location(settings)
    if args.command == "backup":
        counts = await backup_database(location, args.file)
        print_rows(f"Backed up {shown_url(location)} to {args.file.absolute()}:", counts)
    else:
        counts = await restore_database(args.file, location)
        print_rows(f"Restored {args.file.absolute()} into {shown_url(location)}:", counts)
    return 0


async def run_db(args: argparse.Namespace, settings) -> int:  # type: ignore[no-untyped-def]
    from bot.services.storage import Storage, shown_url
    from bot.services.storage.transfer import copy_database
    from bot.wiring import open_storage, storage_location

    if args.command in ("backup", "restore"):
        return await run_backup(args, settings)
    if args.command == "upgrade":
        storage = await open_storage(settings)
        try:
            version = await storage.schema_version()
        finally:
            await storage.close()
        print(f"{shown_url(storage.url)} is at schema version {version}.")
        return 0
    source = Storage(args.source or storage_location(settings))
    target = Storage(args.to)
    if source.url == target.url:
        print("The source and the target are the same database.", file=sys.stderr)
        return 2
    async with source, target:
        copied = await copy_database(source, target)
    print_rows(f"Copied {shown_url(source.url)} to {shown_url(target.url)}:", copied)
    print(
        "Datasets and models are still files under DATA_DIR/servers/: every process of the "
        "bot needs that folder (docs/SCALING.md)."
    )
    return 0


def db_main(argv: list[str]) -> int:
    args = db_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print("Fix these settings first:", *exc.problems, sep="\n  ", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from bot.services.storage import DatabaseUrlError
    from bot.services.storage.backup import BackupError, NotABackupError
    from bot.services.storage.transfer import TargetNotEmptyError

    failed = FAILED[args.command]
    try:
        return asyncio.run(run_db(args, settings))
    except DatabaseUrlError as exc:
        print(f"Not a database the bot can use: {exc}", file=sys.stderr)
        return 2
    except NotABackupError as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        return 2
    except (
        BackupError,
        TargetNotEmptyError,
        SQLAlchemyError,
        sqlite3.Error,
        OSError,
        RuntimeError,
    ) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        print(f"{failed}: {reason}", file=sys.stderr)
        return 1


@contextlib.asynccontextmanager
async def doctor_api(settings: Settings) -> AsyncIterator[DiscordApi]:
    """Discord with the token; without one, the sandbox at SANDBOX_URL or one started here."""
    from discord.http import Route

    from bot.sandbox.runner import SANDBOX_TOKEN
    from bot.sandbox.server import API_PREFIX, Sandbox
    from bot.services.ops.doctor import DiscordApi

    if settings.discord_token:
        base = settings.discord_api_base or Route.BASE
        where = f"the API at {base}" if settings.discord_api_base else "Discord"
        yield DiscordApi(base, settings.discord_token, where)
    elif settings.sandbox_url:
        url = settings.sandbox_url
        yield DiscordApi(url + API_PREFIX, SANDBOX_TOKEN, f"the sandbox at {url}")
    else:
        async with Sandbox(admin_role=settings.admin_role) as sandbox:
            yield DiscordApi(sandbox.api_base, SANDBOX_TOKEN, "the local sandbox (no token)")


async def run_doctor(settings: Settings, results: list[CheckResult]) -> None:
    from bot.services.ops.doctor import run_checks
    from bot.wiring import storage_location

    async with doctor_api(settings) as api:
        async for result in run_checks(settings, api, storage_location(settings)):
            print(result.line, flush=True)
            results.append(result)


def doctor_main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m bot doctor",
        description="Check the install before it goes live: settings, Discord token and "
        "intents, database, Redis, DATA_DIR, ffmpeg and the offline engines' models. "
        "Exit code 0 when every check passes (warnings allowed), 1 when one fails.",
    ).parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")  # ✓ and ✗ on a terminal that lacks them
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from bot.services.ops.doctor import check_settings, exit_code, summary

    settings, results = check_settings()
    for result in results:
        print(result.line, flush=True)
    if settings is not None:
        asyncio.run(run_doctor(settings, results))
    print(summary(results))
    return exit_code(results)


def health_main(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m bot health",
        description="Ask the bot or worker serving METRICS_PORT (on METRICS_HOST) on this "
        "machine whether it is alive (/healthz) and ready (/readyz). Exit code 0 when both "
        "answer 200, 1 otherwise, with one line saying why: for a container's HEALTHCHECK.",
    ).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:  # 1, not 2: Docker reserves 2 in a HEALTHCHECK
        print("Fix these settings first:", *exc.problems, sep="; ", file=sys.stderr)
        return 1
    from bot.services.ops.observe import probe

    healthy, line = probe(settings.metrics_host, settings.metrics_port)
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def main() -> int:
    tune_malloc()  # before any thread starts
    if sys.argv[1:2] == ["health"]:
        return health_main(sys.argv[2:])
    if sys.argv[1:2] == ["db"]:
        return db_main(sys.argv[2:])
    if sys.argv[1:2] == ["doctor"]:
        return doctor_main(sys.argv[2:])
    if sys.argv[1:2] == ["worker"]:
        from bot.worker import worker_main

        return worker_main()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(
            "The bot cannot start: fix these settings (in the environment or .env):",
            file=sys.stderr,
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.data_dir / "logs", console=not settings.console)
    from bot.services.ops.observe import PortInUseError

    try:
        if settings.console:
            from bot.sandbox.console import run_console

            asyncio.run(run_console(settings))
        elif settings.sandbox:
            from bot.sandbox.runner import run_on_sandbox

            asyncio.run(until_terminated(run_on_sandbox(settings)))
        else:
            asyncio.run(until_terminated(run_discord(settings)))
    except KeyboardInterrupt:
        pass
    except PortInUseError as exc:
        print(f"The bot cannot start: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # discord.LoginFailure and the like: one clear line
        log.error("the bot stopped: %s", exc, exc_info=exc)
        print(f"The bot stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
