"""One JSON line per tool call: what ran, who allowed it, how it went."""

from __future__ import annotations

import json
import time
from pathlib import Path

from assistant.config import paths


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
