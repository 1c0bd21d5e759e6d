"""Modals (forms) in the sandbox: the text inputs of a form the bot opened, what Discord's
client checks before a user may submit it, and the components as Discord sends them back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def text_inputs(components: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(text input, its label) in a modal: in action rows (type 1) or labels (type 18)."""
    for component in components:
        if component.get("type") == 1:
            for child in component.get("components") or []:
                if child.get("type") == 4:
                    yield child, child.get("label")
        elif component.get("type") == 18 and component.get("component", {}).get("type") == 4:
            yield component["component"], component.get("label")


def check_input(component: dict[str, Any], label: str | None, value: str) -> None:
    """What Discord's client enforces before it lets a user submit."""
    required = component.get("required", True)
    low, high = component.get("min_length", 0), component.get("max_length", 4000)
    if required and not value:
        raise ValueError(f"the modal's {label!r} must be filled in")
    if value and not low <= len(value) <= high:
        raise ValueError(f"the modal's {label!r} takes {low} to {high} characters")


def submitted(components: list[dict[str, Any]], filled: dict[str, str]) -> list[dict[str, Any]]:
    """The modal's components as Discord sends them back on submit: ids and values."""
    out: list[dict[str, Any]] = []
    for component in components:
        if component.get("type") == 1:
            children = [
                {"type": 4, "custom_id": c["custom_id"], "value": filled.get(c["custom_id"], "")}
                for c in component.get("components") or []
                if c.get("type") == 4
            ]
            out.append({"type": 1, "components": children})
        elif component.get("type") == 18:
            inner = component.get("component", {})
            out.append(
                {
                    "type": 18,
                    "id": component.get("id"),
                    "component": {
                        "type": inner.get("type"),
                        "custom_id": inner.get("custom_id"),
                        "value": filled.get(inner.get("custom_id", ""), ""),
                    },
                }
            )
    return out
