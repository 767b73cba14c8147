"""What the rest of the app knows of a server's tool and of a call's outcome.

Kept apart from the host so that the catalog, approvals and the turn loop can be
imported without the MCP SDK, which takes most of a second to import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolInfo:
    server: str
    name: str  # the server's own name for the tool
    description: str
    input_schema: dict
    read_only: bool | None  # the server's annotations: claims, not facts
    destructive: bool | None


@dataclass(frozen=True)
class CallResult:
    text: str  # everything the server returned, as text
    error: str | None  # set when the call failed or the tool reported an error
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.error is None
