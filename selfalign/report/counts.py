"""Counts of one stage run: kept, dropped by reason, principle citations, tokens spent (`selfalign.report.tokens`).
Rich table on stderr, JSON on request."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from selfalign.report.tokens import Tokens


class Report:
    def __init__(self, stage: str):
        self.stage = stage
        self.read = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.principles: Counter[str] = Counter()
        self.extra: dict[str, Any] = {}
        self.tokens = Tokens()  # what the model spent, added to by the backend's Metered wrapper

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def count(self, item: Any) -> None:
        """Count one item of a stage's stream: a Dropped record by its reason, anything else as kept (with the
        principles it cites). Every stage is counted here, by whoever consumes its stream (the Runner)."""
        self.read += 1
        reason = getattr(item, "drop_reason", None)
        if reason is not None:
            self.dropped[reason] += 1
            return
        self.kept += 1
        cited = getattr(item, "principles", None)
        if cited is None and isinstance(item, dict):
            cited = item.get("principles")
        if cited:
            self.principles.update(cited)

    def tally(self, items: Any) -> Any:
        """`items`, passed through, each counted."""
        for item in items:
            self.count(item)
            yield item

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "read": self.read, "kept": self.kept,
                               "dropped": dict(self.dropped.most_common()),
                               "dropped_total": sum(self.dropped.values())}
        if self.principles:
            out["principles_cited"] = dict(self.principles.most_common())
        out.update(self.extra)
        if self.tokens:
            out["tokens"] = self.tokens.as_dict()
        return out

    def write_json(self, path: str | None) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")

    def print(self, console: Any, principle_names: dict[str, str] | None = None) -> None:
        from rich.table import Table

        t = Table(title=f"selfalign {self.stage}", show_header=True, header_style="bold", title_justify="left")
        t.add_column("")
        t.add_column("records", justify="right")
        t.add_row("read", str(self.read))
        t.add_row("[green]kept[/]", str(self.kept))
        for reason, n in self.dropped.most_common():
            t.add_row(f"[yellow]dropped: {reason}[/]", str(n))
        for key, value in self.extra.items():
            if isinstance(value, (int, float, str)):
                t.add_row(key.replace("_", " "), f"{value:.2f}" if isinstance(value, float) else str(value))
        console.print(t)
        if self.tokens:
            console.print(f"tokens: {self.tokens.line()}", highlight=False, soft_wrap=True)
        if self.principles:
            p = Table(title="principles cited in internal thoughts", title_justify="left")
            p.add_column("principle")
            p.add_column("records", justify="right")
            for pid, n in self.principles.most_common():
                name = (principle_names or {}).get(pid, "")
                p.add_row(f"{pid} ({name})" if name else pid, str(n))
            console.print(p)
