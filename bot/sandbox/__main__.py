"""`python -m bot.sandbox`: the sandbox as its own process, with the console but no bot.

Bots in other processes connect to it with SANDBOX_URL set to the URL it prints (each with
its SHARD_COUNT and SHARD_IDS); you chat as a user in the console, as with `python -m bot`.
scripts/cluster.sh runs it with two bot processes and two workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from bot.sandbox.console import Console, chat
from bot.sandbox.server import Sandbox

log = logging.getLogger("bot.sandbox")


def parser() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(
        prog="python -m bot.sandbox",
        description="Serve the sandbox (the local stand-in for Discord) for bots in other "
        "processes (SANDBOX_URL), with the console attached.",
    )
    options.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    options.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    options.add_argument(
        "--shards", type=int, default=2, help="shard count GET /gateway/bot recommends (2)"
    )
    options.add_argument(
        "--max-concurrency", type=int, default=1, help="logins per 5 s it accepts (1)"
    )
    options.add_argument("--admin-role", default="Bot Admin", help="the admins' role name")
    options.add_argument(
        "--out-dir",
        type=Path,
        default=Path("data/sandbox"),
        help="where files the bots send and say are saved (data/sandbox)",
    )
    options.add_argument(
        "--no-console", action="store_true", help="serve until stopped, without the console"
    )
    return options


async def serve(args: argparse.Namespace) -> None:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(
        host=args.host,
        port=args.port,
        admin_role=args.admin_role,
        out_dir=args.out_dir,
        shard_count=args.shards,
        max_concurrency=args.max_concurrency,
    )
    async with sandbox:
        print(
            f"Sandbox at {sandbox.base_url} ({args.shards} shard(s)); start bots with "
            f"SANDBOX_URL={sandbox.base_url} SHARD_COUNT={args.shards} SHARD_IDS=...",
            flush=True,
        )
        if args.no_console:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        else:
            await chat(Console(sandbox, None, args.out_dir))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.shards < 1 or args.max_concurrency < 1 or not 0 <= args.port < 65536:
        print("--shards and --max-concurrency must be 1 or more, --port 0-65535", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except OSError as exc:  # the port is taken, the folder can't be made
        print(f"The sandbox cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
