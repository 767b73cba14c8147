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


@dataclass(frozen=True)
class ResourceInfo:
    """A resource a server lists, or (``template``) a URI template it can fill in."""
    server: str
    uri: str  # for a template, the RFC 6570 template, e.g. notes:///{path}
    name: str
    description: str
    mime_type: str | None
    size: int | None
    template: bool = False


@dataclass(frozen=True)
class ResourceContent:
    """One part of a read resource: text, or binary data known only by type and size
    (never kept: a text-only model cannot use it and base64 would fill the prompt)."""
    uri: str
    mime_type: str | None
    text: str | None  # None for binary data
    size: int  # bytes: of the UTF-8 text, or of the decoded binary data

    def describe(self) -> str:
        """What a user or the model is told of binary data instead of the data."""
        return f"[binary resource {self.uri}: {self.mime_type or 'unknown type'}, " \
               f"{self.size:,} bytes]"


@dataclass(frozen=True)
class PromptArgument:
    name: str
    description: str
    required: bool


@dataclass(frozen=True)
class PromptInfo:
    server: str
    name: str
    description: str
    arguments: tuple[PromptArgument, ...]


@dataclass(frozen=True)
class PromptMessage:
    role: str  # user | assistant
    text: str


class RequestFailed(Exception):
    """A resource or prompt request the server refused or could not serve, in one line."""


@dataclass(frozen=True)
class Progress:
    """A server's ``notifications/progress`` for a call under way."""
    progress: float
    total: float | None = None
    message: str | None = None

    def describe(self) -> str:
        """E.g. "3/10 step 3": what a tool card or a progress line shows."""
        done = f"{_number(self.progress)}/{_number(self.total)}" if self.total \
            else _number(self.progress)
        return f"{done} {self.message}" if self.message else done


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def size_text(size: int) -> str:
    """Bytes for a person: "812 bytes", "12.3 KB", "4.1 MB"."""
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def resource_links(result: str, limit: int = 20) -> list[tuple[str, str]]:
    """The resource links a tool's result shows (``[resource: URI (…)]`` lines), as
    (line, URI), at most ``limit`` of them from its first thousand lines."""
    links = []
    for text in result.splitlines()[:1000]:
        if text.startswith("[resource: ") and text.endswith("]"):
            uri = text[len("[resource: "):].split(" ", 1)[0].rstrip("]")
            links.append((text, uri))
            if len(links) == limit:
                break
    return links
