"""Putting the MCP side together for a front end: servers, offer, consent, audit.

Importing this module loads neither the MCP SDK nor the model's libraries (the turn
loop and mlx come with ``make_tools``), so ``assistant tools`` starts quickly."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import Settings, paths
from assistant.mcp.approval import Approvals, ApprovalStore, Approver
from assistant.mcp.audit import AuditLog
from assistant.mcp.catalog import Catalog
from assistant.mcp.config import ServerConfig, load_servers
from assistant.mcp.host import McpHost
from assistant.mcp.toolcache import ToolListCache
from assistant.tokens import TokenCounter

if TYPE_CHECKING:
    from assistant.chat.turn import Tools


def configured_servers(settings: Settings, mcp_config: Path | None = None
                       ) -> tuple[list[ServerConfig], list[str]]:
    notes_root = Path(settings.notes_dir).expanduser()
    return load_servers(mcp_config, notes_root=notes_root)


def tool_cache() -> ToolListCache:
    return ToolListCache(paths().cache_dir / "mcp-tools")


def start_host(servers: list[ServerConfig], *, wait: bool = True,
               lazy: bool = False) -> McpHost:
    """Start the servers; without ``wait``, return at once and let them come up while
    the model loads (``host.wait_for_tools()`` before the first prompt). ``lazy``: see
    ``McpHost.start``."""
    host = McpHost(servers, log_dir=paths().log_dir, tool_cache=tool_cache())
    host.start(wait=wait, lazy=lazy)
    return host


def make_tools(host: McpHost, servers: list[ServerConfig], counter: TokenCounter,
               approve: Approver) -> Tools:
    """``counter``: whatever counts, encodes and decodes plain text as the model's prompt
    does (the token counter, or a local engine's ``prompts``, which builds it on demand)."""
    from assistant.chat.turn import Tools

    trusted = {s.name for s in servers if s.trust}
    return Tools(host=host, catalog=Catalog(host.tools(), counter.count),
                 approvals=Approvals(ApprovalStore(), trusted), approve=approve,
                 audit=AuditLog(), count=counter.count, encode=counter.encode_plain,
                 decode=counter.decode)


def server_noise(host: McpHost) -> list[str]:
    """One line per server that wrote things on stdout that are not JSON-RPC."""
    return [f"MCP server {s.config.name!r} wrote {s.bad_lines:,} lines that are not JSON-RPC "
            f"(ignored); see its log: {s.log_file}"
            for s in host.servers.values() if s.bad_lines]


def server_problems(host: McpHost, skip: set[str] = frozenset()) -> list[str]:
    """One line per server that did not start (and is not in ``skip``), for the user."""
    lines = []
    for state in host.servers.values():
        if state.status == "failed" and state.config.name not in skip:
            where = f" (log: {state.log_file})" if state.log_file else ""
            if (state.error or "").startswith("MCP server "):  # already the whole line
                lines.append(state.error)
            else:
                lines.append(f"MCP server {state.config.name!r} did not start: "
                             f"{state.error}{where}")
    return lines
