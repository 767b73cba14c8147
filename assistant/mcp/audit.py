"""One JSON line per tool call: what ran, who allowed it, how it went."""

from __future__ import annotations

import json
import time
from pathlib import Path

from assistant.config import paths
from assistant.text import scrub_data


def audit_file() -> Path:
    return paths().log_dir / "tool-calls.jsonl"


class AuditLog:
    def __init__(self, path: Path | None = None):
        self.path = path or audit_file()

    def record(self, *, server: str, tool: str, arguments: object, decision: str,
               duration_s: float, outcome: str, result_bytes: int, error: str | None = None
               ) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "server": server,
            "tool": tool,
            "arguments": arguments,
            "decision": decision,
            "duration_s": round(duration_s, 4),
            "outcome": outcome,
            "result_bytes": result_bytes,
        }
        if error:
            entry["error"] = error
        # Arguments come from the user or the model and may hold lone surrogates, which a
        # UTF-8 file cannot; the line is written with them as U+FFFD rather than not at all.
        line = json.dumps(scrub_data(entry), ensure_ascii=False, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", errors="replace") as f:
            f.write(line + "\n")
