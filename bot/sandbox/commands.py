"""Application commands in the sandbox: what the bot syncs, validated as Discord validates it.

`PUT /applications/{app}/commands` (global) and `.../guilds/{guild}/commands` replace the
whole set. A set that breaks one of Discord's rules is refused with 400, code 50035 and the
errors by path, as Discord answers; a good set is stored and echoed back with ids that stay
the same per (server, type, name) across syncs.

`validate_commands` is also what the meta-test runs over the bot's own payload.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, NUMBER, ATTACHMENT = 3, 4, 5, 10, 11
OPTION_TYPES = range(1, 12)
CHAT_NAME = re.compile(r"^[-_'\w]{1,32}$")
MAX_OPTIONS = 25
MAX_CHOICES = 25
MAX_DESCRIPTION = 100
MAX_COMMAND_CHARS = 8000
# Per scope (global, or one server): top-level slash commands and each kind of context menu.
MAX_COMMANDS = {CHAT_INPUT: 100, USER: 15, MESSAGE: 15}
INVALID_FORM_BODY = 50035


class InvalidFormBody(Exception):
    """A definition Discord would refuse; `errors` is Discord's nested error object."""

    def __init__(self, problems: list[tuple[tuple[str, ...], str, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(path)}: {message}" for path, _, message in problems))
        self.problems = problems

    @property
    def body(self) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        for path, code, message in self.problems:
            node = errors
            for key in path:
                node = node.setdefault(key, {})
            node.setdefault("_errors", []).append({"code": code, "message": message})
        return {"code": INVALID_FORM_BODY, "message": "Invalid Form Body", "errors": errors}


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[tuple[str, ...], str, str]] = []

    def add(self, path: tuple[str, ...], code: str, message: str) -> None:
        self.found.append((path, code, message))


def validate_commands(commands: Any) -> None:
    """Raise InvalidFormBody unless `commands` is a list Discord accepts for one scope."""
    problems = _Problems()
    if not isinstance(commands, list):
        raise InvalidFormBody([((), "LIST_TYPE_CONVERT", "Only iterables may be used in a list.")])
    seen: set[tuple[int, str]] = set()
    counts = dict.fromkeys(MAX_COMMANDS, 0)
    for index, command in enumerate(commands):
        path = (str(index),)
        if not isinstance(command, dict):
            problems.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType.")
            continue
        kind = command.get("type", CHAT_INPUT)
        if kind not in MAX_COMMANDS:
            problems.add(path + ("type",), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3}.")
            continue
        counts[kind] += 1
        key = (kind, str(command.get("name", "")))
        if key in seen:
            problems.add(
                path + ("name",),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique (duplicate {key[1]!r}).",
            )
        seen.add(key)
        _validate_command(command, kind, path, problems)
    for kind, count in counts.items():
        if count > MAX_COMMANDS[kind]:
            problems.add(
                (),
                "APPLICATION_COMMANDS_TOO_MANY",
                f"Too many commands of type {kind} ({count}; the limit is {MAX_COMMANDS[kind]}).",
            )
    if problems.found:
        raise InvalidFormBody(problems.found)


def _validate_command(
    command: dict[str, Any], kind: int, path: tuple[str, ...], problems: _Problems
) -> None:
    name = command.get("name")
    description = command.get("description") or ""
    if kind == CHAT_INPUT:
        _check_chat_name(name, path, problems)
        _check_description(description, path, problems)
        _validate_options(command.get("options") or [], path, problems, depth=0)
    else:
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            problems.add(
                path + ("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
            )
        if description:
            problems.add(
                path + ("description",),
                "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                "Context menu commands cannot have description",
            )
        if command.get("options"):
            problems.add(
                path + ("options",),
                "APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                "Context menu commands cannot have options",
            )
    permissions = command.get("default_member_permissions")
    if permissions is not None and not str(permissions).isdigit():
        problems.add(
            path + ("default_member_permissions",), "NUMBER_TYPE_COERCE", "Value is not int."
        )
    if command_characters(command) > MAX_COMMAND_CHARS:
        problems.add(
            path,
            "APPLICATION_COMMAND_TOO_LARGE",
            f"Command exceeds maximum size ({MAX_COMMAND_CHARS})",
        )


def _check_chat_name(name: Any, path: tuple[str, ...], problems: _Problems) -> None:
    if not isinstance(name, str) or not CHAT_NAME.fullmatch(name):
        problems.add(
            path + ("name",),
            "APPLICATION_COMMAND_INVALID_NAME",
            f"Command name is invalid: {name!r}",
        )
    elif name != name.lower():
        problems.add(
            path + ("name",),
            "APPLICATION_COMMAND_INVALID_NAME",
            f"Command name must be lower case: {name!r}",
        )


def _check_description(description: Any, path: tuple[str, ...], problems: _Problems) -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= MAX_DESCRIPTION:
        problems.add(
            path + ("description",),
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {MAX_DESCRIPTION} in length.",
        )


def _validate_options(
    options: list[dict[str, Any]], path: tuple[str, ...], problems: _Problems, depth: int
) -> None:
    if len(options) > MAX_OPTIONS:
        problems.add(
            path + ("options",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_OPTIONS} or fewer in length.",
        )
    kinds = [o.get("type") for o in options]
    nested = [k in (SUB_COMMAND, SUB_COMMAND_GROUP) for k in kinds]
    if any(nested) and not all(nested):
        problems.add(
            path + ("options",),
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Sub-command and sub-command group option types are mutually exclusive to all "
            "other types",
        )
    names: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        here = path + ("options", str(index))
        kind = option.get("type")
        if kind not in OPTION_TYPES:
            problems.add(here + ("type",), "BASE_TYPE_CHOICES", "Value must be one of 1 to 11.")
            continue
        _check_chat_name(option.get("name"), here, problems)
        _check_description(option.get("description"), here, problems)
        if option.get("name") in names:
            problems.add(
                here + ("name",),
                "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(option.get("name", ""))
        if kind == SUB_COMMAND_GROUP:
            if depth > 0:
                problems.add(
                    here + ("type",),
                    "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                    "Sub-command groups can only be nested in a command",
                )
            children = option.get("options") or []
            if any(c.get("type") != SUB_COMMAND for c in children):
                problems.add(
                    here + ("options",),
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                    "A sub-command group may only contain sub-commands",
                )
            _validate_options(children, here, problems, depth + 1)
            continue
        if kind == SUB_COMMAND:
            _validate_options(option.get("options") or [], here, problems, depth + 1)
            continue
        if option.get("options"):
            problems.add(
                here + ("options",),
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "Only sub-commands and groups can have options",
            )
        required = bool(option.get("required"))
        if required and optional_seen:
            problems.add(
                here + ("required",),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            )
        optional_seen = optional_seen or not required
        _check_choices(option, kind, here, problems)
        _check_lengths(option, here, problems)


def _check_choices(
    option: dict[str, Any], kind: int, path: tuple[str, ...], problems: _Problems
) -> None:
    choices = option.get("choices") or []
    if choices and option.get("autocomplete"):
        problems.add(
            path + ("autocomplete",),
            "APPLICATION_COMMAND_AUTOCOMPLETE_CHOICES",
            "Autocomplete cannot be set with choices",
        )
    if choices and kind not in (STRING, INTEGER, NUMBER):
        problems.add(
            path + ("choices",),
            "APPLICATION_COMMAND_OPTION_CHOICES_TYPE",
            "Only string, integer and number options can have choices",
        )
    if len(choices) > MAX_CHOICES:
        problems.add(
            path + ("choices",),
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {MAX_CHOICES} or fewer in length.",
        )
    for index, choice in enumerate(choices):
        here = path + ("choices", str(index))
        if not 1 <= len(str(choice.get("name", ""))) <= 100:
            problems.add(
                here + ("name",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        value = choice.get("value")
        if kind == STRING and not (isinstance(value, str) and 1 <= len(value) <= 100):
            problems.add(
                here + ("value",), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        if kind in (INTEGER, NUMBER) and not isinstance(value, int | float):
            problems.add(here + ("value",), "NUMBER_TYPE_COERCE", "Value is not a number.")


def _check_lengths(option: dict[str, Any], path: tuple[str, ...], problems: _Problems) -> None:
    for key, low in (("min_length", 0), ("max_length", 1)):
        value = option.get(key)
        if value is not None and not (isinstance(value, int) and low <= value <= 6000):
            problems.add(path + (key,), "NUMBER_TYPE_MAX", f"{key} must be between {low} and 6000.")


def command_characters(command: dict[str, Any]) -> int:
    """What Discord counts towards a command's size: names, descriptions, choice names and
    values, through every level of options."""
    total = len(str(command.get("name", ""))) + len(str(command.get("description") or ""))
    for option in command.get("options") or []:
        total += command_characters(option)
        for choice in option.get("choices") or []:
            total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    return total


# -- the registry -----------------------------------------------------------------------------


@dataclass
class Registry:
    """The commands the bot has synced: globally and per server, with stable ids."""

    application_id: int
    next_id: Any  # () -> int, the sandbox's snowflakes
    global_commands: list[dict[str, Any]] = field(default_factory=list)
    guild_commands: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    syncs: list[tuple[int | None, int]] = field(default_factory=list)  # (guild, commands)
    _ids: dict[tuple[int | None, int, str], int] = field(default_factory=dict)

    def replace(self, guild_id: int | None, commands: Any) -> list[dict[str, Any]]:
        """Validate and store a whole set (a bulk overwrite); InvalidFormBody if refused."""
        validate_commands(commands)
        stored = [self._stored(guild_id, command) for command in commands]
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        self.syncs.append((guild_id, len(stored)))
        return copy.deepcopy(stored)

    def listing(self, guild_id: int | None) -> list[dict[str, Any]]:
        found = self.global_commands if guild_id is None else self.guild_commands.get(guild_id, [])
        return copy.deepcopy(found)

    def _stored(self, guild_id: int | None, command: dict[str, Any]) -> dict[str, Any]:
        kind = command.get("type", CHAT_INPUT)
        key = (guild_id, kind, command["name"])
        if key not in self._ids:
            self._ids[key] = self.next_id()
        stored = copy.deepcopy(command)
        permissions = stored.get("default_member_permissions")
        stored.update(
            id=str(self._ids[key]),
            application_id=str(self.application_id),
            type=kind,
            description=stored.get("description") or "",
            default_member_permissions=None if permissions is None else str(permissions),
            version=str(self.next_id()),
        )
        if guild_id is not None:
            stored["guild_id"] = str(guild_id)
        for option in _walk_options(stored.get("options") or []):
            option.setdefault("description", "")
        return stored

    def find(self, guild_id: int | None, kind: int, name: str) -> dict[str, Any] | None:
        """The command a user in `guild_id` (None: a DM) sees by that name: the server's own
        first, then the global one."""
        scopes = [self.guild_commands.get(guild_id, [])] if guild_id is not None else []
        for command in itertools.chain(*scopes, self.global_commands):
            if command["type"] == kind and command["name"] == name:
                return command
        return None


def _walk_options(options: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for option in options:
        yield option
        yield from _walk_options(option.get("options") or [])
