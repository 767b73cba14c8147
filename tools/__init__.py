"""The app's own MCP servers (notes, clock, calculator), runnable from an installed wheel."""
