"""The MCP host: the user's servers (Claude Desktop's ``mcpServers`` format) and ours,
their tools offered to the model, and every call approved, bounded and logged."""
