"""Entry point: `python -m bot`.

Reads the settings, sets up logging, builds the services and runs the bot: against
Discord when DISCORD_TOKEN is set, otherwise against the local sandbox with a console.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from bot.config import SettingsError, load_settings
from bot.logs import setup_logging

log = logging.getLogger("bot")


async def run_discord(settings) -> None:  # type: ignore[no-untyped-def]
    from bot.app import VoiceChatBot, use_endpoints
    from bot.wiring import build_services

    use_endpoints(settings.discord_api_base, settings.discord_gateway_url)
    services = await build_services(settings)
    async with VoiceChatBot(settings, services) as bot:
        await bot.start(settings.discord_token)


def main() -> int:
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
    setup_logging(settings.log_level, settings.data_dir / "logs", console=not settings.sandbox)
    try:
        if settings.sandbox:
            from bot.sandbox.console import run_console

            asyncio.run(run_console(settings))
        else:
            asyncio.run(run_discord(settings))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # discord.LoginFailure and the like: one clear line
        log.error("the bot stopped: %s", exc, exc_info=exc)
        print(f"The bot stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
