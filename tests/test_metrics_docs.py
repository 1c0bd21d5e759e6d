"""docs/OPERATIONS.md lists every metric the processes serve, by the name a query uses."""

from __future__ import annotations

from pathlib import Path

from bot.metrics import REGISTRY


def test_operations_documents_every_metric() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "OPERATIONS.md").read_text()
    table = docs[docs.index("## Metrics") : docs.index("## Health")]
    for family in REGISTRY.collect():
        shown = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{shown}` | {family.type} |" in table, shown
