"""The tools offered to the model: unique names, Qwen's schema, what they cost in tokens.

Tool definitions go into the system turn, so they eat a 0.6B model's context, and small
models call tools worse the more they see: past a share of the context window only the
tools most relevant to the turn are offered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from assistant.mcp.toolinfo import ToolInfo

TOOL_SHARE = 0.25  # of the context window, at most, for tool definitions


@dataclass(frozen=True)
class OfferedTool:
    public_name: str  # the name the model sees and calls
    info: ToolInfo
    schema: dict  # {"type": "function", "function": {...}} as chat templates take it
    tokens: int


class Catalog:
    def __init__(self, tools: list[ToolInfo], count: Callable[[str], int]):
        names = [t.name for t in tools]
        self.tools: dict[str, OfferedTool] = {}
        for tool in tools:
            public = tool.name if names.count(tool.name) == 1 else f"{tool.server}_{tool.name}"
            public = re.sub(r"[^A-Za-z0-9_.-]", "_", public)
            if public in self.tools:  # taken after cleaning: qualify, then number it
                public = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{tool.server}_{tool.name}")
                base, n = public, 2
                while public in self.tools:
                    public, n = f"{base}_{n}", n + 1
            schema = {"type": "function", "function": {
                "name": public, "description": tool.description,
                "parameters": tool.input_schema}}
            self.tools[public] = OfferedTool(public, tool, schema,
                                             count(json.dumps(schema, ensure_ascii=False)))

    def get(self, public_name: str) -> OfferedTool | None:
        return self.tools.get(public_name)

    def cost_by_server(self) -> dict[str, int]:
        costs: dict[str, int] = {}
        for tool in self.tools.values():
            costs[tool.info.server] = costs.get(tool.info.server, 0) + tool.tokens
        return costs

    def offer(self, query: str, budget_tokens: int) -> list[OfferedTool]:
        """All tools if they fit the budget, else the most relevant to ``query`` that do."""
        tools = list(self.tools.values())
        if sum(t.tokens for t in tools) <= budget_tokens:
            return tools
        words = _words(query)
        ranked = sorted(tools, key=lambda t: (-_relevance(t, words), t.tokens))
        chosen, used = [], 0
        for tool in ranked:
            if used + tool.tokens <= budget_tokens:
                chosen.append(tool)
                used += tool.tokens
        return chosen


def _words(text: str) -> set[str]:
    # Prefixes, so "notes" meets "note" and "searching" meets "search".
    return {w[:5] for w in re.findall(r"[a-z0-9]{3,}", text.lower())}


def _relevance(tool: OfferedTool, query_words: set[str]) -> float:
    name_words = _words(tool.public_name.replace("_", " ") + " " + tool.info.server)
    text_words = _words(tool.info.description)
    return 3 * len(name_words & query_words) + len(text_words & query_words)
