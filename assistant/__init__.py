"""A local Qwen3 assistant for the terminal, running on MLX."""

__version__ = "0.1.0"
