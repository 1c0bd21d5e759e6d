"""The foundation commands as a user sees them: !hi, !instruction, help and errors."""

from __future__ import annotations

from pathlib import Path

from discord.ext import commands

from bot.core.help import HEADER, MENUS, both_forms, example, slash_names
from bot.core.replies import APOLOGY
from bot.sandbox.runner import sandboxed_bot
from tests.e2e.conftest import E2E


async def test_hi_answers_the_author(e2e: E2E) -> None:
    reply = await e2e.ask("!hi")
    assert reply["content"].startswith("Hi owner!")
    member_reply = await e2e.ask("!hi", author="member")
    assert member_reply["content"].startswith("Hi member!")
    assert member_reply["message_reference"]["message_id"]  # sent as a reply


async def test_commands_are_case_insensitive_and_work_in_dms(e2e: E2E) -> None:
    assert (await e2e.ask_text("!HI")).startswith("Hi owner!")
    assert (await e2e.ask_text("!hi", dm=True)).startswith("Hi owner!")


async def test_instruction_sends_the_file_in_chunks(
    e2e: E2E, tmp_path: Path, make_settings
) -> None:
    text = await e2e.ask_text("!instruction")
    assert text.startswith("# How to use VoiceChatBot")
    long_file = tmp_path / "long.md"
    paragraphs = [f"Paragraph {i}: " + "word " * 80 for i in range(30)]
    long_file.write_text("\n\n".join(paragraphs), encoding="utf-8")
    settings = make_settings(INSTRUCTIONS_FILE=str(long_file), DATA_DIR=str(tmp_path / "d2"))
    async with sandboxed_bot(settings) as (sandbox, _bot):
        sent = await sandbox.send("!instruction")
        env = E2E(sandbox, _bot)
        chunks = await env.replies(sent, 4)
        assert all(len(c["content"]) <= 2000 for c in chunks)
        joined = " ".join(c["content"] for c in chunks)
        assert "Paragraph 0:" in joined and "Paragraph 12:" in joined


async def test_instruction_missing_file(make_settings, tmp_path: Path) -> None:
    settings = make_settings(INSTRUCTIONS_FILE=str(tmp_path / "nope.md"))
    async with sandboxed_bot(settings) as (sandbox, bot):
        text = await E2E(sandbox, bot).ask_text("!instruction")
    assert text.startswith("The instructions are not available")
    assert str(tmp_path) not in text


async def test_help_lists_every_command_with_an_example(e2e: E2E) -> None:
    sent = await e2e.sandbox.send("!help")
    first = await e2e.sandbox.wait_for_bot_message(after=sent)
    await e2e.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "help COMMAND" in m["content"]
    )
    text = "\n".join(
        m["content"] for m in e2e.sandbox.bot_messages() if int(m["id"]) >= int(first["id"])
    )
    for command in e2e.bot.walk_commands():
        if not command.hidden and command.parent is None:
            assert f"`!{command.name}`" in text, command.name
    assert "Example: `!hi`" in text
    detail = await e2e.ask_text("!help hi")
    assert detail.startswith("**!hi**") and "Example: `!hi`" in detail
    assert "no command called `nothing`" in await e2e.ask_text("!help nothing")


async def help_messages(e2e: E2E) -> list[str]:
    """Every message of the bot's answer to `!help`, in order."""
    sent = await e2e.sandbox.send("!help")
    last = await e2e.sandbox.wait_for_bot_message(
        after=sent, predicate=lambda m: "help COMMAND" in m["content"]
    )
    return [
        m["content"]
        for m in e2e.sandbox.bot_messages()
        if int(sent["id"]) < int(m["id"]) <= int(last["id"])
    ]


async def test_help_is_split_between_lines_never_inside_one(e2e: E2E) -> None:
    async def noop(ctx: commands.Context) -> None:
        pass

    for number in range(12):  # make sure the list needs several messages
        e2e.bot.add_command(
            commands.Command(
                noop,
                name=f"extra{number}",
                brief=f"An extra command, number {number}, with a long description to fill space.",
                extras={"example": f"extra{number} with a long example that has many words"},
            )
        )
    messages = await help_messages(e2e)
    assert len(messages) >= 2
    assert all(len(m) <= 2000 for m in messages)
    slash = slash_names(e2e.bot.tree)
    expected = {
        f"{both_forms(c, '!', slash)} — {c.brief or ''} Example: `{example(c, '!')}`"
        for c in e2e.bot.walk_commands()
        if not c.hidden and c.parent is None
    }
    sections = {f"__{name}__" for name in [*e2e.bot.cogs, "Other"]}
    whole = (
        expected | sections | {HEADER, MENUS, "Type `!help COMMAND` for details of one command."}
    )
    for message in messages:
        for line in filter(None, message.splitlines()):
            assert line in whole, f"a help line was cut: {line!r}"
    for line in expected:
        assert sum(line in m.splitlines() for m in messages) == 1, line


async def test_unknown_command_suggests_the_closest(e2e: E2E) -> None:
    text = await e2e.ask_text("!hii")
    assert text == "Unknown command `!hii`. Did you mean `!hi`? Type `!help` for the list."
    text = await e2e.ask_text("!zzzzzz")
    assert text == "Unknown command `!zzzzzz`. Type `!help` for the list."


class Boom(commands.Cog):
    @commands.command()
    async def boom(self, ctx: commands.Context) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    @commands.command()
    async def needs(self, ctx: commands.Context, count: int) -> None:
        await ctx.send(f"count={count}")


async def test_missing_and_bad_arguments_show_usage(e2e: E2E) -> None:
    await e2e.bot.add_cog(Boom())
    assert await e2e.ask_text("!needs") == "Missing `count`. Usage: `!needs <count>`"
    bad = await e2e.ask_text("!needs many")
    assert bad.startswith('Converting to "int" failed') and bad.endswith("Usage: `!needs <count>`")
    assert await e2e.ask_text("!needs 3") == "count=3"


async def test_unexpected_error_gets_one_apology_and_the_bot_keeps_going(e2e: E2E, caplog) -> None:
    await e2e.bot.add_cog(Boom())
    sent = await e2e.sandbox.send("!boom")
    reply = await e2e.sandbox.wait_for_bot_message(after=sent)
    assert reply["content"] == APOLOGY
    assert "Traceback" not in reply["content"] and "passwd" not in reply["content"]
    assert any("secret internals" in str(r.exc_info) for r in caplog.records if r.exc_info)
    assert (await e2e.ask_text("!hi")).startswith("Hi owner!")
    after = [m for m in e2e.sandbox.bot_messages() if int(m["id"]) > int(sent["id"])]
    assert [m["content"] for m in after].count(APOLOGY) == 1
