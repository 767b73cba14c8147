"""``assistant bench``: the app's speed against raw mlx-lm, measured in one run.

Imports go one way: ``run`` chooses a measurement from the options and prints it; each
measurement is a module of its own, and all of them pair app and raw runs through
``stats``.

- ``decode``: time to first token, prefill and decode on a short and a long prompt.
- ``reuse``: how much of each follow-up and tool round the KV cache already holds.
- ``chat_app``: decode inside the running chat app, key latency, start-up in tmux.
- ``startup``: the whole ``assistant ask`` command against ``python -m mlx_lm generate``.
- ``tools``: tool calls a small model gets right, with and without the grammar.
- ``adapter``: decode with a LoRA adapter against without.
- ``remote``: the app against a bare stream from an OpenAI-compatible server.

These are figures to print, never test assertions (TESTING.md §5).
"""
